"""The BoundaryKubernetesAccess service layer: makes the Kubernetes side (ServiceAccount,
binding, the token's bound Secret) and the Boundary side (target with alias and egress filter,
static credential store with the token and the cluster CA, role) hold what a resource asks for,
rotates the token, and tears everything down. It knows nothing of kopf: the handlers call it
and turn its results into status, Events and retries.

It compares before it writes, as a timer runs it for every resource: in steady state it reads
and writes nothing back. What is not ours (no ownership marker in Boundary, no owner reference
or owner annotation in Kubernetes) is never changed or deleted: a clash is reported instead."""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from boundary_api import (
    Alias,
    Conflict,
    Credential,
    InvalidArgument,
    NotFound,
    Role,
    Target,
    Unavailable,
)
from boundary_api.ports import BoundaryPort
from boundary_operator import naming
from boundary_operator.conditions import Condition
from boundary_operator.kube import KubePort
from boundary_operator.kubeaccess import builders
from boundary_operator.kubeaccess.builders import AccessContext, AccessNames, TokenState
from boundary_operator.kubeaccess.spec import KubeAccessSpec, spec_problems
from boundary_operator.kubeaccess.status import AccessResult
from boundary_operator.manifest import Manifest, covers, rfc3339
from boundary_operator.settings import OperatorSettings
from boundary_operator.workers.reconcile import stamped
from boundary_operator.workers.status import Event

log = logging.getLogger("boundary_operator.kubeaccess")

ROTATE_ANNOTATION = f"{naming.GROUP}/rotate-token"
"""Set to anything: a new token now, and the current one revoked at once (a leaked token)."""
CA_CONFIG_MAP = "kube-root-ca.crt"
"""Published in every namespace by the controller manager: the CA that signs the apiserver's
serving certificate, as pods see it."""

Clock = Callable[[], datetime.datetime]


