"""kopf handlers for BoundaryPKIWorker. Thin: they call WorkerService and translate its results
into status, Events and retries. Each gets the Runtime as kopf's memo."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from boundary_api import BoundaryError
from boundary_operator import naming
from boundary_operator.conditions import Condition
from boundary_operator.kube import KubeError
from boundary_operator.metrics import count_reconcile
from boundary_operator.naming import GROUP
from boundary_operator.runtime import Runtime
from boundary_operator.workers import draining
from boundary_operator.workers.reconcile import WorkerService
from boundary_operator.workers.status import Event, SyncResult, status_update

log = logging.getLogger("boundary_operator.workers")

RESOURCE = (GROUP, "v1alpha1", "boundarypkiworkers")
STATUS_INTERVAL = 10.0


def _backoff(retry: int) -> float:
    return float(min(300, 5 * 2**retry))


async def _service(runtime: Runtime) -> WorkerService:
    return WorkerService(runtime.kube, await runtime.boundary(), runtime.settings, runtime.reloads)


def _post(body: Any, events: list[Event]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def _report(body: kopf.Body, patch: kopf.Patch, result: SyncResult) -> None:
    """Status only when it changes, and the Events of what changed."""
    status, events = status_update(dict(body), result)
    if status is not None:
        patch.status.update(status)
    _post(body, [*result.events, *events])


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


@kopf.on.event("", "v1", "pods", labels=naming.WORKER_POD_LABELS)
async def worker_pod_changed(
    memo: Runtime, event: kopf.RawEvent, body: kopf.Body, **_: Any
) -> None:
    """A worker pod started stopping, became Ready, or went: its Boundary worker's draining mark
    follows at once, not at the next refresh (within 10 s), so that no new session is placed on
    a worker that is going away."""
    runtime = memo
    meta = body["metadata"]
    if event["type"] == "DELETED":
        runtime.pod_states.pop(meta["uid"], None)
        return
    state = (draining.is_stopping(dict(body)), draining.is_ready(dict(body)))
    if runtime.pod_states.get(meta["uid"]) == state:
        return
    if state == (False, False):
        # Neither stopping nor Ready (a pod just created, or failing its probe): its worker's
        # mark stays as it is, so there is nothing to read. A scale-down's pods beyond the
        # replicas are marked as they start stopping, or by the reconcile.
        runtime.pod_states[meta["uid"]] = state
        return
    name = (meta.get("labels") or {}).get(f"{GROUP}/worker")
    if not name:
        return
    try:
        resource = await runtime.kube.get("BoundaryPKIWorker", meta["namespace"], name)
        if resource is None:
            return
        async with runtime.locks[resource["metadata"]["uid"]]:
            events = await (await _service(runtime)).follow_pods(resource)
    except (BoundaryError, KubeError) as exc:
        # The refresh timer sets the marks too; it reports what fails.
        await runtime.forget_login(exc)
        log.warning("draining marks of %s/%s: %s", meta["namespace"], name, exc)
        return
    runtime.pod_states[meta["uid"]] = state
    _post(resource, events)
