"""The Service sync engine: makes Boundary hold exactly the targets, aliases, brokered
credentials and access roles that annotated Services ask for. Independent of kopf, so it is
unit-testable and benchmarkable alone.

It keeps views of every target, alias and role, refreshed by list-token deltas, so a resync
costs three calls when nothing changed, and it writes nothing in steady state. Objects it
creates carry an ownership marker (cluster, namespace, Service uid, port) in their description;
anything without our marker is never modified or deleted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from boundary_api import Alias, Conflict, NotFound, Target
from boundary_api.ports import BoundaryPort
from boundary_operator.services.access import AccessOutcome, AccessSync, Calls
from boundary_operator.services.desired import DesiredTarget, Principal
from boundary_operator.services.ownership import DetailedIndex, OwnedIndex, Owner

log = logging.getLogger("boundary_operator.services")

CONCURRENCY = 8
"""Services synced with the controller at once. kopf hands over every Service of a burst at
the same moment; past a few calls in flight the controller gets no faster, and every waiting
call would wait in the client's pool, toward its timeout."""


async def _already_gone_ok(deletion: Awaitable[None]) -> None:
    """A delete whose object is already gone (an event and a resync racing, or a hand-made
    deletion) has done its job."""
    with contextlib.suppress(NotFound):
        await deletion


def _extra(description: str, key: str) -> str:
    for part in description.split():
        if part.startswith(key + "="):
            return part.split("=", 1)[1]
    return ""


@dataclass
class Outcome(AccessOutcome):
    targets: dict[str, str] = field(default_factory=dict)
    """Target id -> alias value, for the Service's feedback annotation."""


