"""A BoundaryPKIWorker through its whole life, step by step, on the contract-checked fakes:
create → quiet ticks → update → scale up → scale down → lost storage → delete. After each step:
what the controller holds, what the apiserver holds, the status the handler would write, and how
many writes it took: the refresh timer's quiet ticks write nothing, anywhere."""

from __future__ import annotations

import asyncio
import base64
import datetime
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import hcl  # type: ignore[import-untyped]
import httpx
import pytest

from boundary_api import BoundaryClient
from boundary_devstack.fakes import FakeController, FakeKube
from boundary_devstack.fakes.boundary import AUTH_METHOD, LOGIN, PASSWORD
from boundary_operator.settings import OperatorSettings
from boundary_operator.workers.reconcile import REREGISTER_ANNOTATION, WorkerService
from boundary_operator.workers.reloading import RELOAD_GRACE_SECONDS, ReloadWatch
from boundary_operator.workers.status import Event, SyncResult, status_update

T = TypeVar("T")
NAMESPACE, CLUSTER = "edge-ns", "prod"
SETTINGS = OperatorSettings.model_validate(
    {"BOUNDARY_OPERATOR_CLUSTER_NAME": CLUSTER, "BOUNDARY_ADDR": "http://fake-controller"}
)


def resource(replicas: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "metadata": {"name": "edge", "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "registration": {"initialUpstreams": ["controller:9201"]},
            **spec,
        },
    }


