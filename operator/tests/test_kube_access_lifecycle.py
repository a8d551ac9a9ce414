"""BoundaryKubernetesAccess through its whole life on the contract-checked fakes (an in-memory
controller behind the real BoundaryClient, an in-memory apiserver with the TokenRequest API):
create → steady state → restart → rotation with grace → forced rotation → spec changes →
clashes with what is not ours → deletion. After each step: what both sides hold, which tokens
the apiserver still takes, the status, the Events, and how many writes it took."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from boundary_api import BoundaryClient
from boundary_devstack.fakes import FakeController, FakeKube
from boundary_devstack.fakes.boundary import AUTH_METHOD, LOGIN, PASSWORD, PROJECT
from boundary_operator.kubeaccess import builders
from boundary_operator.kubeaccess.service import ROTATE_ANNOTATION, KubeAccessService
from boundary_operator.kubeaccess.status import AccessResult, status_update
from boundary_operator.settings import OperatorSettings

NAMESPACE, NAME, UID = "team-a", "ro", "uid-ro-1"
CA = "-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----\n"
SETTINGS = OperatorSettings.model_validate(
    {
        "BOUNDARY_ADDR": "http://fake-controller",
        "BOUNDARY_TOKEN": "at_1234567890_x",
        "BOUNDARY_OPERATOR_CLUSTER_NAME": "prod",
        "BOUNDARY_OPERATOR_DEFAULT_SCOPE": PROJECT,
        "BOUNDARY_OPERATOR_KUBE_API_ADDRESS": "127.0.0.1:6443",
    }
)
SPEC: dict[str, Any] = {
    "alias": "ro.team-a.kube",
    "roleRef": {"kind": "ClusterRole", "name": "view"},
    "principals": {"users": ["u_ro12345"], "groups": ["g_sre1234"]},
    "worker": {"name": "edge"},
    "tokenLifetime": "10m",
}


def access(spec: dict[str, Any] | None = None, name: str = NAME, uid: str = UID) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryKubernetesAccess",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": uid, "generation": 1},
        "spec": spec or dict(SPEC),
    }


@dataclass
class Clock:
    now: datetime.datetime = field(
        default_factory=lambda: datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
    )

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)


@dataclass
class World:
    controller: FakeController
    kube: FakeKube
    boundary: BoundaryClient
    clock: Clock
    events: list[str] = field(default_factory=list)

    def service(self) -> KubeAccessService:
        return KubeAccessService(self.kube, self.boundary, SETTINGS, clock=self.clock)

    @property
    def body(self) -> dict[str, Any]:
        return self.kube.objects[("BoundaryKubernetesAccess", NAMESPACE, NAME)]

    async def reconcile(self, service: KubeAccessService | None = None) -> AccessResult:
        """One reconcile as the handler runs it: status written when it changes, Events kept."""
        result = await (service or self.service()).reconcile(self.body)
        status, events = status_update(self.body, result)
        if status is not None:
            self.body["status"] = {**self.body.get("status", {}), **status}
        self.events += [f"{e.type} {e.reason}: {e.message}" for e in [*result.events, *events]]
        return result

    def writes(self) -> tuple[int, int]:
        return self.controller.total_writes, self.kube.total_writes

    def one(self, collection: str) -> dict[str, Any]:
        (item,) = self.controller.objects(collection).values()
        return item

    def credential_object(self) -> dict[str, Any]:
        stored: dict[str, Any] = self.one("credentials")["_object"]
        return stored

    def condition(self, kind: str) -> dict[str, Any]:
        conditions = self.body["status"]["conditions"]
        found: dict[str, Any] = next(c for c in conditions if c["type"] == kind)
        return found


@pytest.fixture
async def world() -> AsyncIterator[World]:
    controller, kube, clock = FakeController(), FakeKube(), Clock()
    kube.now = clock
    # Boundary refuses principals that do not exist: these do.
    controller.add_principals("u_ro12345", "g_sre1234", "u_other123")
    boundary = controller.client()
    await boundary.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": NAMESPACE},
            "data": {"ca.crt": CA},
        }
    )
    kube.put(
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryPKIWorker",
            "metadata": {"name": "edge", "namespace": NAMESPACE},
            "spec": {},
        }
    )
    kube.put(access())
    yield World(controller, kube, boundary, clock)
    await boundary.aclose()


async def test_create_makes_every_piece_on_both_sides(world: World) -> None:
    await world.reconcile()
    assert world.condition("Ready")["status"] == "True", world.body["status"]
    assert world.condition("Ready")["observedGeneration"] == 1
    account = world.kube.objects[("ServiceAccount", NAMESPACE, "ro-boundary-access")]
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["ownerReferences"][0]["uid"] == UID
    binding = world.kube.objects[("RoleBinding", NAMESPACE, "ro-boundary-access")]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "view",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ro-boundary-access", "namespace": NAMESPACE}
    ]

    target = world.one("targets")
    assert (target["name"], target["address"], target["attributes"]["default_port"]) == (
        "kube:prod/team-a/ro",
        "127.0.0.1",
        6443,
    )
    assert target["egress_worker_filter"] == (
        '"edge" in "/tags/boundary_pki_worker" and "team-a" in "/tags/namespace"'
    )
    assert target["session_max_seconds"] == 600
    assert target["description"] == (
        "boundary-k8s cluster=prod namespace=team-a kubernetes-access=ro uid=uid-ro-1"
    )
    alias = world.one("aliases")
    assert (alias["value"], alias["destination_id"]) == ("ro.team-a.kube", target["id"])
    credential = world.one("credentials")
    assert credential["type"] == "json"
    assert target["brokered_credential_source_ids"] == [credential["id"]]
    role = world.one("roles")
    assert role["grant_strings"] == [f"ids={target['id']};actions=authorize-session,read"]
    assert role["principal_ids"] == ["g_sre1234", "u_ro12345"]
    assert role["scope_id"] == PROJECT

    token = world.credential_object()
    assert token["kind"] == "kubernetes-access"
    assert token["certificate_authority"] == CA
    assert (token["server_name"], token["namespace"]) == ("kubernetes.default.svc", NAMESPACE)
    assert token["expiration"] == "2026-01-01T12:10:00Z"
    assert token["revoke_after"] == "2026-01-01T12:08:20Z"
    assert world.kube.authenticate(token["token"]) == (
        f"system:serviceaccount:{NAMESPACE}:ro-boundary-access"
    )

    status = world.body["status"]
    assert status["targetId"] == target["id"]
    assert status["alias"] == "ro.team-a.kube"
    assert status["principals"] == ["g_sre1234", "u_ro12345"]
    assert status["tokenExpiresAt"] == "2026-01-01T12:10:00Z"
    assert status["tokenRotatesAt"] == "2026-01-01T12:06:40Z"
    assert token["token"] not in str(status)
    assert token["token"] not in str(world.events)
    assert any("TokenIssued" in e for e in world.events)
    assert any(e.startswith("Normal AccessReady") for e in world.events)


async def test_steady_state_and_a_restart_write_nothing_and_post_nothing(world: World) -> None:
    await world.reconcile()
    before, events = world.writes(), len(world.events)
    await world.reconcile()
    await world.reconcile(world.service())  # a new operator process: nothing in memory
    world.clock.advance(300)  # not yet two thirds of 10 minutes
    await world.reconcile()
    assert world.writes() == before
    assert world.events[events:] == []


async def test_rotation_at_two_thirds_updates_in_place_and_revokes_after_the_grace(
    world: World,
) -> None:
    await world.reconcile()
    first = world.credential_object()["token"]
    credential = world.one("credentials")
    world.clock.advance(401)  # past 6 min 40 s
    controller_writes = world.controller.total_writes
    await world.reconcile()
    second = world.credential_object()["token"]
    assert second != first
    assert world.one("credentials")["id"] == credential["id"], "updated in place"
    assert world.controller.total_writes == controller_writes + 1, "one PATCH, nothing else"
    # Both work during the grace; the old one's Secret is marked for deletion.
    assert world.kube.authenticate(first)
    assert world.kube.authenticate(second)
    old = world.kube.objects[("Secret", NAMESPACE, "ro-boundary-access-token-1")]
    assert old["metadata"]["annotations"][builders.REVOKE_AFTER_ANNOTATION]
    assert world.body["status"]["tokenSerial"] == 2
    world.clock.advance(60)
    await world.reconcile()
    assert world.kube.authenticate(first), "still within the grace (100 s)"
    world.clock.advance(60)
    await world.reconcile()
    assert world.kube.authenticate(first) is None, "revoked: its bound Secret is gone"
    assert world.kube.authenticate(second)
    assert ("Secret", NAMESPACE, "ro-boundary-access-token-1") not in world.kube.objects
    assert any("TokenRevoked" in e for e in world.events)


async def test_a_requested_rotation_revokes_the_old_token_at_once(world: World) -> None:
    await world.reconcile()
    first = world.credential_object()["token"]
    world.body["metadata"]["annotations"] = {ROTATE_ANNOTATION: "now"}
    await world.reconcile()
    second = world.credential_object()["token"]
    assert world.kube.authenticate(first) is None
    assert world.kube.authenticate(second)
    assert ROTATE_ANNOTATION not in world.body["metadata"]["annotations"]


async def test_a_deleted_bound_secret_or_account_brings_a_new_token(world: World) -> None:
    await world.reconcile()
    world.kube.remove("Secret", NAMESPACE, "ro-boundary-access-token-1")
    await world.reconcile()
    assert world.kube.authenticate(world.credential_object()["token"])
    world.kube.remove("ServiceAccount", NAMESPACE, "ro-boundary-access")
    await world.reconcile()
    assert world.kube.authenticate(world.credential_object()["token"])
    assert world.body["status"]["tokenSerial"] == 3


async def test_spec_changes_follow(world: World) -> None:
    await world.reconcile()
    target_id = world.body["status"]["targetId"]
    spec = world.body["spec"]
    spec["principals"] = {"users": ["u_other123"]}
    spec["alias"] = "ro2.team-a.kube"
    spec["roleRef"] = {"kind": "ClusterRole", "name": "edit"}
    spec["worker"] = {"filter": '"eu" in "/tags/region"'}
    await world.reconcile()
    assert world.one("roles")["principal_ids"] == ["u_other123"]
    assert [a["value"] for a in world.controller.objects("aliases").values()] == ["ro2.team-a.kube"]
    target = world.one("targets")
    assert target["id"] == target_id
    assert target["egress_worker_filter"] == '"eu" in "/tags/region"'
    binding = world.kube.objects[("RoleBinding", NAMESPACE, "ro-boundary-access")]
    assert binding["roleRef"]["name"] == "edit"

    spec["clusterWide"] = True
    await world.reconcile()
    assert ("RoleBinding", NAMESPACE, "ro-boundary-access") not in world.kube.objects
    cluster = world.kube.objects[("ClusterRoleBinding", None, "boundary-access:team-a:ro")]
    assert cluster["metadata"]["annotations"][builders.OWNER_UID_ANNOTATION] == UID
    assert world.condition("Ready")["status"] == "True"

    spec["clusterWide"] = False
    await world.reconcile()
    assert ("ClusterRoleBinding", None, "boundary-access:team-a:ro") not in world.kube.objects
    assert ("RoleBinding", NAMESPACE, "ro-boundary-access") in world.kube.objects


async def test_a_namespaced_access_never_reads_cluster_role_bindings(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without kubernetesAccess.clusterWide the chart grants no access to them at all."""
    kinds: list[str] = []
    get = world.kube.get

    async def spying(kind: str, namespace: str | None, name: str) -> Any:
        kinds.append(kind)
        return await get(kind, namespace, name)

    monkeypatch.setattr(world.kube, "get", spying)
    await world.reconcile()
    await world.reconcile()
    await world.service().finalize(world.body)
    assert "RoleBinding" in kinds
    assert "ClusterRoleBinding" not in kinds