class ServiceSync:
    def __init__(self, boundary: BoundaryPort, cluster: str) -> None:
        self.boundary = boundary
        """The current login's client: a new login replaces it (the views describe the
        controller, not the login, and carry over)."""
        self.cluster = cluster
        self.calls = Calls()
        self.access = AccessSync(lambda: self.boundary, cluster, self.calls)
        # Listings leave a target's brokered credential sources out (measured on the real
        # controller): a target only a listing has shown is read before they are trusted.
        self._targets: DetailedIndex[Target] = DetailedIndex(cluster)
        self._aliases: OwnedIndex[Alias] = OwnedIndex(cluster, value_of=lambda a: a.value)
        self._target_token: str | None = None
        self._alias_token: str | None = None
        self._projects: dict[str, str] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._first_refresh = asyncio.Lock()
        self._refreshed = False

    @property
    def writes(self) -> int:
        return self.calls.writes

    @property
    def reads(self) -> int:
        return self.calls.reads

    # ------------------------------------------------------------------ views

    async def refresh(self) -> None:
        """Bring the target, alias and role views up to date (deltas after the first
        listing)."""
        targets = await self.boundary.targets.list(
            "global", recursive=True, list_token=self._target_token, page_size=1000
        )
        aliases = await self.boundary.aliases.list(
            "global", list_token=self._alias_token, page_size=1000
        )
        self.calls.reads += targets.pages + aliases.pages
        self._targets.apply(targets)
        aliases.apply_to(self._aliases)
        self._target_token, self._alias_token = targets.list_token, aliases.list_token
        await self.access.refresh()
        self._refreshed = True

    async def _views_ready(self) -> None:
        """Views start empty: until the first listing, every alias would look free and every
        target name taken by a stranger. A sync before any resync lists first."""
        if self._refreshed:
            return
        async with self._first_refresh:
            if not self._refreshed:
                await self.refresh()

    def _ours(self, description: str) -> Owner | None:
        return Owner.of_cluster(description, self.cluster)

    def owned_targets(self, uid: str | None = None) -> dict[str, tuple[Owner, Target]]:
        return self._targets.owned(uid)

    def owned_aliases(self, uid: str | None = None) -> dict[str, tuple[Owner, Alias]]:
        return self._aliases.owned(uid)

    def alias_holder(self, value: str) -> Alias | None:
        return self._aliases.by_value(value)

    async def _project(self, scope: str) -> str:
        if scope.startswith("p_"):
            return scope
        if scope not in self._projects:
            self.calls.reads += 1
            self._projects[scope] = (await self.boundary.scopes.find_project(scope)).id
        return self._projects[scope]

    # ------------------------------------------------------------------ sync

    async def sync_service(
        self,
        namespace: str,
        service: str,
        uid: str,
        desired: list[DesiredTarget],
        grants: Sequence[Principal] | None = None,
    ) -> Outcome:
        """Make the Service's targets, aliases and credentials those of `desired`, and its role
        grant `grants` (None or empty: no role) access to them."""
        await self._views_ready()
        # A slot before the Service's lock: whoever holds a lock holds a slot, never waits
        # for one.
        async with self._slots, self._locks[uid]:
            return await self._sync(namespace, service, uid, desired, grants)

    async def _sync(
        self,
        namespace: str,
        service: str,
        uid: str,
        desired: list[DesiredTarget],
        grants: Sequence[Principal] | None,
    ) -> Outcome:
        outcome = Outcome()
        for want in desired:
            holder = self.alias_holder(want.alias)
            owner = self._ours(holder.description) if holder else None
            if holder and (owner is None or owner.uid != uid):
                whose = (
                    f"Service {owner.namespace}/{owner.service}"
                    if owner
                    else "an object this operator does not own"
                )
                outcome.problems.append(f"alias {want.alias!r} is already used by {whose}")
        if outcome.problems:
            return outcome

        existing = {o.port: t for o, t in self.owned_targets(uid).values()}
        aliases = {o.port: a for o, a in self.owned_aliases(uid).values()}
        synced: list[str] = []
        for want in desired:
            owner = Owner(self.cluster, namespace, service, uid, want.port_key)
            try:
                target = await self._ensure_target(
                    want, owner, existing.get(want.port_key), outcome
                )
                synced.append(target.id)
            except Conflict as exc:
                outcome.problems.append(
                    f"target {want.name!r} clashes with an object this operator does not own: "
                    f"{exc.message}"
                )
                continue
            alias = await self._ensure_alias(
                want, owner, target, aliases.get(want.port_key), outcome
            )
            if alias is not None:
                outcome.targets[target.id] = alias.value
            await self._ensure_credentials(want, owner, target, outcome)

        wanted_ports = {w.port_key for w in desired}
        for port, target in existing.items():
            if port not in wanted_ports:
                await self._delete_target(target, aliases.get(port), outcome)
        for port, alias in aliases.items():
            if port not in wanted_ports and alias.id in self._aliases:
                await self._delete_alias(alias, outcome)
        if desired:
            await self.access.sync(
                Owner(self.cluster, namespace, service, uid),
                await self._project(desired[0].scope),
                synced,
                grants,
                outcome,
            )
        return outcome

    async def _ensure_target(
        self, want: DesiredTarget, owner: Owner, current: Target | None, outcome: Outcome
    ) -> Target:
        project = await self._project(want.scope)
        if current is not None and current.scope_id != project:
            await self._delete_target(current, None, outcome)
            current = None
        if current is None:
            self.calls.writes += 1
            target = await self.boundary.targets.create_tcp(
                project,
                want.name,
                address=want.address,
                default_port=want.port,
                description=owner.description(),
                egress_worker_filter=want.egress_worker_filter,
                session_max_seconds=want.session_max_seconds,
                session_connection_limit=want.session_connection_limit,
            )
            outcome.changes.append(f"created target {target.id} for port {want.port_key}")
        else:
            changes: dict[str, Any] = {}
            if current.address != want.address:
                changes["address"] = want.address
            if current.default_port != want.port:
                changes["default_port"] = want.port
            if current.egress_worker_filter != want.egress_worker_filter:
                changes["egress_worker_filter"] = want.egress_worker_filter
            if current.name != want.name:
                changes["name"] = want.name
            if want.session_max_seconds and current.session_max_seconds != want.session_max_seconds:
                changes["session_max_seconds"] = want.session_max_seconds
            if (
                want.session_connection_limit is not None
                and current.session_connection_limit != want.session_connection_limit
            ):
                changes["session_connection_limit"] = want.session_connection_limit
            if not changes:
                return current
            self.calls.writes += 1
            target = await self.boundary.targets.update(current.id, current.version, **changes)
            outcome.changes.append(f"updated target {target.id}: {', '.join(sorted(changes))}")
        self._remember(target)
        return target

    def _remember(self, target: Target) -> None:
        """A target as a read or a write returned it, credential sources included."""
        self._targets.remember(target)

    async def _ensure_alias(
        self,
        want: DesiredTarget,
        owner: Owner,
        target: Target,
        current: Alias | None,
        outcome: Outcome,
    ) -> Alias | None:
        if (
            current is not None
            and current.value == want.alias
            and (current.destination_id == target.id)
        ):
            return current
        if current is not None:
            # A renamed alias: the old value goes (an alias keeps no history to restore).
            await self._delete_alias(current, outcome)
        try:
            self.calls.writes += 1
            alias = await self.boundary.aliases.create(
                want.alias, destination_id=target.id, description=owner.description()
            )
        except Conflict:
            outcome.problems.append(
                f"alias {want.alias!r} already exists in Boundary and is not ours; left as is"
            )
            return None
        self._aliases[alias.id] = alias
        outcome.changes.append(f"alias {alias.value} -> {target.id}")
        return alias

    async def _with_sources(self, target: Target) -> Target:
        """The target with its brokered credential sources, read once after a listing left
        them out (after a restart, say); written targets come back with them."""
        if not self._targets.is_whole(target.id):
            self.calls.reads += 1
            target = await self.boundary.targets.read(target.id)
            self._remember(target)
        return target

    async def _ensure_credentials(
        self, want: DesiredTarget, owner: Owner, target: Target, outcome: Outcome
    ) -> None:
        target = await self._with_sources(target)
        current_ids = list(target.brokered_credential_source_ids)
        credential = None
        if current_ids:
            self.calls.reads += 1
            try:
                credential = await self.boundary.credentials.read(current_ids[0])
            except NotFound:
                credential = None
            if credential is not None and self._ours(credential.description) is None:
                outcome.problems.append(
                    f"target {target.id} brokers credential {credential.id}, which is not ours;"
                    " left as is"
                )
                return
        if want.credentials is None:
            if credential is not None:
                await self._drop_credentials(
                    target, credential.id, credential.credential_store_id, outcome
                )
            return
        version = f"secret-rv={want.credentials.resource_version}"
        if credential is None:
            self.calls.writes += 2
            store = await self.boundary.credential_stores.create_static(
                target.scope_id, description=owner.description()
            )
            credential = await self.boundary.credentials.create_username_password(
                store.id,
                username=want.credentials.username,
                password=want.credentials.password,
                description=owner.description(version),
            )
            outcome.changes.append(
                f"credential {credential.id} from Secret {want.credentials.secret_name}"
            )
        elif _extra(credential.description, "secret-rv") != want.credentials.resource_version:
            self.calls.writes += 1
            credential = await self.boundary.credentials.update_username_password(
                credential.id,
                credential.version,
                username=want.credentials.username,
                password=want.credentials.password,
                description=owner.description(version),
            )
            outcome.changes.append(
                f"credential {credential.id} updated from Secret {want.credentials.secret_name}"
            )
        if current_ids != [credential.id]:
            self.calls.writes += 1
            target = await self.boundary.targets.set_credential_sources(
                target.id, target.version, [credential.id]
            )
            self._remember(target)

    async def _drop_credentials(
        self, target: Target, credential_id: str, store_id: str, outcome: Outcome
    ) -> None:
        self.calls.writes += 3
        updated = await self.boundary.targets.set_credential_sources(target.id, target.version, [])
        self._remember(updated)
        await _already_gone_ok(self.boundary.credentials.delete(credential_id))
        await _already_gone_ok(self.boundary.credential_stores.delete(store_id))
        outcome.changes.append(f"removed brokered credential {credential_id}")

    async def _delete_alias(self, alias: Alias, outcome: Outcome) -> None:
        self.calls.writes += 1
        await _already_gone_ok(self.boundary.aliases.delete(alias.id))
        self._aliases.pop(alias.id, None)
        outcome.changes.append(f"deleted alias {alias.value}")

    async def _delete_target(self, target: Target, alias: Alias | None, outcome: Outcome) -> None:
        """A target with its alias (Boundary would keep the alias, pointing nowhere) and its
        brokered credentials."""
        # Already gone: its alias and credentials are still ours to remove below.
        with contextlib.suppress(NotFound):
            target = await self._with_sources(target)
        if target.brokered_credential_source_ids:
            try:
                credential = await self.boundary.credentials.read(
                    target.brokered_credential_source_ids[0]
                )
            except NotFound:
                credential = None
            if credential is not None and self._ours(credential.description):
                self.calls.writes += 2
                await _already_gone_ok(self.boundary.credentials.delete(credential.id))
                await _already_gone_ok(
                    self.boundary.credential_stores.delete(credential.credential_store_id)
                )
        self.calls.writes += 1
        await _already_gone_ok(self.boundary.targets.delete(target.id))
        self._targets.pop(target.id, None)
        outcome.changes.append(f"deleted target {target.id}")
        for alias_id, (_, owned) in self.owned_aliases().items():
            if owned.destination_id == target.id or alias_id == (alias.id if alias else None):
                await self._delete_alias(owned, outcome)

    async def remove_service(self, uid: str) -> Outcome:
        """Everything we created for a Service that is gone or no longer exposed."""
        await self._views_ready()
        async with self._slots, self._locks[uid]:
            outcome = Outcome()
            aliases = {o.port: a for o, a in self.owned_aliases(uid).values()}
            for owner, target in list(self.owned_targets(uid).values()):
                await self._delete_target(target, aliases.get(owner.port), outcome)
            for _, alias in list(self.owned_aliases(uid).values()):
                await self._delete_alias(alias, outcome)
            await self.access.remove(uid, outcome)
            return outcome

    def owners(self, uid: str | None = None) -> list[Owner]:
        """The owners of what we hold for a Service (for every Service, without `uid`)."""
        return [
            owner
            for index in (self.owned_targets, self.owned_aliases, self.access.owned_roles)
            for owner, _ in index(uid).values()
        ]

    def owned_service_uids(self) -> set[str]:
        return {owner.uid for owner in self.owners()}
