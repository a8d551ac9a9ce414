"""Access by annotation: the Boundary role that lets a Service's `grant-groups` and
`grant-users` connect to exactly its targets.

One role per Service, in its targets' project, owned like every other object we create (the
ownership marker in its description, without a port), named `<cluster>/<namespace>/<service>`.
Its grant scope is the project itself (a new role's `["this"]`), its only grant
`ids=<the Service's target ids>;actions=authorize-session,read` (read, so the users' agents
list the aliases), and its principals exactly the annotated ones that exist. A role not ours is
never touched, even one with our name.

Principals are resolved without listing anything while nothing changes: an id is checked
(read) only when it is about to be added to the role, and names are looked up in a directory
of users and groups kept by list-token deltas, and only once some Service names one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from boundary_api import BoundaryError, Conflict, Group, NotFound, Role, User
from boundary_api.ports import BoundaryPort
from boundary_operator.services.desired import ANY_AUTHENTICATED_USER, Principal
from boundary_operator.services.ownership import DetailedIndex, Owner

GRANTED_ACTIONS = ("authorize-session", "read")
DIRECTORY_REFRESH_SECONDS = 1.0
"""A name not found refreshes the directory at most this often (a typo must not cost a listing
per Service per resync)."""


def grant_string(target_ids: Sequence[str]) -> str:
    return f"ids={','.join(sorted(target_ids))};actions={','.join(GRANTED_ACTIONS)}"


def role_name(owner: Owner) -> str:
    return f"{owner.cluster}/{owner.namespace}/{owner.service}"


@dataclass
class Calls:
    """Controller calls of the Service sync, for its log lines and the quiet-resync check."""

    reads: int = 0
    writes: int = 0


@dataclass
class AccessOutcome:
    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Conflicts with objects we do not own."""
    invalid: list[str] = field(default_factory=list)
    """Principals that do not resolve, by annotation."""


class PrincipalDirectory:
    """Boundary's users and groups by scope and name, for grant annotations that name them.
    Listed only once a name is asked for, then kept current by list-token deltas."""

    def __init__(self, boundary: Callable[[], BoundaryPort], calls: Calls) -> None:
        self._boundary = boundary
        self._calls = calls
        self._users: dict[str, User] = {}
        self._groups: dict[str, Group] = {}
        self._tokens: dict[str, str | None] = {"users": None, "groups": None}
        self._refreshed_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def in_use(self) -> bool:
        return self._refreshed_at is not None

    async def refresh(self) -> None:
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        users = await self._boundary().users.list(
            "global", recursive=True, list_token=self._tokens["users"], page_size=1000
        )
        groups = await self._boundary().groups.list(
            "global", recursive=True, list_token=self._tokens["groups"], page_size=1000
        )
        self._calls.reads += users.pages + groups.pages
        users.apply_to(self._users)
        groups.apply_to(self._groups)
        self._tokens = {"users": users.list_token, "groups": groups.list_token}
        self._refreshed_at = time.monotonic()

    async def find(self, principal: Principal, scopes: Sequence[str]) -> str | None:
        """The id of the user or group of that name in the nearest of `scopes` (listed nearest
        first), refreshing once when it is not known yet."""
        found = self._lookup(principal, scopes)
        if found is None:
            async with self._lock:
                since = time.monotonic() - (self._refreshed_at or float("-inf"))
                if since >= DIRECTORY_REFRESH_SECONDS:
                    await self._refresh()
            found = self._lookup(principal, scopes)
        return found

    def _lookup(self, principal: Principal, scopes: Sequence[str]) -> str | None:
        entries: dict[str, User] | dict[str, Group] = (
            self._users if principal.kind == "user" else self._groups
        )
        for scope in scopes:
            for entry in entries.values():
                if entry.scope_id == scope and entry.name == principal.ref:
                    return entry.id
        return None