@dataclass
class World:
    controller: FakeController
    kube: FakeKube
    service: WorkerService
    status_events: list[Event] = field(default_factory=list)
    """The Events of the last status change (conditions, configuration revisions)."""

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["name"]: w for w in self.controller.objects("workers").values()}

    def tokens(self) -> dict[str, str]:
        secret = self.kube.objects.get(("Secret", NAMESPACE, "edge-activation-tokens"))
        data = (secret or {}).get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def writes(self) -> tuple[int, int]:
        return self.controller.total_writes, self.kube.total_writes

    def report_in(self, reloaded: bool | set[str] = True) -> None:
        """The pods' workers connect and report to the controller (what `boundary server`
        does once activated), with the tags of the mounted worker.hcl. Workers not
        `reloaded` (all when False, else those not named) keep the tags they loaded before,
        as a worker that missed a change does."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        config = self.kube.objects.get(("ConfigMap", NAMESPACE, "edge-config"))
        tags = hcl.loads(config["data"]["worker.hcl"])["worker"]["tags"] if config else {}
        for worker in self.controller.objects("workers").values():
            worker.update(release_version="Boundary v0.21.3", last_status_time=now)
            reload = reloaded if isinstance(reloaded, bool) else worker["name"] in reloaded
            if reload or not worker.get("config_tags"):
                self.controller.report_config_tags(worker["id"], tags)

    def stop_pod(self, pod: str) -> None:
        """A pod deleted, evicted or replaced: it keeps running while it drains."""
        body = self.kube.objects[("Pod", NAMESPACE, pod)]
        body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"

    def draining(self) -> set[str]:
        return {
            name
            for name, worker in self.workers().items()
            if worker.get("api_tags", {}).get("draining") == ["true"]
        }

    async def tick(self, created: bool = False) -> tuple[SyncResult, dict[str, Any] | None]:
        """One reconcile (the refresh timer or a watch event; `created`: kopf's creation
        handler), the status write it asks for applied as kopf would apply it, then the
        StatefulSet controller's and kubelet's turn."""
        answer = await self.tick_without_pods(created)
        self.kube.run_stateful_sets()
        return answer

    async def tick_without_pods(
        self, created: bool = False
    ) -> tuple[SyncResult, dict[str, Any] | None]:
        """One reconcile, the pods left as they are (a stopping one still draining)."""
        body = self.kube.objects[("BoundaryPKIWorker", NAMESPACE, "edge")]
        result = await self.service.reconcile(body, created=created)
        status, self.status_events = status_update(body, result)
        if status is not None:
            body["status"] = {**body.get("status", {}), **status}
        return result, status


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def world(clock: Clock) -> AsyncIterator[World]:
    controller, kube = FakeController(), FakeKube()
    boundary: BoundaryClient = controller.client()
    await boundary.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
    yield World(controller, kube, WorkerService(kube, boundary, SETTINGS, ReloadWatch(clock)))
    await boundary.aclose()


async def test_create_quiet_update_scale_lost_storage_delete(world: World) -> None:
    # Create: one registered worker, its token in the Secret, the manifests applied.
    world.kube.put(resource())
    result, status = await world.tick()
    assert set(world.workers()) == {f"{CLUSTER}-{NAMESPACE}-edge-0"}
    assert set(world.tokens()) == {"edge-0"}
    assert world.tokens()["edge-0"].startswith("neslat_")
    assert [e.reason for e in result.events] == ["Registered"]
    assert ("StatefulSet", NAMESPACE, "edge") in world.kube.objects
    assert status is not None
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "ConfigValid": "True",
        "Registered": "True",
        "Ready": "False",
    }

    # The worker connects: Ready, then quiet ticks write nothing anywhere.
    world.report_in()
    _, status = await world.tick()
    assert status is not None
    assert status["connectedReplicas"] == 1
    before = world.writes()
    for _ in range(3):
        world.report_in()  # its last status time moves on every tick
        result, status = await world.tick()
        assert (status, result.events) == (None, [])
    assert world.writes() == before

    # Update: a tag change rewrites the ConfigMap, not the controller.
    world.kube.put(resource(tags={"team": "net"}))
    await world.tick()
    config = world.kube.objects[("ConfigMap", NAMESPACE, "edge-config")]
    assert "team" in config["data"]["worker.hcl"]
    assert world.writes()[0] == before[0]

    # Drift: an owned object changed by hand is put back.
    config["data"]["worker.hcl"] = "edited"
    await world.tick()
    assert (
        "team" in world.kube.objects[("ConfigMap", NAMESPACE, "edge-config")]["data"]["worker.hcl"]
    )

    # Scale up: a second worker and token.
    world.kube.put(resource(replicas=2, tags={"team": "net"}))
    await world.tick()
    assert set(world.tokens()) == {"edge-0", "edge-1"}
    assert len(world.workers()) == 2

    # Scale down: the worker of ordinal 1 goes once its pod is gone, then its token.
    world.kube.put(resource(replicas=1, tags={"team": "net"}))
    result, _ = await world.tick()  # the pod still runs: wait
    assert len(world.workers()) == 2
    assert result.retry_after == 5
    result, _ = await world.tick()
    assert set(world.workers()) == {f"{CLUSTER}-{NAMESPACE}-edge-0"}
    assert set(world.tokens()) == {"edge-0"}
    assert "Deregistered" in [e.reason for e in result.events]

    # Lost storage: the reregister annotation replaces the worker and restarts the pod.
    first = world.workers()[f"{CLUSTER}-{NAMESPACE}-edge-0"]["id"]
    old_token = world.tokens()["edge-0"]
    lost = resource(replicas=1, tags={"team": "net"})
    lost["metadata"]["annotations"] = {REREGISTER_ANNOTATION: "0"}
    world.kube.put(lost)
    result, _ = await world.tick()
    assert world.workers()[f"{CLUSTER}-{NAMESPACE}-edge-0"]["id"] != first
    assert world.tokens()["edge-0"] != old_token
    body = world.kube.objects[("BoundaryPKIWorker", NAMESPACE, "edge")]
    assert REREGISTER_ANNOTATION not in body["metadata"].get("annotations", {})
    assert [e.reason for e in result.events] == ["Reregistering", "Registered", "Reregistered"]

    # Delete: scale to zero, wait for the pods, then deregister.
    assert await world.service.finalize(body) == "waiting for 1 pod(s) to stop"
    assert world.kube.objects[("StatefulSet", NAMESPACE, "edge")]["spec"]["replicas"] == 0
    world.kube.run_stateful_sets()
    assert await world.service.finalize(body) is None
    assert world.workers() == {}


async def test_a_worker_name_taken_by_a_stranger_is_left_alone(world: World) -> None:
    stranger = world.controller.client()
    await stranger.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
    await stranger.workers.create_controller_led(f"{CLUSTER}-{NAMESPACE}-edge-0")
    world.kube.put(resource())
    _, status = await world.tick()
    assert status is not None
    registered = next(c for c in status["conditions"] if c["type"] == "Registered")
    assert (registered["status"], registered["reason"]) == ("False", "NameTaken")
    assert len(world.workers()) == 1  # the stranger's, untouched


async def test_a_manual_token_secret_is_used_without_the_controller(world: World) -> None:
    world.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mine", "namespace": NAMESPACE},
            "data": {"edge-0": base64.b64encode(b"neslat_mine").decode()},
        }
    )
    world.kube.put(
        resource(
            registration={
                "initialUpstreams": ["c:9201"],
                "activationTokenSecretRef": {"name": "mine"},
            }
        )
    )
    controller_writes = world.controller.total_writes
    _, status = await world.tick()
    assert world.tokens() == {"edge-0": "neslat_mine"}
    assert world.controller.total_writes == controller_writes
    assert status is not None
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"  # no pod running yet


async def test_a_missing_token_secret_names_the_field(world: World) -> None:
    world.kube.put(
        resource(
            registration={
                "initialUpstreams": ["c:9201"],
                "activationTokenSecretRef": {"name": "absent"},
            }
        )
    )
    result, status = await world.tick()
    assert status is not None
    valid = next(c for c in status["conditions"] if c["type"] == "ConfigValid")
    assert valid["status"] == "False"
    assert "activationTokenSecretRef: Secret 'absent' does not exist" in valid["message"]
    assert result.retry_after == 30


EDGE = f"{CLUSTER}-{NAMESPACE}-edge"


async def running(world: World, replicas: int) -> None:
    world.kube.put(resource(replicas=replicas))
    await world.tick()
    world.report_in()
    await world.tick()


async def test_a_stopping_pod_is_marked_draining_until_its_replacement_is_ready(
    world: World,
) -> None:
    await running(world, 2)
    body = world.kube.objects[("BoundaryPKIWorker", NAMESPACE, "edge")]

    # Deleted (or evicted, or replaced by a rollout): the pod watch marks its worker at once.
    world.stop_pod("edge-1")
    events = await world.service.follow_pods(body)
    assert world.draining() == {f"{EDGE}-1"}
    assert [e.reason for e in events] == ["Draining"]
    before = world.writes()
    assert await world.service.follow_pods(body) == []
    result, status = await world.tick_without_pods()
    assert world.writes() == before, "a marked worker is not marked again"
    assert result.events == []
    assert status is not None
    assert [r["draining"] for r in status["replicas"]] == [False, True]

    # Drained, and its replacement (the same Boundary worker) is Ready: serving again.
    world.kube.run_stateful_sets()
    events = await world.service.follow_pods(body)
    assert world.draining() == set()
    assert [e.reason for e in events] == ["Serving"]


async def test_scaling_down_marks_the_removed_worker_then_deregisters_it(world: World) -> None:
    await running(world, 2)
    world.kube.put(resource(replicas=1))
    result, _ = await world.tick_without_pods()  # its pod drains
    assert world.draining() == {f"{EDGE}-1"}
    assert "Draining" in [e.reason for e in result.events]
    world.kube.run_stateful_sets()  # drained: the pod is gone
    result, _ = await world.tick()
    assert set(world.workers()) == {f"{EDGE}-0"}
    assert "Deregistered" in [e.reason for e in result.events]


async def test_a_reloaded_worker_is_not_restarted(world: World, clock: Clock) -> None:
    await running(world, 2)
    world.kube.put(resource(replicas=2, tags={"team": "net"}))
    result, _ = await world.tick()
    assert result.retry_after is not None, "the operator checks again for the new revision"
    world.report_in()  # boundary-worker-supervisor sent SIGHUP; the workers report new tags
    clock.now += RELOAD_GRACE_SECONDS * 2
    result, status = await world.tick()
    assert status is not None
    assert [e.reason for e in world.status_events] == ["ConfigurationLoaded"] * 2
    assert result.events == []
    assert {("Pod", NAMESPACE, "edge-0"), ("Pod", NAMESPACE, "edge-1")} <= set(world.kube.objects)
    assert world.kube.writes["delete"] == 0


async def test_a_worker_that_does_not_reload_is_restarted_one_at_a_time(
    world: World, clock: Clock
) -> None:
    await running(world, 2)
    world.kube.put(resource(replicas=2, tags={"team": "net"}))
    await world.tick()
    world.report_in(reloaded=False)  # an image without the supervisor: nothing reloads
    clock.now += RELOAD_GRACE_SECONDS - 1
    await world.tick()
    assert world.kube.writes["delete"] == 0, "not before the grace"
    clock.now += 2
    result, _ = await world.tick_without_pods()
    assert ("Pod", NAMESPACE, "edge-1") not in world.kube.objects
    assert ("Pod", NAMESPACE, "edge-0") in world.kube.objects
    assert [e.reason for e in result.events] == ["NotReloaded"]
    assert "does not reload in place" in result.events[0].message

    # While edge-1 is not back and Ready, edge-0 waits.
    result, _ = await world.tick_without_pods()
    assert world.kube.writes["delete"] == 1
    # edge-1 restarted with the new configuration; then edge-0 goes.
    world.kube.run_stateful_sets()
    world.report_in(reloaded={f"{EDGE}-1"})
    result, _ = await world.tick_without_pods()
    assert [e.reason for e in world.status_events] == ["ConfigurationLoaded"]
    assert [e.reason for e in result.events] == ["NotReloaded"]
    assert ("Pod", NAMESPACE, "edge-0") not in world.kube.objects


class Rounds:
    """Counts the sequential rounds of calls a reconcile makes, to the apiserver and to the
    controller alike: a call that starts while none is in flight opens a new round; calls
    gathered together share one."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.rounds: list[list[str]] = []

    async def around(self, what: str, call: Awaitable[T]) -> T:
        if not self.in_flight:
            self.rounds.append([])
        self.rounds[-1].append(what)
        self.in_flight += 1
        try:
            await asyncio.sleep(0)  # let calls gathered with this one start too
            return await call
        finally:
            self.in_flight -= 1


