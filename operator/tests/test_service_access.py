"""Access by annotation through its whole life, on the contract-checked fakes: grant-groups and
grant-users become one owned role per Service that grants exactly its targets to exactly the
principals that exist; it follows changes, drift, restarts and removal, reports principals
that do not exist, and never touches a role that is not ours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from boundary_api import BoundaryClient
from boundary_devstack.fakes import FakeController, FakeKube
from boundary_devstack.fakes.boundary import ORG, PROJECT
from boundary_devstack.manifests import exposed_service
from boundary_operator.services.desired import SyncSettings
from boundary_operator.services.publisher import ServicePublisher
from boundary_operator.services.sync import ServiceSync

CLUSTER, NAMESPACE = "prod", "apps"
SETTINGS = SyncSettings(cluster_name=CLUSTER, default_scope=PROJECT)
GROUPS, USERS = "boundaryproject.io/grant-groups", "boundaryproject.io/grant-users"
ROLE = f"{CLUSTER}/{NAMESPACE}/db"


def service(annotations: dict[str, str] | None = None, ports: int = 1) -> dict[str, Any]:
    listed = [{"name": "pg", "port": 5432}, {"name": "metrics", "port": 9187}][:ports]
    return exposed_service(NAMESPACE, "db", uid="uid-db", annotations=annotations, ports=listed)


@dataclass
class World:
    controller: FakeController
    kube: FakeKube
    boundary: BoundaryClient
    publisher: ServicePublisher

    def roles(self) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.controller.objects("roles").values()}

    def target_ids(self) -> list[str]:
        return sorted(
            t["id"]
            for t in self.controller.objects("targets").values()
            if t["name"].startswith(f"{CLUSTER}/{NAMESPACE}/db/")
        )

    def warnings(self) -> list[str]:
        return [e["message"] for e in self.kube.events if e["type"] == "Warning"]

    def writes(self) -> int:
        return self.controller.total_writes

    async def publish(self, body: dict[str, Any]) -> bool:
        self.kube.put(body)
        current = await self.kube.get("Service", NAMESPACE, body["metadata"]["name"])
        assert current is not None
        return await self.publisher.publish(current)

    async def restart(self) -> None:
        """A new operator process: fresh views, the same controller."""
        self.publisher = publisher(await self.controller.login(), self.kube)


def publisher(boundary: BoundaryClient, kube: FakeKube) -> ServicePublisher:
    return ServicePublisher(
        kube=kube, sync=ServiceSync(boundary, CLUSTER), settings=SETTINGS, namespaces=[NAMESPACE]
    )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    controller, kube = FakeController(), FakeKube()
    boundary = await controller.login()
    yield World(controller, kube, boundary, publisher(boundary, kube))
    await boundary.aclose()


def grant(target_ids: list[str]) -> list[str]:
    return [f"ids={','.join(sorted(target_ids))};actions=authorize-session,read"]


async def test_a_group_by_name_and_a_user_by_id_get_exactly_the_services_targets(
    world: World,
) -> None:
    ops = await world.boundary.groups.create(ORG, name="ops")
    alice = await world.boundary.users.create("global", name="alice")
    assert await world.publish(service({GROUPS: "ops", USERS: alice.id}))
    role = world.roles()[ROLE]
    assert role["scope_id"] == PROJECT
    assert role["grant_scope_ids"] == ["this"]
    assert role["grant_strings"] == grant(world.target_ids())
    assert role["principal_ids"] == sorted([ops.id, alice.id])
    assert role["description"] == (
        f"boundary-k8s cluster={CLUSTER} namespace={NAMESPACE} service=db uid=uid-db"
    )
    synced = [e["message"] for e in world.kube.events if e["reason"] == "Synced"]
    assert f"created role {role['id']}" in synced[-1]

    # Steady state: publishing again and a quiet resync write nothing.
    before = world.writes()
    assert await world.publish(service({GROUPS: "ops", USERS: alice.id}))
    report = await world.publisher.resync()
    assert (report.writes, report.problems) == (0, 0)
    assert world.writes() == before

    # A second port: the grant follows, the principals stay (one write).
    before = world.writes()
    assert await world.publish(service({GROUPS: "ops", USERS: alice.id}, ports=2))
    assert len(world.target_ids()) == 2
    assert world.roles()[ROLE]["grant_strings"] == grant(world.target_ids())
    targets_and_alias = 2
    assert world.writes() - before == targets_and_alias + 1

    # Fewer principals: set-principals only.
    before = world.writes()
    assert await world.publish(service({GROUPS: "ops"}, ports=2))
    assert world.roles()[ROLE]["principal_ids"] == [ops.id]
    assert world.writes() - before == 1

    # No grant annotation left: the role goes, the targets stay.
    assert await world.publish(service(ports=2))
    assert ROLE not in world.roles()
    assert len(world.target_ids()) == 2


async def test_principals_that_do_not_exist_are_one_warning_and_the_rest_is_granted(
    world: World,
) -> None:
    alice = await world.boundary.users.create("global", name="alice")
    asked = {GROUPS: "nobody, g_0000000000", USERS: f"{alice.id},u_0000000000"}
    assert not await world.publish(service(asked))
    assert world.roles()[ROLE]["principal_ids"] == [alice.id]
    (warning,) = world.warnings()
    assert warning == (
        f"{GROUPS}: no group named 'nobody' in {PROJECT}, {ORG}, global; "
        f"{GROUPS}: no group 'g_0000000000' in Boundary; "
        f"{USERS}: no user 'u_0000000000' in Boundary"
    )
    assert [e["reason"] for e in world.kube.events if e["type"] == "Warning"] == [
        "InvalidAnnotations"
    ]
    # Told once, not at every resync; and nothing is written again.
    before = world.writes()
    assert not await world.publish(service(asked))
    await world.publisher.resync()
    assert len(world.warnings()) == 1
    assert world.writes() == before

    # The group is created later: the next sync grants it (the directory is refreshed).
    nobody = await world.boundary.groups.create(PROJECT, name="nobody")
    await world.publisher.resync()
    assert world.roles()[ROLE]["principal_ids"] == sorted([alice.id, nobody.id])

    # Only principals that do not exist: no role at all.
    assert not await world.publish(service({USERS: "u_0000000000"}))
    assert ROLE not in world.roles()


async def test_a_name_is_looked_up_in_the_project_then_its_org_then_global(world: World) -> None:
    await world.boundary.groups.create("global", name="ops")
    in_org = await world.boundary.groups.create(ORG, name="ops")
    await world.boundary.users.create("global", name="bob")
    in_org_bob = await world.boundary.users.create(ORG, name="bob")
    assert await world.publish(service({GROUPS: "ops", USERS: "bob"}))
    assert world.roles()[ROLE]["principal_ids"] == sorted([in_org.id, in_org_bob.id])
    in_project = await world.boundary.groups.create(PROJECT, name="ops")
    await world.publisher.resync()
    assert world.roles()[ROLE]["principal_ids"] == sorted([in_project.id, in_org_bob.id])


async def test_managed_groups_and_every_authenticated_user_by_id(world: World) -> None:
    managed = world.controller.add_managed_group("engineers")
    assert await world.publish(service({GROUPS: managed, USERS: "u_auth"}))
    assert world.roles()[ROLE]["principal_ids"] == sorted([managed, "u_auth"])
    assert not await world.publish(service({GROUPS: "mgoidc_0000000000"}))
    assert world.warnings()[-1] == f"{GROUPS}: no group 'mgoidc_0000000000' in Boundary"


async def test_drift_restart_orphan_and_a_recreated_target(world: World) -> None:
    ops = await world.boundary.groups.create(ORG, name="ops")
    assert await world.publish(service({GROUPS: ops.id}))
    role = world.roles()[ROLE]

    # Drift: a principal added and the grant widened by hand; the resync puts both back.
    intruder = await world.boundary.users.create("global", name="intruder")
    current = await world.boundary.roles.read(role["id"])
    current = await world.boundary.roles.set_principals(
        current.id, current.version, [ops.id, intruder.id]
    )
    await world.boundary.roles.set_grants(current.id, current.version, ["ids=*;type=*;actions=*"])
    await world.publisher.resync()
    assert world.roles()[ROLE]["principal_ids"] == [ops.id]
    assert world.roles()[ROLE]["grant_strings"] == grant(world.target_ids())

    # A target deleted by hand comes back with a new id, and the grant follows it.
    (old,) = world.target_ids()
    await world.boundary.targets.delete(old)
    await world.publisher.resync()
    assert world.target_ids() != [old]
    assert world.roles()[ROLE]["grant_strings"] == grant(world.target_ids())

    # Restart: listings leave principals and grants out; the role is read once, not rewritten.
    await world.restart()
    before, reads = world.writes(), sum(world.controller.reads.values())
    await world.publisher.resync()
    assert world.writes() == before
    quiet = await world.publisher.resync()
    assert (quiet.writes, quiet.reads) == (0, 3)
    assert sum(world.controller.reads.values()) > reads

    # The Service deleted while the operator was down: its role goes with its targets.
    world.kube.remove("Service", NAMESPACE, "db")
    await world.restart()
    report = await world.publisher.resync()
    assert report.removed == 1
    assert ROLE not in world.roles()
    assert world.target_ids() == []


async def test_a_role_not_ours_is_never_touched_and_a_stale_one_of_ours_is_replaced(
    world: World,
) -> None:
    ops = await world.boundary.groups.create(ORG, name="ops")
    hand_made = await world.boundary.roles.create(PROJECT, name=ROLE, description="by hand")
    assert not await world.publish(service({GROUPS: ops.id}))
    assert world.warnings()[-1] == (
        f"role '{ROLE}' in {PROJECT} belongs to nobody this operator knows "
        f"({hand_made.id} is not ours); left as is"
    )
    untouched = world.roles()[ROLE]
    assert (untouched["version"], untouched["principal_ids"]) == (hand_made.version, [])
    # Once it is gone, the next resync makes ours.
    await world.boundary.roles.delete(hand_made.id)
    await world.publisher.resync()
    stale = world.roles()[ROLE]["id"]

    # Our own role for an earlier Service of the same name (deleted and created again, with
    # another port and alias, while the operator was away) is stale: the new Service's role
    # replaces it even before a resync removes the old one's target.
    world.kube.remove("Service", NAMESPACE, "db")
    await world.restart()
    again = exposed_service(
        NAMESPACE,
        "db",
        uid="uid-db-2",
        annotations={GROUPS: ops.id, "boundaryproject.io/alias": "db2.example"},
        ports=[{"name": "http", "port": 80}],
    )
    assert await world.publish(again)
    replaced = world.roles()[ROLE]
    assert replaced["id"] != stale
    assert "uid=uid-db-2" in replaced["description"]


async def test_unpublishing_removes_the_role(world: World) -> None:
    ops = await world.boundary.groups.create(ORG, name="ops")
    assert await world.publish(service({GROUPS: ops.id}))
    assert await world.publisher.unpublish("uid-db")
    assert world.roles() == {}
    assert world.target_ids() == []
