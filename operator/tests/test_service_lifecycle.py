"""Services through their whole life, step by step, on the contract-checked fakes (an in-memory
controller behind the real BoundaryClient, an in-memory apiserver): publish → update → rename →
conflict → orphan → delete → restart, and a re-login. After each step: what Boundary holds, what
the Service says (Events, the targets annotation), and how many writes it took."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from boundary_api import BoundaryClient, PermissionDenied
from boundary_devstack.fakes import FakeController, FakeKube
from boundary_devstack.fakes.boundary import AUTH_METHOD, LOGIN, PASSWORD, PROJECT
from boundary_devstack.manifests import exposed_service
from boundary_operator.runtime import Runtime
from boundary_operator.services.desired import TARGETS_STATUS, SyncSettings
from boundary_operator.services.publisher import ServicePublisher
from boundary_operator.services.sync import CONCURRENCY, ServiceSync
from boundary_operator.settings import OperatorSettings

CLUSTER, NAMESPACE = "prod", "apps"
SETTINGS = SyncSettings(cluster_name=CLUSTER, default_scope=PROJECT)


def service(name: str, uid: str, **annotations: str) -> dict[str, Any]:
    ports = [{"name": "pg", "port": 5432}]
    return exposed_service(NAMESPACE, name, uid=uid, annotations=annotations, ports=ports)


@dataclass
class World:
    controller: FakeController
    kube: FakeKube
    publisher: ServicePublisher

    def targets(self) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for t in self.controller.objects("targets").values()}

    def aliases(self) -> dict[str, str]:
        return {
            a["value"]: a["destination_id"] for a in self.controller.objects("aliases").values()
        }

    def warnings(self) -> list[str]:
        return [e["message"] for e in self.kube.events if e["type"] == "Warning"]

    async def publish(self, name: str) -> bool:
        body = await self.kube.get("Service", NAMESPACE, name)
        assert body is not None
        return await self.publisher.publish(body)

    def writes(self) -> tuple[int, int]:
        return self.controller.total_writes, self.kube.total_writes

    async def restart(self) -> None:
        """A new operator process: fresh views, a fresh login, the same controller."""
        self.publisher = publisher(await self.controller.login(), self.kube)


def publisher(boundary: BoundaryClient, kube: FakeKube) -> ServicePublisher:
    return ServicePublisher(
        kube=kube, sync=ServiceSync(boundary, CLUSTER), settings=SETTINGS, namespaces=[NAMESPACE]
    )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    controller, kube = FakeController(), FakeKube()
    boundary = await controller.login()
    yield World(controller, kube, publisher(boundary, kube))
    await boundary.aclose()


async def test_publish_update_rename_conflict_orphan_delete_restart(world: World) -> None:
    # Publish: a target at the Service's DNS name, its default alias, the annotation back.
    world.kube.put(service("db", "uid-db"))
    assert await world.publish("db")
    target = world.targets()[f"{CLUSTER}/{NAMESPACE}/db/pg"]
    assert target["address"] == f"db.{NAMESPACE}.svc.cluster.local"
    assert target["attributes"]["default_port"] == 5432
    assert world.aliases() == {f"db.{NAMESPACE}.{CLUSTER}": target["id"]}
    annotated = await world.kube.get("Service", NAMESPACE, "db")
    assert annotated is not None
    assert json.loads(annotated["metadata"]["annotations"][TARGETS_STATUS]) == {
        target["id"]: f"db.{NAMESPACE}.{CLUSTER}"
    }
    assert [e["reason"] for e in world.kube.events] == ["Synced"]

    # Steady state: publishing again writes nothing anywhere.
    before = world.writes()
    assert await world.publish("db")
    assert world.writes() == before

    # Update: a session limit changes the target in place.
    world.kube.put(service("db", "uid-db", **{"boundaryproject.io/session-max-seconds": "600"}))
    assert await world.publish("db")
    assert world.targets()[f"{CLUSTER}/{NAMESPACE}/db/pg"]["session_max_seconds"] == 600
    assert world.targets()[f"{CLUSTER}/{NAMESPACE}/db/pg"]["id"] == target["id"]

    # Rename the alias: the old value goes, the target stays.
    world.kube.put(service("db", "uid-db", **{"boundaryproject.io/alias": "pg.example"}))
    assert await world.publish("db")
    assert world.aliases() == {"pg.example": target["id"]}

    # Conflict: another Service asks for that alias; nothing is written for it, one Warning.
    world.kube.put(service("copy", "uid-copy", **{"boundaryproject.io/alias": "pg.example"}))
    before = world.writes()
    assert not await world.publish("copy")
    assert not await world.publish("copy")
    assert world.warnings() == [f"alias 'pg.example' is already used by Service {NAMESPACE}/db"]
    assert world.writes()[0] == before[0]
    assert f"{CLUSTER}/{NAMESPACE}/copy/pg" not in world.targets()

    # A hand-made alias is never ours, whether the views know it yet or not.
    boundary = await world.controller.login()
    await boundary.aliases.create("hand.example", destination_id=target["id"])
    world.kube.put(service("hand", "uid-hand", **{"boundaryproject.io/alias": "hand.example"}))
    assert not await world.publish("hand")
    assert (
        world.warnings()[-1]
        == "alias 'hand.example' already exists in Boundary and is not ours; left as is"
    )
    await world.publisher.sync.refresh()
    world.kube.put(service("hand2", "uid-hand2", **{"boundaryproject.io/alias": "hand.example"}))
    assert not await world.publish("hand2")
    assert world.warnings()[-1] == (
        "alias 'hand.example' is already used by an object this operator does not own"
    )

    # Orphan: a Service deleted while the operator was down goes at the next resync.
    for name in ("copy", "hand", "hand2"):
        world.kube.remove("Service", NAMESPACE, name)
    world.kube.put(service("gone", "uid-gone"))
    assert await world.publish("gone")
    world.kube.remove("Service", NAMESPACE, "gone")
    report = await world.publisher.resync()
    # "gone", and the target "hand" got before its alias turned out to be taken.
    assert (report.removed, report.problems) == (2, 0)
    assert f"{CLUSTER}/{NAMESPACE}/gone/pg" not in world.targets()
    assert f"gone.{NAMESPACE}.{CLUSTER}" not in world.aliases()
    assert "hand.example" in world.aliases()  # not ours: left as it is

    # Restart: a new process publishes what is already there before any resync. Nothing is
    # written and no Service is told of a conflict with itself.
    await world.restart()
    warnings, before = len(world.warnings()), world.writes()
    assert await world.publish("db")
    assert world.warnings()[warnings:] == []
    assert world.writes() == before

    # Delete: the target and its alias go with the Service.
    assert await world.publisher.unpublish("uid-db")
    assert f"{CLUSTER}/{NAMESPACE}/db/pg" not in world.targets()
    assert "pg.example" not in world.aliases()
    # Deleting again (an event and a resync racing) is fine.
    assert await world.publisher.unpublish("uid-db")


async def test_a_quiet_resync_reads_by_delta_and_writes_nothing(world: World) -> None:
    for n in range(5):
        world.kube.put(service(f"s{n}", f"uid-{n}"))
    report = await world.publisher.resync()
    assert (report.services, report.problems) == (5, 0)
    assert report.writes > 0
    before = world.writes()
    quiet = await world.publisher.resync()
    assert (quiet.writes, quiet.removed, quiet.problems) == (0, 0, 0)
    assert quiet.reads == 3  # one delta page each of targets, aliases and roles
    assert world.writes() == before


async def test_a_target_deleted_by_hand_comes_back(world: World) -> None:
    world.kube.put(service("db", "uid-db"))
    await world.publisher.resync()
    first = world.targets()[f"{CLUSTER}/{NAMESPACE}/db/pg"]["id"]
    boundary = await world.controller.login()
    await boundary.targets.delete(first)
    await world.publisher.resync()
    second = world.targets()[f"{CLUSTER}/{NAMESPACE}/db/pg"]["id"]
    assert second != first
    assert world.aliases()[f"db.{NAMESPACE}.{CLUSTER}"] == second


async def test_rate_limits_are_waited_out(world: World) -> None:
    world.kube.put(service("db", "uid-db"))
    world.controller.throttle(2)
    assert await world.publish("db")
    assert f"{CLUSTER}/{NAMESPACE}/db/pg" in world.targets()


async def test_a_relogin_keeps_the_views_and_reports_no_false_conflict() -> None:
    controller, kube = FakeController(), FakeKube()

    async def connect(_: OperatorSettings) -> BoundaryClient:
        return await controller.login()

    settings = OperatorSettings.model_validate(
        {
            "BOUNDARY_ADDR": "http://fake-controller",
            "BOUNDARY_TOKEN": "at_1234567890_x",
            "BOUNDARY_OPERATOR_CLUSTER_NAME": CLUSTER,
            "BOUNDARY_OPERATOR_DEFAULT_SCOPE": PROJECT,
            "BOUNDARY_OPERATOR_NAMESPACES": NAMESPACE,
        }
    )
    runtime = Runtime(settings, kube, connect=connect)
    kube.put(service("db", "uid-db"))
    first = await runtime.publisher()
    assert first is not None
    assert await first.publish(service("db", "uid-db"))
    controller.expire_tokens()  # the login ends; the next call is refused and logs in again
    with pytest.raises(PermissionDenied) as expired:
        await first.publish(service("db", "uid-db", **{"boundaryproject.io/alias": "x.example"}))
    await runtime.forget_login(expired.value)
    again = await runtime.publisher()  # logs in again
    assert again is not None
    before = controller.total_writes, [e for e in kube.events if e["type"] == "Warning"]
    assert await again.publish(service("db", "uid-db"))
    assert (controller.total_writes, [e for e in kube.events if e["type"] == "Warning"]) == before
    await runtime.aclose()


def credentials_secret(password: str, version: str) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-login", "namespace": NAMESPACE, "resourceVersion": version},
        "data": {
            "username": base64.b64encode(b"app").decode(),
            "password": base64.b64encode(password.encode()).decode(),
        },
    }


async def test_brokered_credentials_follow_the_secret_and_go_with_the_annotation(
    world: World,
) -> None:
    world.kube.objects[("Secret", NAMESPACE, "db-login")] = credentials_secret("first", "1")
    annotated = {"boundaryproject.io/credentials-secret": "db-login"}
    world.kube.put(service("db", "uid-db", **annotated))
    assert await world.publish("db")
    boundary = await world.controller.login()
    session = await boundary.sessions.authorize(f"db.{NAMESPACE}.{CLUSTER}")
    assert [(c.username, c.password) for c in session.credentials] == [("app", "first")]
    stores = len(world.controller.objects("credential-stores"))
    assert stores == 1

    # Unchanged Secret: nothing written.
    before = world.writes()
    assert await world.publish("db")
    assert world.writes() == before

    # A new password (a new resourceVersion) updates the credential in place.
    world.kube.objects[("Secret", NAMESPACE, "db-login")] = credentials_secret("second", "2")
    assert await world.publish("db")
    session = await boundary.sessions.authorize(f"db.{NAMESPACE}.{CLUSTER}")
    assert [(c.username, c.password) for c in session.credentials] == [("app", "second")]
    assert len(world.controller.objects("credential-stores")) == stores

    # The annotation goes: so do the credential and its store.
    world.kube.put(service("db", "uid-db"))
    assert await world.publish("db")
    session = await boundary.sessions.authorize(f"db.{NAMESPACE}.{CLUSTER}")
    assert session.credentials == []
    assert world.controller.objects("credentials") == {}
    assert world.controller.objects("credential-stores") == {}
    await boundary.aclose()


async def test_a_restart_finds_brokered_credentials_listings_leave_out(world: World) -> None:
    """Listings do not carry a target's credential sources (on the real controller too, see
    the contract scenario): a restarted operator reads the target before it decides, and
    neither writes nor leaves a second credential store behind; a Service deleted after the
    restart still takes its credentials with it. Failed before the read: the restart created a
    new store and credential and attached them (3 writes, 2 stores)."""
    world.kube.objects[("Secret", NAMESPACE, "db-login")] = credentials_secret("first", "1")
    world.kube.put(service("db", "uid-db", **{"boundaryproject.io/credentials-secret": "db-login"}))
    assert await world.publish("db")
    await world.restart()
    before = world.writes()
    report = await world.publisher.resync()
    assert (report.problems, report.writes) == (0, 0)
    assert world.writes() == before
    assert len(world.controller.objects("credential-stores")) == 1

    await world.restart()
    await world.publisher.sync.refresh()
    del world.kube.objects[("Service", NAMESPACE, "db")]
    assert await world.publisher.unpublish("uid-db")
    assert world.controller.objects("targets") == {}
    assert world.controller.objects("credentials") == {}
    assert world.controller.objects("credential-stores") == {}


async def test_invalid_annotations_are_one_warning_and_no_call(world: World) -> None:
    world.kube.put(
        service(
            "bad",
            "uid-bad",
            **{"boundaryproject.io/alias": "Not_Valid", "boundaryproject.io/ports": "nope"},
        )
    )
    reads = sum(world.controller.reads.values())
    assert not await world.publish("bad")
    assert not await world.publish("bad")
    assert len(world.warnings()) == 1
    assert "Not_Valid" in world.warnings()[0]
    assert "'nope'" in world.warnings()[0]
    assert sum(world.controller.reads.values()) == reads
    assert world.controller.total_writes == 1  # the login


async def test_a_missing_grant_is_not_taken_for_an_ended_login() -> None:
    controller = FakeController()

    async def connect(_: OperatorSettings) -> BoundaryClient:
        return await controller.login()

    settings = OperatorSettings.model_validate(
        {"BOUNDARY_ADDR": "http://fake-controller", "BOUNDARY_TOKEN": "at_1234567890_x"}
    )
    runtime = Runtime(settings, FakeKube(), connect=connect)
    first = await runtime.boundary()
    await runtime.forget_login(PermissionDenied("Forbidden.", status=403))
    assert await runtime.boundary() is first  # the token still works: no new login
    controller.expire_tokens()
    await runtime.forget_login(PermissionDenied("Forbidden.", status=403))
    assert await runtime.boundary() is not first
    await runtime.aclose()


async def test_a_burst_of_services_is_synced_a_few_at_a_time() -> None:
    """kopf hands over a burst of Services at once; at most CONCURRENCY of them are synced with
    the controller at a time, and all of them are."""
    controller, kube = FakeController(), FakeKube()
    in_flight, most = 0, 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.001)
            return controller.handle(request)
        finally:
            in_flight -= 1

    boundary = BoundaryClient("http://fake-controller", transport=httpx.MockTransport(handle))
    await boundary.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
    burst = publisher(boundary, kube)
    services = [kube.put(service(f"s{i}", f"uid-{i}")) for i in range(40)]
    assert all(await asyncio.gather(*(burst.publish(s) for s in services)))
    assert len(controller.objects("aliases")) == 40
    assert most == CONCURRENCY
    await boundary.aclose()