class CountedKube:
    def __init__(self, kube: FakeKube, rounds: Rounds) -> None:
        self._kube, self._rounds = kube, rounds

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._kube, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            kind = args[0]["kind"] if name == "apply" else args[0]
            return await self._rounds.around(f"{name} {kind}", method(*args, **kwargs))

        return counted


async def counted_world(world: World) -> Rounds:
    """The world's reconciles, with every call to either side counted in rounds."""
    rounds = Rounds()
    handle = world.controller.handle

    async def counted_handle(request: httpx.Request) -> httpx.Response:
        async def answer() -> httpx.Response:
            return handle(request)

        path = request.url.path.removeprefix("/v1/")
        return await rounds.around(f"{request.method} {path.split('/')[0]}", answer())

    boundary = BoundaryClient(
        "http://fake-controller", transport=httpx.MockTransport(counted_handle), backoff=0.0
    )
    await boundary.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
    rounds.rounds.clear()
    counted: Any = CountedKube(world.kube, rounds)
    world.service = WorkerService(counted, boundary, SETTINGS, world.service.reloads)
    return rounds


READS = [
    "get ConfigMap",
    "get PodDisruptionBudget",
    "get Secret",
    "get Service",
    "get StatefulSet",
    "list Pod",
]
REGISTER = ["POST workers:create:controller-led"]