class NameTaken(Exception):
    """An object with a name we need exists and is not ours: the message says which."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _gone_ok(deletion: Awaitable[None]) -> None:
    with contextlib.suppress(NotFound):
        await deletion


@dataclass
class Found:
    """The Boundary objects of one resource, as far as they exist."""

    target: Target | None = None
    alias: Alias | None = None
    credential: Credential | None = None
    store_id: str = ""
    role: Role | None = None


class KubeAccessService:
    def __init__(
        self,
        kube: KubePort,
        boundary: BoundaryPort | None,
        settings: OperatorSettings,
        clock: Clock = _now,
    ) -> None:
        self.kube = kube
        self.boundary = boundary
        self.settings = settings
        self.clock = clock

    def names(self, body: Manifest) -> AccessNames:
        meta = body["metadata"]
        return AccessNames(meta["name"], meta["namespace"], meta["uid"], self.settings.cluster_name)

    def context(self, body: Manifest, spec: KubeAccessSpec) -> AccessContext:
        names = self.names(body)
        host, port = self.settings.kube_api_host_port
        return AccessContext(
            names.name,
            names.namespace,
            names.uid,
            names.cluster,
            spec=spec,
            api_host=host,
            api_port=port,
            server_name=self.settings.kube_api_server_name,
        )

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, body: Manifest) -> AccessResult:
        result = AccessResult()
        spec, problems = spec_problems(body.get("spec"))
        if spec is None:
            result.problem("ConfigValid", "InvalidSpec", problems)
            result.conditions.append(Condition("Ready", False, "InvalidSpec", problems))
            return result
        ctx = self.context(body, spec)
        boundary = self.boundary
        scope = spec.scope or self.settings.default_scope
        problems = await self._reference_problems(ctx, scope)
        if boundary is None:
            problems = "the operator has no controller credentials (BOUNDARY_ADDR and a login)"
        if problems:
            result.problem("ConfigValid", "InvalidSpec", problems)
            result.conditions.append(Condition("Ready", False, "InvalidSpec", problems))
            return result
        assert boundary is not None
        result.conditions.append(Condition("ConfigValid", True, "Valid", "spec is valid"))
        try:
            await self._converge(ctx, body, boundary, scope, result)
        except NameTaken as exc:
            result.problem("Ready", "NameTaken", str(exc))
        return result

    async def _reference_problems(self, ctx: AccessContext, scope: str) -> str:
        problems = []
        if not scope:
            problems.append("spec.scope: no project given, and the operator has no default scope")
        worker = ctx.spec.worker
        if worker is not None and worker.name is not None:
            present = {
                w["metadata"]["name"]
                for w in await self.kube.list("BoundaryPKIWorker", ctx.namespace)
            }
            if worker.name not in present:
                problems.append(
                    f"spec.worker.name: no BoundaryPKIWorker {worker.name!r} in namespace "
                    f"{ctx.namespace}"
                )
        return "; ".join(problems)

    async def _converge(
        self,
        ctx: AccessContext,
        body: Manifest,
        boundary: BoundaryPort,
        scope: str,
        result: AccessResult,
    ) -> None:
        status = body.get("status") or {}
        account = await self._ensure_owned(ctx, builders.build_service_account(ctx))
        await self._ensure_binding(ctx, result, status)
        authority = await self._certificate_authority(ctx)
        if authority is None:
            message = (
                f"waiting for ConfigMap {CA_CONFIG_MAP} in {ctx.namespace} (the controller "
                "manager publishes the cluster CA there)"
            )
            result.problem("Ready", "WaitingForClusterCA", message)
            return
        project = await self._project(boundary, scope)
        found = await self._find(ctx, boundary, status)
        if found.target is not None and found.target.scope_id != project:
            await self._remove_boundary(ctx, boundary, found, result)
            found = Found()
        target = await self._ensure_target(ctx, boundary, project, found.target, result)
        alias = await self._ensure_alias(ctx, boundary, target, found.alias, result)
        requested = ROTATE_ANNOTATION in (body["metadata"].get("annotations") or {})
        credential, state = await self._ensure_token(
            ctx,
            boundary,
            target,
            found,
            account,
            authority,
            requested,
            result,
            last_serial=int(status.get("tokenSerial") or 0),
        )
        target = await self._attach(boundary, target, credential)
        role = await self._ensure_role(ctx, boundary, project, target, found.role, result)
        await self._revoke_previous(ctx, state, requested, result)
        if requested:
            await self.kube.patch_merge(
                builders.KIND,
                ctx.namespace,
                ctx.name,
                {"metadata": {"annotations": {ROTATE_ANNOTATION: None}}},
            )
        principals = ctx.spec.principals.ids()
        result.fields.update(
            {
                "targetId": target.id,
                "alias": alias.value,
                "aliasId": alias.id,
                "roleId": role.id,
                "credentialStoreId": credential.credential_store_id,
                "credentialId": credential.id,
                "principals": principals,
                "serviceAccount": ctx.service_account,
                "binding": self._binding_name(ctx),
                "tokenSerial": state.serial,
                "tokenExpiresAt": rfc3339(state.expires),
                "tokenRotatesAt": rfc3339(state.rotate_at),
            }
        )
        if any(c.type == "Ready" for c in result.conditions):
            return  # a problem found on the way (principals Boundary refused) says why not
        result.conditions.append(
            Condition(
                "Ready",
                True,
                "AccessReady",
                f"kubectl through alias {alias.value} (target {target.id}) for "
                f"{', '.join(principals)}; token valid until {rfc3339(state.expires)}",
            )
        )

    # ------------------------------------------------------------------ Kubernetes

    async def _ensure_owned(self, ctx: AccessNames, manifest: Manifest) -> Manifest:
        """Apply one of our objects when the live one lacks what we send. Raises NameTaken when
        the name is held by an object we did not make."""
        meta = manifest["metadata"]
        live = await self.kube.get(manifest["kind"], meta.get("namespace"), meta["name"])
        if live is not None and not builders.is_ours(ctx, live):
            where = f"{meta['namespace']}/" if meta.get("namespace") else ""
            raise NameTaken(
                f"{manifest['kind']} {where}{meta['name']} exists and was not made by this "
                "operator for this resource; it is left untouched"
            )
        desired = stamped(manifest)
        if live is not None and covers(live, desired):
            return live
        return await self.kube.apply(desired)

    def _binding_name(self, ctx: AccessContext) -> str:
        if ctx.spec.cluster_wide:
            return f"ClusterRoleBinding {ctx.cluster_role_binding}"
        return f"RoleBinding {ctx.namespace}/{ctx.role_binding}"

    async def _ensure_binding(
        self, ctx: AccessContext, result: AccessResult, status: dict[str, Any]
    ) -> None:
        """The binding the spec asks for; the other kind, if the status says we made one,
        goes. A binding's roleRef cannot change: a new role means a new binding."""
        desired = builders.build_binding(ctx)
        kind, namespace = desired["kind"], desired["metadata"].get("namespace")
        live = await self.kube.get(kind, namespace, desired["metadata"]["name"])
        if (
            live is not None
            and builders.is_ours(ctx, live)
            and live["roleRef"] != desired["roleRef"]
        ):
            await self.kube.delete(kind, namespace, desired["metadata"]["name"])
            result.events.append(
                Event(
                    "Normal",
                    "Rebound",
                    f"{kind} {desired['metadata']['name']} made again "
                    f"for {ctx.spec.role_ref.kind} {ctx.spec.role_ref.name}",
                )
            )
        await self._ensure_owned(ctx, desired)
        other = (
            ("RoleBinding", ctx.namespace, ctx.role_binding)
            if ctx.spec.cluster_wide
            else ("ClusterRoleBinding", None, ctx.cluster_role_binding)
        )
        # Only where one was made: without kubernetesAccess.clusterWide the chart grants no
        # access to ClusterRoleBindings at all, not even to read one.
        if _made_binding(status, other[0]):
            await self._delete_owned(ctx, *other)

    async def _delete_owned(
        self, ctx: AccessNames, kind: str, namespace: str | None, name: str
    ) -> bool:
        live = await self.kube.get(kind, namespace, name)
        if live is None or not builders.is_ours(ctx, live):
            return False
        return await self.kube.delete(kind, namespace, name)

    async def _certificate_authority(self, ctx: AccessContext) -> str | None:
        config_map = await self.kube.get("ConfigMap", ctx.namespace, CA_CONFIG_MAP)
        value = ((config_map or {}).get("data") or {}).get("ca.crt")
        return str(value) if value else None

    # ------------------------------------------------------------------ Boundary: finding

    async def _project(self, boundary: BoundaryPort, scope: str) -> str:
        if scope.startswith("p_"):
            return scope
        return (await boundary.scopes.find_project(scope)).id

    async def _find(
        self, ctx: AccessNames, boundary: BoundaryPort, status: dict[str, Any]
    ) -> Found:
        """Our objects by the ids the status remembers (each read checked for our marker);
        missing ones are looked up by name when we come to create them."""
        found = Found()
        if status.get("targetId"):
            found.target = await self._read_ours(ctx, boundary.targets.read(status["targetId"]))
        if status.get("aliasId"):
            found.alias = await self._read_ours(ctx, boundary.aliases.read(status["aliasId"]))
        if status.get("roleId"):
            found.role = await self._read_ours(ctx, boundary.roles.read(status["roleId"]))
        sources = found.target.brokered_credential_source_ids if found.target else []
        credential_id = sources[0] if sources else status.get("credentialId")
        if credential_id:
            found.credential = await self._read_ours(ctx, boundary.credentials.read(credential_id))
        found.store_id = (
            found.credential.credential_store_id
            if found.credential
            else str(status.get("credentialStoreId") or "")
        )
        return found

    async def _read_ours(self, ctx: AccessNames, read: Awaitable[Any]) -> Any:
        try:
            item = await read
        except NotFound:
            return None
        return item if ctx.owns(item.description) else None

    async def _by_name(self, ctx: AccessNames, boundary: BoundaryPort, kind: str) -> Any:
        """After a name clash: the object holding our name, adopted when it is ours (made by a
        run that did not get to record it), else NameTaken."""
        name = ctx.boundary_name
        expression = f'"/item/name" == "{name}"'
        if kind == "target":
            items: list[Any] = (
                await boundary.targets.list("global", recursive=True, filter=expression)
            ).items
        else:
            items = (await boundary.roles.list("global", recursive=True, filter=expression)).items
        for item in items:
            if item.name == name and ctx.owns(item.description):
                return item
        raise NameTaken(
            f"a Boundary {kind} named {name!r} exists and was not made by this operator for "
            "this resource; it is left untouched"
        )

    # ------------------------------------------------------------------ Boundary: making

    async def _ensure_target(
        self,
        ctx: AccessContext,
        boundary: BoundaryPort,
        project: str,
        current: Target | None,
        result: AccessResult,
    ) -> Target:
        wanted: dict[str, Any] = {
            "name": ctx.boundary_name,
            "address": ctx.api_host,
            "default_port": ctx.api_port,
            "egress_worker_filter": ctx.egress_filter,
            # No session outlives a token's lifetime: each kubectl use is its own session.
            "session_max_seconds": ctx.spec.lifetime_seconds,
        }
        if current is None:
            try:
                created = await boundary.targets.create_tcp(
                    project,
                    ctx.boundary_name,
                    address=ctx.api_host,
                    default_port=ctx.api_port,
                    description=ctx.description(),
                    egress_worker_filter=ctx.egress_filter,
                    session_max_seconds=ctx.spec.lifetime_seconds,
                )
            except Conflict:
                current = await self._by_name(ctx, boundary, "target")
                assert current is not None
            else:
                result.events.append(
                    Event("Normal", "Created", f"Boundary target {created.id} to the apiserver")
                )
                return created
        have = {
            "name": current.name,
            "address": current.address,
            "default_port": current.default_port,
            "egress_worker_filter": current.egress_worker_filter,
            "session_max_seconds": current.session_max_seconds,
        }
        changes = {k: v for k, v in wanted.items() if have[k] != v}
        if not changes:
            return current
        updated = await boundary.targets.update(current.id, current.version, **changes)
        result.events.append(
            Event(
                "Normal", "Updated", f"Boundary target {updated.id}: {', '.join(sorted(changes))}"
            )
        )
        return updated

    async def _ensure_alias(
        self,
        ctx: AccessContext,
        boundary: BoundaryPort,
        target: Target,
        current: Alias | None,
        result: AccessResult,
    ) -> Alias:
        value = ctx.spec.alias
        if current is not None and (current.value, current.destination_id) == (value, target.id):
            return current
        if current is not None:
            await _gone_ok(boundary.aliases.delete(current.id))
        try:
            alias = await boundary.aliases.create(
                value, destination_id=target.id, description=ctx.description()
            )
        except Conflict:
            holders = (
                await boundary.aliases.list("global", filter=f'"/item/value" == "{value}"')
            ).items
            alias = next((a for a in holders if a.value == value), None)  # type: ignore[assignment]
            if (
                alias is None
                or not ctx.owns(alias.description)
                or alias.destination_id != target.id
            ):
                raise NameTaken(
                    f"alias {value!r} already exists in Boundary and was not made by this "
                    "operator for this resource; it is left untouched"
                ) from None
            return alias
        result.events.append(Event("Normal", "Created", f"alias {value} -> {target.id}"))
        return alias

    async def _ensure_store(
        self, ctx: AccessContext, boundary: BoundaryPort, project: str, store_id: str
    ) -> str:
        if store_id:
            with contextlib.suppress(NotFound):
                store = await boundary.credential_stores.read(store_id)
                if ctx.owns(store.description) and store.scope_id == project:
                    return store.id
        created = await boundary.credential_stores.create_static(
            project, description=ctx.description()
        )
        return created.id

    async def _ensure_token(
        self,
        ctx: AccessContext,
        boundary: BoundaryPort,
        target: Target,
        found: Found,
        account: Manifest,
        authority: str,
        requested: bool,
        result: AccessResult,
        *,
        last_serial: int,
    ) -> tuple[Credential, TokenState]:
        """The credential with a current token: issued anew when there is none, when it is due
        for rotation (or asked for), when its bound Secret or ServiceAccount went, or when what
        it holds beside the token changed."""
        credential = found.credential
        state = TokenState.parse(credential.description) if credential else None
        bound_exists = False
        if state is not None:
            bound = await self.kube.get("Secret", ctx.namespace, ctx.bound_secret(state.serial))
            bound_exists = bound is not None and builders.is_ours(ctx, bound)
        digest = builders.context_digest(ctx, authority)
        now = self.clock()
        reason = builders.rotation_reason(
            state,
            now,
            service_account_uid=account["metadata"]["uid"],
            bound_secret_exists=bound_exists,
            digest=digest,
            requested=requested,
        )
        if reason is None and credential is not None and state is not None:
            return credential, state
        # Counted on from the status when the credential is gone: a serial is never reused.
        serial = max(state.serial if state else 0, last_serial) + 1
        bound = await self._ensure_owned(ctx, builders.build_bound_secret(ctx, serial))
        answer = await self.kube.create_subresource(
            "ServiceAccount",
            ctx.namespace,
            ctx.service_account,
            "token",
            builders.build_token_request(ctx, bound),
        )
        issued = answer["status"]
        expires = datetime.datetime.fromisoformat(issued["expirationTimestamp"])
        fresh = TokenState(serial, account["metadata"]["uid"], now, expires, digest)
        value = builders.credential_object(ctx, issued["token"], fresh, authority)
        description = ctx.description(**fresh.fields())
        if credential is None:
            project = target.scope_id
            store_id = await self._ensure_store(ctx, boundary, project, found.store_id)
            credential = await boundary.credentials.create_json(
                store_id, object=value, name="kubernetes-token", description=description
            )
        else:
            credential = await boundary.credentials.update_json(
                credential.id, credential.version, object=value, description=description
            )
        result.events.append(
            Event(
                "Normal",
                "TokenIssued",
                f"token {serial} (bound to Secret {ctx.bound_secret(serial)}) valid until "
                f"{rfc3339(expires)}, rotated at {rfc3339(fresh.rotate_at)}: {reason}",
            )
        )
        if state is not None and state.serial != serial:
            await self._retire(ctx, state, at_once=requested or not bound_exists, now=now)
        return credential, fresh

    async def _retire(
        self, ctx: AccessNames, state: TokenState, *, at_once: bool, now: datetime.datetime
    ) -> None:
        """The replaced token: revoked at once (asked for, or already dead), or after the
        grace, so that a client that fetched it just before finishes."""
        name = ctx.bound_secret(state.serial)
        if at_once:
            await self._delete_owned(ctx, "Secret", ctx.namespace, name)
            return
        deadline = int((now + state.grace).timestamp())
        live = await self.kube.get("Secret", ctx.namespace, name)
        if live is not None and builders.is_ours(ctx, live):
            await self.kube.patch_merge(
                "Secret",
                ctx.namespace,
                name,
                {"metadata": {"annotations": {builders.REVOKE_AFTER_ANNOTATION: str(deadline)}}},
            )

    async def _revoke_previous(
        self, ctx: AccessContext, state: TokenState, requested: bool, result: AccessResult
    ) -> None:
        """Delete the previous token's bound Secret once its grace is over (which revokes it)."""
        if state.serial <= 1:
            return
        name = ctx.bound_secret(state.serial - 1)
        live = await self.kube.get("Secret", ctx.namespace, name)
        if live is None or not builders.is_ours(ctx, live):
            return
        annotation = (live["metadata"].get("annotations") or {}).get(
            builders.REVOKE_AFTER_ANNOTATION, ""
        )
        deadline = int(annotation) if annotation.isdigit() else 0
        if deadline > self.clock().timestamp() and not requested:
            return
        await self.kube.delete("Secret", ctx.namespace, name)
        result.events.append(
            Event(
                "Normal", "TokenRevoked", f"token {state.serial - 1} revoked: Secret {name} deleted"
            )
        )

    async def _attach(
        self, boundary: BoundaryPort, target: Target, credential: Credential
    ) -> Target:
        if target.brokered_credential_source_ids == [credential.id]:
            return target
        return await boundary.targets.set_credential_sources(
            target.id, target.version, [credential.id]
        )

    async def _ensure_role(
        self,
        ctx: AccessContext,
        boundary: BoundaryPort,
        project: str,
        target: Target,
        current: Role | None,
        result: AccessResult,
    ) -> Role:
        if current is not None and current.scope_id != project:
            await _gone_ok(boundary.roles.delete(current.id))
            current = None
        if current is None:
            try:
                current = await boundary.roles.create(
                    project, name=ctx.boundary_name, description=ctx.description()
                )
            except Conflict:
                current = await self._by_name(ctx, boundary, "role")
            else:
                result.events.append(Event("Normal", "Created", f"Boundary role {current.id}"))
        assert current is not None
        grants = builders.grants(target.id)
        if current.grant_strings != grants:
            current = await boundary.roles.set_grants(current.id, current.version, grants)
        principals = ctx.spec.principals.ids()
        if sorted(current.principal_ids) != principals:
            try:
                current = await boundary.roles.set_principals(
                    current.id, current.version, principals
                )
            except (InvalidArgument, NotFound) as exc:
                result.problem(
                    "Ready",
                    "InvalidPrincipals",
                    f"spec.principals: Boundary refused them: {exc.message}",
                )
                return current
            except Unavailable as exc:
                # The controller answers an id of the right form that names no principal with
                # a 500 from its database's foreign key (measured on 0.21.1): the spec's fault,
                # not an outage to retry.
                if "foreign key" not in exc.message:
                    raise
                result.problem(
                    "Ready",
                    "InvalidPrincipals",
                    "spec.principals: one of them is no Boundary user, group or managed group",
                )
                return current
            result.events.append(
                Event(
                    "Normal",
                    "Granted",
                    f"authorize-session on {target.id} to {', '.join(principals)}",
                )
            )
        return current

    # ------------------------------------------------------------------ teardown

    async def _remove_boundary(
        self, ctx: AccessNames, boundary: BoundaryPort, found: Found, result: AccessResult | None
    ) -> None:
        """Every Boundary object of ours found: role, alias, target, credential, store."""
        if found.role is not None:
            await _gone_ok(boundary.roles.delete(found.role.id))
        if found.alias is not None:
            await _gone_ok(boundary.aliases.delete(found.alias.id))
        if found.target is not None:
            # Boundary keeps a target's aliases when the target goes: ours go first.
            pointing = await boundary.aliases.list(
                "global", filter=f'"/item/destination_id" == "{found.target.id}"'
            )
            for alias in pointing.items:
                if ctx.owns(alias.description):
                    await _gone_ok(boundary.aliases.delete(alias.id))
            await _gone_ok(boundary.targets.delete(found.target.id))
        if found.credential is not None:
            await _gone_ok(boundary.credentials.delete(found.credential.id))
        if found.store_id:
            store = await self._read_ours(ctx, boundary.credential_stores.read(found.store_id))
            if store is not None:
                await _gone_ok(boundary.credential_stores.delete(store.id))
        if result is not None:
            removed = [
                f"{kind} {item.id}"
                for kind, item in (("target", found.target), ("role", found.role))
                if item is not None
            ]
            if removed:
                result.events.append(
                    Event("Normal", "Moved", f"removed {', '.join(removed)} from the old project")
                )

    async def finalize(self, body: Manifest) -> None:
        """Remove every piece, Boundary first (no new session can start), then the
        ServiceAccount (every token of it dies with it), the bindings and bound Secrets."""
        names = self.names(body)
        status = body.get("status") or {}
        if self.boundary is not None:
            found = await self._find(names, self.boundary, status)
            if found.target is None:
                with contextlib.suppress(NameTaken):
                    found.target = await self._by_name(names, self.boundary, "target")
            if found.target is not None and found.credential is None:
                sources = found.target.brokered_credential_source_ids
                if not sources:
                    found.target = await self.boundary.targets.read(found.target.id)
                    sources = found.target.brokered_credential_source_ids
                if sources:
                    found.credential = await self._read_ours(
                        names, self.boundary.credentials.read(sources[0])
                    )
                    if found.credential is not None:
                        found.store_id = found.credential.credential_store_id
            if found.role is None:
                with contextlib.suppress(NameTaken):
                    found.role = await self._by_name(names, self.boundary, "role")
            await self._remove_boundary(names, self.boundary, found, None)
            state = TokenState.parse(found.credential.description) if found.credential else None
        else:
            state = None
        serial = max(state.serial if state else 0, int(status.get("tokenSerial") or 0))
        await self._delete_owned(names, "ServiceAccount", names.namespace, names.service_account)
        await self._delete_owned(names, "RoleBinding", names.namespace, names.role_binding)
        cluster_wide = bool((body.get("spec") or {}).get("clusterWide"))
        if cluster_wide or _made_binding(status, "ClusterRoleBinding"):
            await self._delete_owned(names, "ClusterRoleBinding", None, names.cluster_role_binding)
        # The current token's Secret and the one before (maybe still in its grace); older ones
        # are gone already, and the garbage collector follows the owner references anyway.
        for number in range(max(1, serial - 1), serial + 1):
            await self._delete_owned(names, "Secret", names.namespace, names.bound_secret(number))


def _made_binding(status: dict[str, Any], kind: str) -> bool:
    """Whether the status (its `binding`, "<kind> <name>") says a binding of `kind` was made."""
    return str(status.get("binding") or "").split(" ", 1)[0] == kind
