"""kopf handlers for BoundaryPKIWorker. Thin: they call WorkerService and translate its results
into status, Events and retries. Each gets the Runtime as kopf's memo."""

from __future__ import annotations

from typing import Any

import kopf

from boundary_api import BoundaryError
from boundary_operator.conditions import Condition
from boundary_operator.kube import KubeError
from boundary_operator.metrics import count_reconcile
from boundary_operator.naming import GROUP
from boundary_operator.runtime import Runtime
from boundary_operator.workers.reconcile import WorkerService
from boundary_operator.workers.status import SyncResult, status_update

RESOURCE = (GROUP, "v1alpha1", "boundarypkiworkers")
STATUS_INTERVAL = 10.0


def _backoff(retry: int) -> float:
    return float(min(300, 5 * 2**retry))


async def _service(runtime: Runtime) -> WorkerService:
    return WorkerService(runtime.kube, await runtime.boundary(), runtime.settings)


def _report(body: kopf.Body, patch: kopf.Patch, result: SyncResult) -> None:
    """Status only when it changes, and the Events of what changed."""
    status, events = status_update(dict(body), result)
    if status is not None:
        patch.status.update(status)
    for event in [*result.events, *events]:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


async def _reconcile(
    runtime: Runtime, body: kopf.Body, patch: kopf.Patch, retry: int, created: bool = False
) -> SyncResult:
    async with runtime.locks[body["metadata"]["uid"]]:
        try:
            service = await _service(runtime)
            result = await service.reconcile(dict(body), created=created)
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
            _report(body, patch, failed)
            count_reconcile("BoundaryPKIWorker", ok=False)
            kopf.warn(body, reason="SyncFailed", message=message)
            raise kopf.TemporaryError(message, delay=_backoff(retry)) from exc
    count_reconcile("BoundaryPKIWorker", ok=True)
    _report(body, patch, result)
    return result


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
async def reconcile(
    memo: Runtime, body: kopf.Body, patch: kopf.Patch, retry: int, reason: str, **_: Any
) -> None:
    # What is still converging (a scale-down waiting for its pods, workers connecting) is
    # picked up by the refresh timer.
    await _reconcile(memo, body, patch, retry, created=reason == kopf.Reason.CREATE)


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