@pytest.mark.parametrize(
    ("created", "first_rounds", "last_rounds"),
    [(True, [REGISTER], [["list Pod"]]), (False, [READS, REGISTER], [])],
    ids=["created", "resumed"],
)
async def test_a_new_worker_takes_few_rounds_and_no_listing_of_workers(
    world: World, created: bool, first_rounds: list[list[str]], last_rounds: list[list[str]]
) -> None:
    """Just created (kopf's creation handler): the workers are registered and the objects
    applied with no look first; the pods are read once the StatefulSet is applied. Otherwise,
    no token Secret yet: registered right after the reads, still without listing."""
    rounds = await counted_world(world)
    world.kube.put(resource(replicas=2))
    result, _ = await world.tick(created=created)
    assert [sorted(set(r)) for r in rounds.rounds] == [
        *first_rounds,
        ["apply ConfigMap", "apply PodDisruptionBudget", "apply Secret", "apply Service"],
        ["apply StatefulSet"],
        *last_rounds,
    ]
    assert set(world.tokens()) == {"edge-0", "edge-1"}
    assert [e.reason for e in result.events] == ["Registered", "Registered"]


async def test_a_token_secret_deleted_by_hand_is_rebuilt_from_a_listing(world: World) -> None:
    world.kube.put(resource(replicas=2))
    await world.tick()
    first = {name: w["id"] for name, w in world.workers().items()}
    world.kube.remove("Secret", NAMESPACE, "edge-activation-tokens")
    rounds = await counted_world(world)
    result, _ = await world.tick(created=True)  # as a creation handler retried after a crash
    # The names were taken (by our own workers): the workers were listed, and those whose
    # tokens went with the Secret, never activated, were replaced.
    assert ["GET workers"] in rounds.rounds
    assert [e.reason for e in result.events].count("Reregistering") == 2
    assert set(world.tokens()) == {"edge-0", "edge-1"}
    assert len(world.workers()) == 2
    assert not {w["id"] for w in world.workers().values()} & set(first.values())
