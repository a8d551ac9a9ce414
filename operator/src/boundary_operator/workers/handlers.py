"""kopf handlers for BoundaryPKIWorker. Thin: they call WorkerService and translate its results
into status, Events and retries."""

from __future__ import annotations

from typing import Any

import kopf

from boundary_api import BoundaryError
from boundary_operator.conditions import Condition, merge_conditions
from boundary_operator.kube import KubeError
from boundary_operator.metrics import count_reconcile
from boundary_operator.naming import GROUP
from boundary_operator.runtime import Runtime
from boundary_operator.workers.service import SyncResult, WorkerService

RESOURCE = (GROUP, "v1alpha1", "boundarypkiworkers")
STATUS_INTERVAL = 10.0
WARNING_WHEN_TRUE = frozenset({"PlainTextToken"})
"""Conditions that report a problem by being True."""


def _backoff(retry: int) -> float:
    return float(min(300, 5 * 2**retry))


async def _service(runtime: Runtime) -> WorkerService:
    return WorkerService(runtime.kube, await runtime.boundary(), runtime.settings)


def _write_status(body: kopf.Body, patch: kopf.Patch, result: SyncResult) -> None:
    previous: list[dict[str, Any]] = list(body.get("status", {}).get("conditions") or [])
    generation = int(body["metadata"].get("generation", 0))
    conditions = merge_conditions(result.conditions, generation, previous)
    # Conditions this run did not evaluate keep their last value.
    seen = {c["type"] for c in conditions}
    conditions += [c for c in previous if c.get("type") not in seen]
    patch.status["conditions"] = conditions
    patch.status["observedGeneration"] = generation
    if result.replicas:
        patch.status["replicas"] = [r.to_status() for r in result.replicas]
        patch.status["connectedReplicas"] = result.connected
        patch.status["readyReplicas"] = result.connected
    for condition in conditions:
        old = next((c for c in previous if c.get("type") == condition["type"]), None)
        if old is None or old.get("status") != condition["status"]:
            healthy = (condition["status"] == "True") != (condition["type"] in WARNING_WHEN_TRUE)
            kopf.event(
                body,
                type="Normal" if healthy else "Warning",
                reason=condition["reason"],
                message=f"{condition['type']}={condition['status']}: {condition['message']}",
            )


async def _reconcile(
    runtime: Runtime, body: kopf.Body, patch: kopf.Patch, retry: int
) -> SyncResult:
    async with runtime.locks[body["metadata"]["uid"]]:
        try:
            result = await (await _service(runtime)).reconcile(dict(body))
        except (BoundaryError, KubeError) as exc:
            await runtime.forget_login(exc)
            peer = "Boundary" if isinstance(exc, BoundaryError) else "Kubernetes"
            message = f"cannot sync with {peer}: {exc}"
            failed = SyncResult(
                conditions=[
                    Condition("Registered", False, type(exc).__name__, message),
                    Condition("Ready", False, "SyncFailed", message),
                ]
            )
            _write_status(body, patch, failed)
            count_reconcile("BoundaryPKIWorker", ok=False)
            kopf.warn(body, reason="SyncFailed", message=message)
            raise kopf.TemporaryError(message, delay=_backoff(retry)) from exc
    count_reconcile("BoundaryPKIWorker", ok=True)
    for event in result.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    _write_status(body, patch, result)
    return result


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
async def reconcile(
    memo: Runtime, body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any
) -> None:
    # What is still converging (a scale-down waiting for its pods, workers connecting) is
    # picked up by the refresh timer.
    await _reconcile(memo, body, patch, retry)


@kopf.timer(*RESOURCE, interval=STATUS_INTERVAL, initial_delay=STATUS_INTERVAL)
async def refresh(
    memo: Runtime, body: kopf.Body, patch: kopf.Patch, retry: int = 0, **_: Any
) -> None:
    """Keeps status current (workers connecting) and repairs drift."""
    if body["metadata"].get("deletionTimestamp"):
        return
    await _reconcile(memo, body, patch, retry)


@kopf.on.delete(*RESOURCE)
async def teardown(memo: Runtime, body: kopf.Body, retry: int, **_: Any) -> None:
    """Stop the pods, then deregister the workers; the owned objects then go by garbage
    collection when kopf removes the finalizer."""
    runtime = memo
    async with runtime.locks[body["metadata"]["uid"]]:
        try:
            waiting = await (await _service(runtime)).finalize(dict(body))
        except (BoundaryError, KubeError) as exc:
            await runtime.forget_login(exc)
            kopf.warn(body, reason="TeardownFailed", message=str(exc))
            raise kopf.TemporaryError(str(exc), delay=_backoff(retry)) from exc
    if waiting:
        raise kopf.TemporaryError(waiting, delay=3)
    kopf.info(body, reason="Deregistered", message="pods stopped and Boundary workers deleted")
