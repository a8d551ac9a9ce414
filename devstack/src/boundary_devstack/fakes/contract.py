"""The scenarios a fake must pass exactly as the real program does. Each runs against a port:
tests/test_fake_contract.py runs them on the fakes (in `make unit`), tests/e2e/test_fake_contract.py
on the real controller and apiserver. A fake that drifts from the real program fails one side.

Each scenario names its objects with `tag` so runs never meet, and cleans up after itself."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Awaitable, Callable

from boundary_api import (
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    StaleVersion,
    Unavailable,
)
from boundary_api.client import BoundaryClient
from boundary_api.ports import BoundaryPort
from boundary_devstack.fakes.boundary import UNIQUE, UNKNOWN_PRINCIPAL
from boundary_operator.kube import KubeError, KubeNotFound, KubePort

Whoami = Callable[[str], Awaitable[str | None]]
"""Who the apiserver takes a bearer token for; None when it refuses the token."""
Login = Callable[..., Awaitable[BoundaryClient]]
"""Logs in afresh (a token of its own, so rate limits do not spill over); options are passed to
the client (retries=0 to see a 429)."""


async def _raises(kind: type[Exception], call: Awaitable[object]) -> Exception:
    try:
        await call
    except kind as exc:
        return exc
    raise AssertionError(f"expected {kind.__name__}")


# ---------------------------------------------------------------------- Boundary


async def unique_names_answer_400_with_the_real_message(
    boundary: BoundaryPort, project: str, tag: str
) -> None:
    target = await boundary.targets.create_tcp(
        project, f"{tag}-t", address="db.contract", default_port=1
    )
    try:
        taken = await _raises(
            Conflict,
            boundary.targets.create_tcp(project, f"{tag}-t", address="db.contract", default_port=1),
        )
        assert isinstance(taken, Conflict)
        assert (taken.status, taken.kind, taken.message) == (400, "InvalidArgument", UNIQUE)
        alias = await boundary.aliases.create(f"{tag}.contract", destination_id=target.id)
        again = await _raises(
            Conflict, boundary.aliases.create(f"{tag}.contract", destination_id=target.id)
        )
        assert isinstance(again, Conflict)
        assert (again.status, again.message) == (400, UNIQUE)
        await boundary.aliases.delete(alias.id)
    finally:
        await boundary.targets.delete(target.id)


async def stale_versions_and_missing_objects_answer_404(
    boundary: BoundaryPort, project: str, tag: str
) -> None:
    target = await boundary.targets.create_tcp(
        project, f"{tag}-v", address="db.contract", default_port=1
    )
    updated = await boundary.targets.update(target.id, target.version, address="db2")
    assert updated.version == target.version + 1
    stale = await _raises(
        StaleVersion, boundary.targets.update(target.id, target.version, address="db3.contract")
    )
    assert isinstance(stale, NotFound)
    # An update that changes nothing is refused before its version is looked at.
    empty = await _raises(InvalidArgument, boundary.targets.update(target.id, updated.version))
    assert isinstance(empty, InvalidArgument)
    assert "update_mask" in empty.fields
    alias = await boundary.aliases.create(f"{tag}-v.contract", destination_id=target.id)
    await boundary.targets.delete(target.id)
    await _raises(NotFound, boundary.targets.delete(target.id))
    await _raises(NotFound, boundary.targets.read(target.id))
    # The alias outlives its target, pointing nowhere.
    listing = await boundary.aliases.list("global")
    left = next(a for a in listing.items if a.id == alias.id)
    assert left.destination_id == ""
    await boundary.aliases.delete(alias.id)


async def listings_page_and_deltas_carry_changes_and_removals(
    boundary: BoundaryPort, project: str, tag: str
) -> None:
    made = [
        await boundary.targets.create_tcp(
            project, f"{tag}-l{n}", address="db.contract", default_port=1
        )
        for n in range(3)
    ]
    ours = {t.id for t in made}
    try:
        first = await boundary.targets.list(project, page_size=1)
        assert ours <= {t.id for t in first.items}
        assert first.pages >= 3
        assert first.full
        changed = await boundary.targets.update(made[0].id, made[0].version, address="moved")
        await boundary.targets.delete(made[1].id)
        added = await boundary.targets.create_tcp(
            project, f"{tag}-l3", address="db.contract", default_port=1
        )
        ours = {made[0].id, made[2].id, added.id}
        delta = await boundary.targets.list(project, list_token=first.list_token)
        assert not delta.full
        got = {t.id: t for t in delta.items}
        assert {changed.id, added.id} <= set(got)  # upserts (the real one may send more)
        assert got[changed.id].address == "moved"
        assert made[1].id in delta.removed_ids
        quiet = await boundary.targets.list(project, list_token=delta.list_token)
        assert made[1].id not in {t.id for t in quiet.items}
        refused = await boundary.targets.list(project, list_token="not-a-list-token")  # noqa: S106
        assert refused.full  # listed afresh
        assert ours <= {t.id for t in refused.items}
    finally:
        for target_id in ours:
            await boundary.targets.delete(target_id)


async def authorize_session_by_alias_has_the_real_shape(
    boundary: BoundaryPort, project: str, tag: str
) -> None:
    target = await boundary.targets.create_tcp(
        project, f"{tag}-s", address="127.0.0.1", default_port=5432
    )
    alias = await boundary.aliases.create(f"{tag}-s.contract", destination_id=target.id)
    try:
        session = await boundary.sessions.authorize(alias.value)
        assert session.target_id == target.id
        assert session.session_id.startswith("s_")
        assert session.data.session_id == session.session_id
        assert session.data.target_id == target.id
        assert session.data.worker_addresses
        assert len(session.data.private_key.get_secret_value()) == 64
        assert session.data.certificate
    finally:
        await boundary.aliases.delete(alias.id)
        await boundary.targets.delete(target.id)


async def a_revoked_token_is_refused_with_403_and_found_dead(login: Login, project: str) -> None:
    """The controller answers an ended token as an unknown caller (403, like a missing grant);
    reading the token itself tells a dead login from a missing grant."""
    boundary = await login()
    try:
        assert await boundary.login_alive()
        token_id = boundary.token_id
        assert token_id is not None
        await boundary.auth_tokens.delete(token_id)
        refused = await _raises(PermissionDenied, boundary.targets.list(project))
        assert isinstance(refused, PermissionDenied)
        assert refused.status == 403
        assert not await boundary.login_alive()
    finally:
        await boundary.aclose()


async def list_calls_are_rate_limited_with_retry_after(login: Login, project: str) -> None:
    boundary = await login(retries=0)
    try:
        for _ in range(400):
            try:
                await boundary.targets.list(project)
            except RateLimited as limited:
                refusal = limited
                break
        else:
            raise AssertionError("400 list calls were never rate limited")
        assert refusal.status == 429
        assert "retry after" in refusal.message
    finally:
        await boundary.aclose()


async def credential_sources_are_on_reads_not_in_listings(
    boundary: BoundaryPort, project: str, tag: str
) -> None:
    target = await boundary.targets.create_tcp(
        project, f"{tag}-c", address="127.0.0.1", default_port=5432
    )
    store = await boundary.credential_stores.create_static(project)
    try:
        credential = await boundary.credentials.create_username_password(
            store.id,
            username="u",
            password="p",  # noqa: S106 - a throwaway credential of the scenario
        )
        attached = await boundary.targets.set_credential_sources(
            target.id, target.version, [credential.id]
        )
        assert attached.brokered_credential_source_ids == [credential.id]
        assert (await boundary.targets.read(target.id)).brokered_credential_source_ids == [
            credential.id
        ]
        listing = await boundary.targets.list(project)
        (listed,) = [t for t in listing.items if t.id == target.id]
        assert listed.brokered_credential_source_ids == []
    finally:
        await boundary.targets.delete(target.id)
        await boundary.credential_stores.delete(store.id)


async def worker_api_tags_change_with_the_version(
    boundary: BoundaryPort, project: str, tag: str
) -> None:
    """What the draining mark relies on: API tags added and removed at the worker's version,
    shown in api_tags and canonical_tags; a stale version is refused (with a 500)."""
    created = await boundary.workers.create_controller_led(f"{tag}-tags")
    try:
        marked = await boundary.workers.add_tags(
            created.id, created.version, {"draining": ["true"]}
        )
        assert marked.version == created.version + 1
        assert marked.api_tags == {"draining": ["true"]}
        assert marked.canonical_tags.get("draining") == ["true"]
        assert (await boundary.workers.read(created.id)).api_tags == {"draining": ["true"]}
        stale = await _raises(
            Unavailable, boundary.workers.add_tags(created.id, created.version, {"x": ["y"]})
        )
        assert isinstance(stale, Unavailable)
        assert stale.status == 500
        assert "Unable to add worker tags" in stale.message
        unmarked = await boundary.workers.remove_tags(
            created.id, marked.version, {"draining": ["true"]}
        )
        assert unmarked.version == marked.version + 1
        assert unmarked.api_tags == {}
        assert "draining" not in unmarked.canonical_tags
    finally:
        await boundary.workers.delete(created.id)


async def roles_start_empty_and_take_principals_and_grants_by_version(
    boundary: BoundaryClient, project: str, tag: str
) -> None:
    """What access by annotation relies on: a project role grants in its own project until told
    otherwise, set-principals and set-grants replace and bump the version, listings leave
    principals and grants out, and a principal that does not exist is refused."""
    user = await boundary.users.create("global", name=f"{tag}-user")
    group = await boundary.groups.create(project, name=f"{tag}-group")
    target = await boundary.targets.create_tcp(
        project, f"{tag}-r", address="db.contract", default_port=1
    )
    role = await boundary.roles.create(project, name=f"{tag}-role", description="contract")
    try:
        assert (role.grant_scope_ids, role.principal_ids, role.grant_strings) == (["this"], [], [])
        grant = f"ids={target.id};actions=authorize-session,read"
        granted = await boundary.roles.set_grants(role.id, role.version, [grant])
        assert (granted.version, granted.grant_strings) == (role.version + 1, [grant])
        both = sorted([user.id, group.id])
        assigned = await boundary.roles.set_principals(granted.id, granted.version, both)
        assert (assigned.version, sorted(assigned.principal_ids)) == (granted.version + 1, both)
        # A stale version answers 500 here, where an update's answers 404.
        stale = await _raises(
            Unavailable, boundary.roles.set_principals(role.id, granted.version, [])
        )
        assert isinstance(stale, Unavailable)
        assert (stale.status, stale.kind) == (500, "Internal")
        assert "0 rows updated" in stale.message
        read = await boundary.roles.read(role.id)
        assert (sorted(read.principal_ids), read.grant_strings) == (both, [grant])
        assert read.description == "contract"
        (listed,) = [r for r in (await boundary.roles.list(project)).items if r.id == role.id]
        assert (listed.version, listed.grant_scope_ids) == (assigned.version, ["this"])
        assert (listed.principal_ids, listed.grant_strings) == ([], [])
        malformed = await _raises(
            InvalidArgument, boundary.roles.set_principals(role.id, assigned.version, ["x_1"])
        )
        assert isinstance(malformed, InvalidArgument)
        assert "principal_ids" in malformed.fields
        unknown = await _raises(
            Unavailable,
            boundary.roles.set_principals(role.id, assigned.version, ["u_0000000000"]),
        )
        assert isinstance(unknown, Unavailable)
        assert (unknown.status, unknown.kind) == UNKNOWN_PRINCIPAL[:2]
        assert "foreign key" in unknown.message
        taken = await _raises(Conflict, boundary.roles.create(project, name=f"{tag}-role"))
        assert isinstance(taken, Conflict)
        assert (taken.status, taken.message) == (400, UNIQUE)
        # The refusals changed nothing; an empty list takes every principal away.
        cleared = await boundary.roles.set_principals(role.id, assigned.version, [])
        assert (cleared.version, cleared.principal_ids) == (assigned.version + 1, [])
    finally:
        await boundary.roles.delete(role.id)
        await boundary.targets.delete(target.id)
        await boundary.groups.delete(group.id)
        await boundary.users.delete(user.id)
    await _raises(NotFound, boundary.roles.read(role.id))
    await _raises(NotFound, boundary.roles.delete(role.id))


async def principals_are_listed_by_scope_and_name(
    boundary: BoundaryClient, project: str, tag: str
) -> None:
    """Users (global or an org) and groups (any scope) listed recursively from global, with
    their names and scopes, by list-token delta; unknown ids answer 404."""
    org = (await boundary.scopes.read(project)).scope_id
    user = await boundary.users.create(org, name=f"{tag}-ou")
    group = await boundary.groups.create(project, name=f"{tag}-pg")
    try:
        users = await boundary.users.list("global", recursive=True)
        groups = await boundary.groups.list("global", recursive=True)
        assert (user.id, org, f"{tag}-ou") in {(u.id, u.scope_id, u.name) for u in users.items}
        assert (group.id, project) in {(g.id, g.scope_id) for g in groups.items}
        await boundary.groups.set_members(group.id, group.version, [user.id])
        assert (await boundary.groups.read(group.id)).member_ids == [user.id]
        await boundary.users.delete(user.id)
        delta = await boundary.users.list("global", recursive=True, list_token=users.list_token)
        assert user.id in delta.removed_ids
        for missing in (
            boundary.users.read("u_0000000000"),
            boundary.groups.read("g_0000000000"),
            boundary.managed_groups.read("mgoidc_0000000000"),
        ):
            await _raises(NotFound, missing)
    finally:
        await boundary.groups.delete(group.id)
        with contextlib.suppress(NotFound):
            await boundary.users.delete(user.id)


async def a_grants_change_restarts_a_resolvable_alias_listing(
    boundary: BoundaryPort, project: str, tag: str
) -> None:
    """A list token carries a hash of the user's grants: once a role gives the user more, the
    controller refuses the token ("grants have changed since list token was issued") and the
    listing starts afresh by itself, with the newly resolvable alias in it."""
    token_id = boundary.token_id
    assert token_id is not None
    me = (await boundary.auth_tokens.read(token_id)).user_id
    target = await boundary.targets.create_tcp(
        project, f"{tag}-g", address="127.0.0.1", default_port=22
    )
    alias = await boundary.aliases.create(f"{tag}-g.contract", destination_id=target.id)
    role = await boundary.roles.create(project, name=f"{tag}-grants")
    try:
        first = await boundary.users.list_resolvable_aliases(me)
        granted = await boundary.roles.set_grants(
            role.id, role.version, [f"ids={target.id};actions=authorize-session"]
        )
        await boundary.roles.set_principals(role.id, granted.version, [me])
        again = await boundary.users.list_resolvable_aliases(me, list_token=first.list_token)
        assert again.full, "the refused token was followed by a fresh listing"
        assert alias.id in {a.id for a in again.items}
    finally:
        await boundary.roles.delete(role.id)
        await boundary.aliases.delete(alias.id)
        await boundary.targets.delete(target.id)


async def json_credentials_are_brokered_as_their_object(
    boundary: BoundaryPort, project: str, tag: str
) -> None:
    """A json credential is brokered to sessions as its object; a read shows only an HMAC of
    it; an update replaces the object in place (same id)."""
    target = await boundary.targets.create_tcp(
        project, f"{tag}-j", address="127.0.0.1", default_port=6443
    )
    store = await boundary.credential_stores.create_static(project)
    first = {"token": "first-secret", "nested": {"a": "1"}}
    try:
        credential = await boundary.credentials.create_json(
            store.id, object=first, description=f"{tag} json"
        )
        assert credential.id.startswith("credjson_")
        assert "object" not in credential.attributes
        assert credential.attributes.get("object_hmac")
        target = await boundary.targets.set_credential_sources(
            target.id, target.version, [credential.id]
        )
        session = await boundary.sessions.authorize(target.id)
        assert [c.decoded for c in session.credentials] == [first]
        second = {"token": "second-secret", "nested": {"a": "2"}}
        updated = await boundary.credentials.update_json(
            credential.id, credential.version, object=second
        )
        assert (updated.id, updated.version) == (credential.id, credential.version + 1)
        assert updated.description == f"{tag} json"
        again = await boundary.sessions.authorize(target.id)
        assert [c.decoded for c in again.credentials] == [second]
    finally:
        await boundary.targets.delete(target.id)
        await boundary.credential_stores.delete(store.id)


BOUNDARY_SCENARIOS = [
    roles_start_empty_and_take_principals_and_grants_by_version,
    principals_are_listed_by_scope_and_name,
    unique_names_answer_400_with_the_real_message,
    worker_api_tags_change_with_the_version,
    a_grants_change_restarts_a_resolvable_alias_listing,
    json_credentials_are_brokered_as_their_object,
    credential_sources_are_on_reads_not_in_listings,
    stale_versions_and_missing_objects_answer_404,
    listings_page_and_deltas_carry_changes_and_removals,
    authorize_session_by_alias_has_the_real_shape,
]


# ---------------------------------------------------------------------- Kubernetes


def _config_map(
    namespace: str, name: str, data: dict[str, str], **labels: str
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }


async def apply_writes_only_changes(kube: KubePort, namespace: str, tag: str) -> None:
    name = f"{tag}-apply"
    created = await kube.apply(_config_map(namespace, name, {"a": "1"}))
    again = await kube.apply(_config_map(namespace, name, {"a": "1"}))
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    changed = await kube.apply(_config_map(namespace, name, {"a": "2"}))
    assert changed["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    assert await kube.delete("ConfigMap", namespace, name)


async def apply_owns_fields_per_manager(
    kube: KubePort, other: KubePort, namespace: str, tag: str
) -> None:
    """`other` is the same apiserver under another field manager."""
    name = f"{tag}-owners"
    await kube.apply(_config_map(namespace, name, {"a": "1", "c": "5"}))
    taken = await _raises(
        KubeError, other.apply(_config_map(namespace, name, {"a": "9"}), force=False)
    )
    assert isinstance(taken, KubeError)
    assert (taken.status, taken.reason) == (409, "Conflict")
    await other.apply(_config_map(namespace, name, {"a": "9", "b": "2"}), force=True)
    # Dropped by its only manager: gone. Taken over by the other: kept, with its value.
    await kube.apply(_config_map(namespace, name, {}))
    current = await kube.get("ConfigMap", namespace, name)
    assert current is not None
    assert current.get("data") == {"a": "9", "b": "2"}
    assert await kube.delete("ConfigMap", namespace, name)


async def stale_resource_versions_conflict(kube: KubePort, namespace: str, tag: str) -> None:
    name = f"{tag}-rv"
    created = await kube.apply(_config_map(namespace, name, {"a": "1"}))
    old = created["metadata"]["resourceVersion"]
    await kube.patch_merge("ConfigMap", namespace, name, {"data": {"a": "2"}})
    stale = await _raises(
        KubeError,
        kube.patch_merge(
            "ConfigMap", namespace, name, {"metadata": {"resourceVersion": old}, "data": {"a": "3"}}
        ),
    )
    assert isinstance(stale, KubeError)
    assert stale.status == 409
    assert await kube.delete("ConfigMap", namespace, name)


async def missing_objects_and_selectors(kube: KubePort, namespace: str, tag: str) -> None:
    assert await kube.get("ConfigMap", namespace, f"{tag}-absent") is None
    assert not await kube.delete("ConfigMap", namespace, f"{tag}-absent")
    await kube.apply(_config_map(namespace, f"{tag}-x", {}, group=tag, role="x"))
    await kube.apply(_config_map(namespace, f"{tag}-y", {}, group=tag, role="y"))
    found = await kube.list("ConfigMap", namespace, label_selector=f"group={tag},role=y")
    assert [m["metadata"]["name"] for m in found] == [f"{tag}-y"]
    for suffix in ("x", "y"):
        assert await kube.delete("ConfigMap", namespace, f"{tag}-{suffix}")


async def leases_are_created_once_and_changed_at_the_version_read(
    kube: KubePort, namespace: str, tag: str
) -> None:
    """What leader election relies on: a Lease is created once (a second create is a 409
    AlreadyExists), its MicroTimes come back as written, a merge patch carrying the
    resourceVersion read wins once, and a null removes the holder."""
    name = f"{tag}-lease"
    spec = {
        "holderIdentity": "pod-a",
        "leaseDurationSeconds": 8,
        "acquireTime": "2026-01-01T00:00:00.123456Z",
        "renewTime": "2026-01-01T00:00:00.123456Z",
        "leaseTransitions": 0,
    }
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    created = await kube.create(lease)
    assert created["spec"] == spec
    again = await _raises(KubeError, kube.create(lease))
    assert isinstance(again, KubeError)
    assert (again.status, again.reason) == (409, "AlreadyExists")
    read = created["metadata"]["resourceVersion"]

    def renewal(version: str, holder: str | None) -> dict[str, object]:
        return {"metadata": {"resourceVersion": version}, "spec": {"holderIdentity": holder}}

    await kube.patch_merge("Lease", namespace, name, renewal(read, "pod-b"))
    lost = await _raises(KubeError, kube.patch_merge("Lease", namespace, name, renewal(read, "x")))
    assert isinstance(lost, KubeError)
    assert lost.status == 409
    current = await kube.get("Lease", namespace, name)
    assert current is not None
    assert current["spec"]["holderIdentity"] == "pod-b"
    version = current["metadata"]["resourceVersion"]
    await kube.patch_merge("Lease", namespace, name, renewal(version, None))
    released = await kube.get("Lease", namespace, name)
    assert released is not None
    assert "holderIdentity" not in released["spec"]
    assert await kube.delete("Lease", namespace, name)


def _token_request(secret: dict[str, object] | None, seconds: int) -> dict[str, object]:
    spec: dict[str, object] = {"expirationSeconds": seconds}
    if secret is not None:
        meta = secret["metadata"]
        assert isinstance(meta, dict)
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "name": meta["name"],
            "uid": meta.get("uid", ""),
        }
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


async def tokens_bound_to_a_secret_die_with_it(
    kube: KubePort, who: Whoami, namespace: str, tag: str
) -> None:
    """The TokenRequest API: at least 10 minutes; a missing bound object refused; a token works
    as its ServiceAccount until its bound Secret is deleted, then never again."""
    account = f"{tag}-sa"
    await kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace},
        }
    )
    secret = await kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{tag}-bound", "namespace": namespace},
            "type": "Opaque",
        }
    )
    try:
        short = await _raises(
            KubeError,
            kube.create_subresource(
                "ServiceAccount", namespace, account, "token", _token_request(secret, 599)
            ),
        )
        assert isinstance(short, KubeError)
        assert (short.status, short.reason) == (422, "Invalid"), short
        assert "less than 10 minutes" in short.message
        gone: dict[str, object] = {"metadata": {"name": f"{tag}-absent", "uid": "0" * 8}}
        await _raises(
            KubeNotFound,
            kube.create_subresource(
                "ServiceAccount", namespace, account, "token", _token_request(gone, 600)
            ),
        )
        answer = await kube.create_subresource(
            "ServiceAccount", namespace, account, "token", _token_request(secret, 600)
        )
        token = answer["status"]["token"]
        expires = datetime.datetime.fromisoformat(answer["status"]["expirationTimestamp"])
        left = (expires - datetime.datetime.now(datetime.UTC)).total_seconds()
        assert 590 <= left <= 610, left
        assert await who(token) == f"system:serviceaccount:{namespace}:{account}"
        assert await kube.delete("Secret", namespace, f"{tag}-bound")
        deadline = time.monotonic() + 30
        while await who(token) is not None:
            assert time.monotonic() < deadline, "the token outlived its bound Secret"
            await asyncio.sleep(0.5)
    finally:
        await kube.delete("Secret", namespace, f"{tag}-bound")
        await kube.delete("ServiceAccount", namespace, account)


KUBE_SCENARIOS = [
    leases_are_created_once_and_changed_at_the_version_read,
    apply_writes_only_changes,
    stale_resource_versions_conflict,
    missing_objects_and_selectors,
]