async def test_a_principal_that_does_not_exist_is_a_spec_problem_not_an_outage(
    world: World,
) -> None:
    """The controller answers such an id with a 500 (its database's foreign key refusal): the
    resource says which field is wrong instead of retrying an outage."""
    world.body["spec"]["principals"] = {"users": ["u_nobody999"]}
    await world.reconcile()
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidPrincipals")
    assert ready["message"].startswith("spec.principals: ")
    assert world.one("roles")["principal_ids"] == []


async def test_what_is_not_ours_is_left_alone_and_reported(world: World) -> None:
    world.kube.put(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "ro-boundary-access", "namespace": NAMESPACE},
        }
    )
    before = world.writes()
    await world.reconcile()
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameTaken")
    assert "ServiceAccount team-a/ro-boundary-access" in ready["message"]
    assert world.writes() == before
    assert len([e for e in world.events if e.startswith("Warning NameTaken")]) == 1
    await world.reconcile()
    assert len([e for e in world.events if e.startswith("Warning NameTaken")]) == 1, "once"

    world.kube.remove("ServiceAccount", NAMESPACE, "ro-boundary-access")
    stranger = await world.boundary.aliases.create("ro.team-a.kube", description="hand made")
    await world.reconcile()
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameTaken")
    assert "alias 'ro.team-a.kube'" in ready["message"]
    assert world.controller.objects("aliases")[stranger.id]["description"] == "hand made"


