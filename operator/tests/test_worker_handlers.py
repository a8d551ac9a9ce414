"""The BoundaryPKIWorker handlers called as kopf calls them, with a Runtime on the fakes as their
memo: a quiet refresh tick asks kopf for no status patch and posts no Event, and a controller
failure becomes a condition, a Warning and a retry with backoff."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, cast

import kopf
import pytest
from kopf._core.engines import posting

from boundary_api import BoundaryClient
from boundary_api.ports import BoundaryPort
from boundary_devstack.fakes import FakeController, FakeKube
from boundary_devstack.fakes.boundary import AUTH_METHOD, LOGIN, PASSWORD
from boundary_devstack.kopf_events import kopf_events
from boundary_operator.runtime import Runtime
from boundary_operator.settings import OperatorSettings
from boundary_operator.workers import handlers

SETTINGS = OperatorSettings.model_validate(
    {
        "BOUNDARY_ADDR": "http://fake-controller",
        "BOUNDARY_TOKEN": "at_1234567890_x",
        "BOUNDARY_OPERATOR_CLUSTER_NAME": "prod",
    }
)
BODY = {
    "apiVersion": "workers.boundaryproject.io/v1alpha1",
    "kind": "BoundaryPKIWorker",
    "metadata": {"name": "edge", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {"registration": {"initialUpstreams": ["controller:9201"]}},
}


def runtime_on(controller: FakeController, kube: FakeKube) -> Runtime:
    async def connect(_: OperatorSettings) -> BoundaryPort:
        client: BoundaryClient = controller.client()
        await client.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
        return client

    return Runtime(SETTINGS, kube, connect=connect)


async def tick(runtime: Runtime, kube: FakeKube) -> kopf.Patch:
    body = kube.objects[("BoundaryPKIWorker", "ns", "edge")]
    patch = kopf.Patch()
    await cast(Any, handlers.refresh)(
        memo=runtime, body=kopf.Body(cast(Any, body)), patch=patch, retry=0
    )
    if patch.status:
        body["status"] = {**body.get("status", {}), **patch.status}
    kube.run_stateful_sets()
    return patch


def report_in(controller: FakeController) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for worker in controller.objects("workers").values():
        worker.update(release_version="Boundary v0.21.3", last_status_time=now)


async def test_quiet_refresh_ticks_patch_nothing_and_post_nothing() -> None:
    with kopf_events() as events:
        await quiet_ticks(events)


async def quiet_ticks(events: asyncio.Queue[posting.K8sEvent]) -> None:
    controller, kube = FakeController(), FakeKube()
    kube.put(BODY)
    runtime = runtime_on(controller, kube)
    first = await tick(runtime, kube)
    assert first.status["conditions"]
    assert not events.empty()  # Registered, and the conditions' first values
    report_in(controller)
    await tick(runtime, kube)  # Ready
    while not events.empty():
        events.get_nowait()
    writes = controller.total_writes, kube.total_writes
    for _ in range(3):
        report_in(controller)
        assert not await tick(runtime, kube)
    assert events.empty()
    assert (controller.total_writes, kube.total_writes) == writes
    await runtime.aclose()


async def test_a_controller_failure_is_a_condition_a_warning_and_a_backoff() -> None:
    with kopf_events() as events:
        await controller_failure(events)


async def controller_failure(events: asyncio.Queue[posting.K8sEvent]) -> None:
    controller, kube = FakeController(), FakeKube()
    kube.put(BODY)
    runtime = runtime_on(controller, kube)
    controller.throttle(10)  # every call refused while the client retries
    patch = kopf.Patch()
    body: dict[str, Any] = kube.objects[("BoundaryPKIWorker", "ns", "edge")]
    with pytest.raises(kopf.TemporaryError) as failed:
        await cast(Any, handlers.reconcile)(
            memo=runtime,
            body=kopf.Body(cast(Any, body)),
            patch=patch,
            retry=2,
            reason=kopf.Reason.CREATE,
        )
    assert failed.value.delay == 20
    registered = next(c for c in patch.status["conditions"] if c["type"] == "Registered")
    assert (registered["status"], registered["reason"]) == ("False", "RateLimited")
    reasons = []
    while not events.empty():
        reasons.append(events.get_nowait().reason)
    assert "SyncFailed" in reasons
    await runtime.aclose()


async def pod_changed(runtime: Runtime, kube: FakeKube, pod: str, kind: str = "MODIFIED") -> None:
    body = kube.objects[("Pod", "ns", pod)]
    await cast(Any, handlers.worker_pod_changed)(
        memo=runtime, event={"type": kind, "object": body}, body=kopf.Body(cast(Any, body))
    )


async def test_the_pod_watch_marks_a_stopping_worker_once_and_lifts_the_mark() -> None:
    with kopf_events() as events:
        await pod_watch(events)


async def pod_watch(events: asyncio.Queue[posting.K8sEvent]) -> None:
    controller, kube = FakeController(), FakeKube()
    kube.put({**BODY, "spec": {"registration": {"initialUpstreams": ["c:9201"]}, "replicas": 2}})
    runtime = runtime_on(controller, kube)
    await tick(runtime, kube)
    report_in(controller)
    await tick(runtime, kube)
    while not events.empty():
        events.get_nowait()

    def draining() -> list[str]:
        workers = controller.objects("workers").values()
        return sorted(w["name"] for w in workers if w["api_tags"].get("draining") == ["true"])

    await pod_changed(runtime, kube, "edge-1")  # first sight of a Ready pod: nothing to do
    assert draining() == []
    kube.objects[("Pod", "ns", "edge-1")]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    await pod_changed(runtime, kube, "edge-1")
    assert draining() == ["prod-ns-edge-1"]
    assert events.get_nowait().reason == "Draining"
    # Further events of the stopping pod (its status changing) ask nothing of the controller.
    calls = sum(controller.reads.values()) + controller.total_writes
    await pod_changed(runtime, kube, "edge-1")
    assert sum(controller.reads.values()) + controller.total_writes == calls
    # Gone, then back and Ready: the mark goes.
    await pod_changed(runtime, kube, "edge-1", "DELETED")
    kube.run_stateful_sets()
    await pod_changed(runtime, kube, "edge-1")
    assert draining() == []
    assert events.get_nowait().reason == "Serving"
    await runtime.aclose()


async def test_a_pod_neither_stopping_nor_ready_asks_nothing_of_either_side() -> None:
    with kopf_events():
        await pod_not_ready()


async def pod_not_ready() -> None:
    controller, kube = FakeController(), FakeKube()
    kube.put({**BODY, "spec": {"registration": {"initialUpstreams": ["c:9201"]}, "replicas": 2}})
    runtime = runtime_on(controller, kube)
    await tick(runtime, kube)
    kube.objects[("Pod", "ns", "edge-1")]["status"] = {
        "conditions": [{"type": "Ready", "status": "False"}]
    }
    calls = sum(controller.reads.values()) + controller.total_writes
    kube_calls = sum(kube.reads.values()) + kube.total_writes
    await pod_changed(runtime, kube, "edge-1")  # as a pod just created, not yet Ready
    assert sum(controller.reads.values()) + controller.total_writes == calls
    assert sum(kube.reads.values()) + kube.total_writes == kube_calls
    await runtime.aclose()
