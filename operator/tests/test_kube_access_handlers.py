"""The BoundaryKubernetesAccess handlers called as kopf calls them, with a Runtime on the fakes as
their memo: quiet check ticks ask kopf for no status patch and post no Event, a controller
failure becomes Ready=False, one Warning and a retry with backoff, and teardown removes
everything."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
import pytest
from kopf._core.engines import posting

from boundary_api import BoundaryClient
from boundary_api.ports import BoundaryPort
from boundary_devstack.fakes import FakeController, FakeKube
from boundary_devstack.fakes.boundary import AUTH_METHOD, LOGIN, PASSWORD, PROJECT
from boundary_devstack.kopf_events import kopf_events
from boundary_operator.kubeaccess import handlers
from boundary_operator.runtime import Runtime
from boundary_operator.settings import OperatorSettings

SETTINGS = OperatorSettings.model_validate(
    {
        "BOUNDARY_ADDR": "http://fake-controller",
        "BOUNDARY_TOKEN": "at_1234567890_x",
        "BOUNDARY_OPERATOR_CLUSTER_NAME": "prod",
        "BOUNDARY_OPERATOR_DEFAULT_SCOPE": PROJECT,
    }
)
KEY = ("BoundaryKubernetesAccess", "ns", "ro")


def world() -> tuple[FakeController, FakeKube, Runtime]:
    controller, kube = FakeController(), FakeKube()
    kube.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": "ns"},
            "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"},
        }
    )
    kube.put(
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryKubernetesAccess",
            "metadata": {"name": "ro", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {
                "alias": "ro.ns.kube",
                "roleRef": {"kind": "ClusterRole", "name": "view"},
                "principals": {"users": ["u_1234567890"]},
            },
        }
    )

    async def connect(_: OperatorSettings) -> BoundaryPort:
        client: BoundaryClient = controller.client()
        await client.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
        return client

    return controller, kube, Runtime(SETTINGS, kube, connect=connect)


async def tick(runtime: Runtime, kube: FakeKube) -> kopf.Patch:
    body = kube.objects[KEY]
    patch = kopf.Patch()
    await cast(Any, handlers.check)(
        memo=runtime, body=kopf.Body(cast(Any, body)), patch=patch, retry=0
    )
    if patch.status:
        body["status"] = {**body.get("status", {}), **patch.status}
    return patch


def drain(events: asyncio.Queue[posting.K8sEvent]) -> list[posting.K8sEvent]:
    found = []
    while not events.empty():
        found.append(events.get_nowait())
    return found


async def test_quiet_ticks_patch_nothing_and_post_nothing() -> None:
    with kopf_events() as events:
        controller, kube, runtime = world()
        first = await tick(runtime, kube)
        assert first.status["conditions"]
        posted = drain(events)
        assert "AccessReady" in [e.reason for e in posted]
        writes = controller.total_writes, kube.total_writes
        for _ in range(3):
            assert not await tick(runtime, kube)
        assert drain(events) == []
        assert (controller.total_writes, kube.total_writes) == writes
        await runtime.aclose()


async def test_a_controller_failure_is_one_warning_and_a_backoff() -> None:
    with kopf_events() as events:
        controller, kube, runtime = world()
        await tick(runtime, kube)
        drain(events)
        for retry in range(2):
            controller.throttle(20)  # every call refused while the client retries
            patch = kopf.Patch()
            with pytest.raises(kopf.TemporaryError) as caught:
                await cast(Any, handlers.reconcile)(
                    memo=runtime,
                    body=kopf.Body(cast(Any, kube.objects[KEY])),
                    patch=patch,
                    retry=retry,
                )
            assert caught.value.delay == 5 * 2**retry
            if patch.status:
                kube.objects[KEY]["status"] = {**kube.objects[KEY]["status"], **patch.status}
            controller._throttled.clear()
        ready = next(c for c in kube.objects[KEY]["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "SyncFailed")
        warnings = [e for e in drain(events) if e.type == "Warning"]
        assert [e.reason for e in warnings] == ["SyncFailed"], "one Warning, not one per retry"
        await tick(runtime, kube)
        assert [e.reason for e in drain(events)] == ["AccessReady"]
        await runtime.aclose()


async def test_teardown_removes_every_piece() -> None:
    with kopf_events():
        controller, kube, runtime = world()
        await tick(runtime, kube)
        await cast(Any, handlers.teardown)(
            memo=runtime, body=kopf.Body(cast(Any, kube.objects[KEY])), retry=0
        )
        for collection in ("targets", "aliases", "credentials", "credential-stores", "roles"):
            assert controller.objects(collection) == {}, collection
        assert [
            k for k in kube.objects if k[0] in ("ServiceAccount", "RoleBinding", "Secret")
        ] == []
        await runtime.aclose()