class AccessSync:
    """Keeps each Service's role as its grant annotations ask. Roles are seen through a view
    refreshed with the targets' and aliases' (by list-token delta)."""

    def __init__(self, boundary: Callable[[], BoundaryPort], cluster: str, calls: Calls) -> None:
        """`boundary` gives the client of the current login."""
        self.cluster = cluster
        self._calls = calls
        self._roles: DetailedIndex[Role] = DetailedIndex(
            cluster, value_of=lambda r: f"{r.scope_id}/{r.name}"
        )
        self._token: str | None = None
        self._orgs: dict[str, str] = {}
        self.directory = PrincipalDirectory(boundary, calls)
        self._boundary = boundary

    async def refresh(self) -> None:
        roles = await self._boundary().roles.list(
            "global", recursive=True, list_token=self._token, page_size=1000
        )
        self._calls.reads += roles.pages
        self._roles.apply(roles)
        self._token = roles.list_token
        if self.directory.in_use:
            await self.directory.refresh()

    def owned_roles(self, uid: str | None = None) -> dict[str, tuple[Owner, Role]]:
        return self._roles.owned(uid)

    async def sync(
        self,
        owner: Owner,
        project: str,
        target_ids: Sequence[str],
        principals: Sequence[Principal] | None,
        outcome: AccessOutcome,
    ) -> None:
        """Make the Service's role grant `principals` exactly `target_ids`, or remove it when
        there is nobody (or nothing) to grant."""
        ours = [role for _, role in self.owned_roles(owner.uid).values()]
        keep = next((role for role in ours if role.scope_id == project), None)
        for role in ours:
            if role is not keep:  # in another project: the Service's scope changed
                await self._delete(role, outcome)
        if not principals or not target_ids:
            if keep is not None:
                await self._delete(keep, outcome)
            return
        if keep is not None:
            keep = await self._whole(keep)
        present = set(keep.principal_ids) if keep else set()
        ids = await self._resolve(principals, project, present, outcome)
        if not ids:
            if keep is not None:
                await self._delete(keep, outcome)
            return
        if keep is None:
            keep = await self._create(owner, project, outcome)
            if keep is None:
                return
        grants = [grant_string(target_ids)]
        if keep.grant_strings != grants:
            keep = await self._write(
                keep, self._boundary().roles.set_grants(keep.id, keep.version, grants)
            )
            outcome.changes.append(
                f"role {keep.id} grants {', '.join(GRANTED_ACTIONS)} on {', '.join(target_ids)}"
            )
        if sorted(keep.principal_ids) != ids:
            keep = await self._write(
                keep, self._boundary().roles.set_principals(keep.id, keep.version, ids)
            )
            outcome.changes.append(f"role {keep.id} is for {', '.join(ids)}")

    async def remove(self, uid: str, outcome: AccessOutcome) -> None:
        for _, role in list(self.owned_roles(uid).values()):
            await self._delete(role, outcome)

    async def _write(self, role: Role, change: Awaitable[Role]) -> Role:
        self._calls.writes += 1
        try:
            changed = await change
        except BoundaryError:
            # Changed behind our back, most likely: a stale version answers 500 here, not 404
            # (measured). Read it afresh next time.
            self._roles[role.id] = role
            raise
        self._roles.remember(changed)
        return changed

    async def _whole(self, role: Role) -> Role:
        """The role with its principals and grants, read once after a listing left them out."""
        if not self._roles.is_whole(role.id):
            self._calls.reads += 1
            role = await self._boundary().roles.read(role.id)
            self._roles.remember(role)
        return role

    async def _create(self, owner: Owner, project: str, outcome: AccessOutcome) -> Role | None:
        name = role_name(owner)
        holder = self._roles.by_value(f"{project}/{name}")
        if holder is not None:
            if Owner.of_cluster(holder.description, self.cluster) is None:
                outcome.problems.append(
                    f"role {name!r} in {project} belongs to nobody this operator knows "
                    f"({holder.id} is not ours); left as is"
                )
                return None
            # Ours, for an earlier Service of the same name (deleted, created again): stale.
            await self._delete(holder, outcome)
        self._calls.writes += 1
        try:
            role = await self._boundary().roles.create(
                project, name=name, description=owner.description()
            )
        except Conflict:
            outcome.problems.append(
                f"role {name!r} in {project} exists and is not ours (not listed yet); left as is"
            )
            return None
        self._roles.remember(role)
        outcome.changes.append(f"created role {role.id}")
        return role

    async def _delete(self, role: Role, outcome: AccessOutcome) -> None:
        self._calls.writes += 1
        with contextlib.suppress(NotFound):
            await self._boundary().roles.delete(role.id)
        self._roles.pop(role.id, None)
        outcome.changes.append(f"deleted role {role.id}")

    async def _resolve(
        self,
        principals: Sequence[Principal],
        project: str,
        present: set[str],
        outcome: AccessOutcome,
    ) -> list[str]:
        """The ids of `principals` that exist (sorted); each one that does not is reported."""
        ids: set[str] = set()
        for principal in principals:
            if principal.is_id:
                known = principal.ref == ANY_AUTHENTICATED_USER or principal.ref in present
                if known or await self._exists(principal.ref):
                    ids.add(principal.ref)
                else:
                    outcome.invalid.append(
                        f"{principal.annotation}: no {principal.kind} {principal.ref!r} in Boundary"
                    )
                continue
            scopes = await self._scopes_for(principal, project)
            found = await self.directory.find(principal, scopes)
            if found is None:
                outcome.invalid.append(
                    f"{principal.annotation}: no {principal.kind} named {principal.ref!r} in "
                    f"{', '.join(scopes)}"
                )
            else:
                ids.add(found)
        return sorted(ids)

    async def _exists(self, principal_id: str) -> bool:
        self._calls.reads += 1
        try:
            if principal_id.startswith("u_"):
                await self._boundary().users.read(principal_id)
            elif principal_id.startswith("g_"):
                await self._boundary().groups.read(principal_id)
            else:
                await self._boundary().managed_groups.read(principal_id)
        except NotFound:
            return False
        return True

    async def _scopes_for(self, principal: Principal, project: str) -> list[str]:
        """Where a name is looked up, nearest first: the project (groups only: users live in
        orgs and global), its org, global."""
        if project not in self._orgs:
            self._calls.reads += 1
            self._orgs[project] = (await self._boundary().scopes.read(project)).scope_id
        path = [self._orgs[project], "global"]
        return [project, *path] if principal.kind == "group" else path
