"""kopf handlers for BoundaryKubernetesAccess. Thin: they call KubeAccessService and translate
its results into status, Events and retries. Each gets the Runtime as kopf's memo."""

from __future__ import annotations

from typing import Any

import kopf

from boundary_api import BoundaryError
from boundary_operator.conditions import Condition
from boundary_operator.kube import KubeError
from boundary_operator.kubeaccess.service import KubeAccessService
from boundary_operator.kubeaccess.status import AccessResult, status_update
from boundary_operator.metrics import count_reconcile
from boundary_operator.naming import GROUP
from boundary_operator.runtime import Runtime

RESOURCE = (GROUP, "v1alpha1", "boundarykubernetesaccesses")
KIND = "BoundaryKubernetesAccess"
CHECK_INTERVAL = 30.0
"""How often each resource is checked: drift repaired, a token due for rotation replaced, a
replaced one revoked when its grace ends. Tokens live at least 10 minutes, so rotation is at
most this late against 6 min 40 s."""


def _backoff(retry: int) -> float:
    return float(min(300, 5 * 2**retry))


async def _service(runtime: Runtime) -> KubeAccessService:
    return KubeAccessService(runtime.kube, await runtime.boundary(), runtime.settings)


def _report(body: kopf.Body, patch: kopf.Patch, result: AccessResult) -> None:
    """Status only when it changes, and the Events of what changed."""
    status, events = status_update(dict(body), result)
    if status is not None:
        patch.status.update(status)
    for event in [*result.events, *events]:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


async def _reconcile(runtime: Runtime, body: kopf.Body, patch: kopf.Patch, retry: int) -> None:
    async with runtime.locks[body["metadata"]["uid"]]:
        try:
            result = await (await _service(runtime)).reconcile(dict(body))
        except (BoundaryError, KubeError) as exc:
            await runtime.forget_login(exc)
            peer = "Boundary" if isinstance(exc, BoundaryError) else "Kubernetes"
            message = f"cannot sync with {peer}: {exc}"
            failed = AccessResult()
            failed.conditions.append(Condition("Ready", False, "SyncFailed", message))
            _report(body, patch, failed)
            count_reconcile(KIND, ok=False)
            raise kopf.TemporaryError(message, delay=_backoff(retry)) from exc
    count_reconcile(KIND, ok=True)
    _report(body, patch, result)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
async def reconcile(
    memo: Runtime, body: kopf.Body, patch: kopf.Patch, retry: int, **_: Any
) -> None:
    await _reconcile(memo, body, patch, retry)


@kopf.timer(*RESOURCE, interval=CHECK_INTERVAL, initial_delay=CHECK_INTERVAL)
async def check(
    memo: Runtime, body: kopf.Body, patch: kopf.Patch, retry: int = 0, **_: Any
) -> None:
    if body["metadata"].get("deletionTimestamp"):
        return
    await _reconcile(memo, body, patch, retry)


@kopf.on.delete(*RESOURCE)
async def teardown(memo: Runtime, body: kopf.Body, retry: int, **_: Any) -> None:
    """Every piece on both sides; then kopf removes the finalizer."""
    runtime = memo
    async with runtime.locks[body["metadata"]["uid"]]:
        try:
            await (await _service(runtime)).finalize(dict(body))
        except (BoundaryError, KubeError) as exc:
            await runtime.forget_login(exc)
            kopf.warn(body, reason="TeardownFailed", message=str(exc))
            raise kopf.TemporaryError(str(exc), delay=_backoff(retry)) from exc
    kopf.info(
        body,
        reason="Removed",
        message="Boundary target, alias, credential store and role deleted; ServiceAccount, "
        "binding and token Secrets deleted",
    )