async def test_invalid_specs_name_the_field_and_write_nothing(world: World) -> None:
    world.body["spec"] = {**SPEC, "tokenLifetime": "5m", "principals": {}}
    before = world.writes()
    await world.reconcile()
    valid = world.condition("ConfigValid")
    assert valid["status"] == "False"
    assert "spec.tokenLifetime: must be between 10m and 24h" in valid["message"]
    assert "spec.principals" in valid["message"]
    assert world.writes() == before

    world.body["spec"] = {**SPEC, "worker": {"name": "absent"}}
    await world.reconcile()
    assert (
        "spec.worker.name: no BoundaryPKIWorker 'absent'"
        in world.condition("ConfigValid")["message"]
    )
    assert world.writes() == before


async def test_deletion_removes_every_piece_and_nothing_else(world: World) -> None:
    foreign = await world.boundary.targets.create_tcp(
        PROJECT, "hand-made", address="db.example", default_port=5432
    )
    await world.reconcile()
    world.body["spec"]["clusterWide"] = True
    await world.reconcile()
    world.clock.advance(401)
    await world.reconcile()  # a rotation: two token Secrets
    token = world.credential_object()["token"]
    await world.service().finalize(world.body)
    assert list(world.controller.objects("targets")) == [foreign.id]
    for collection in ("aliases", "credentials", "credential-stores", "roles"):
        assert world.controller.objects(collection) == {}, collection
    left = [
        key
        for key in world.kube.objects
        if key[0] in ("ServiceAccount", "RoleBinding", "ClusterRoleBinding", "Secret")
    ]
    assert left == []
    assert world.kube.authenticate(token) is None


async def test_deletion_without_a_status_finds_its_objects_by_name(world: World) -> None:
    await world.reconcile()
    world.body.pop("status")
    await world.service().finalize(world.body)
    for collection in ("targets", "aliases", "credentials", "credential-stores", "roles"):
        assert world.controller.objects(collection) == {}, collection
