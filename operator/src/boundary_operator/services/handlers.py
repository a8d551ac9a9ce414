"""kopf handlers for Services: every Service event is published (or unpublished) at once, and
a background loop resyncs everything periodically. Thin: the work is in ServicePublisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from boundary_api import BoundaryError
from boundary_operator.kube import KubeError
from boundary_operator.metrics import count_reconcile
from boundary_operator.runtime import Runtime

log = logging.getLogger("boundary_operator.services")


@kopf.on.event("", "v1", "services")
async def service_event(memo: Runtime, event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    runtime = memo
    try:
        publisher = await runtime.publisher()
        if publisher is None:
            return
        if event["type"] == "DELETED":
            await publisher.unpublish(body["metadata"]["uid"])
        else:
            await publisher.publish(dict(body))
        count_reconcile("Service", ok=True)
    except (BoundaryError, KubeError) as exc:
        count_reconcile("Service", ok=False)
        # The periodic resync retries; say what happened on the Service meanwhile.
        await runtime.forget_login(exc)
        log.warning(
            "sync of %s/%s failed: %s",
            body["metadata"].get("namespace"),
            body["metadata"].get("name"),
            exc,
        )
        if event["type"] != "DELETED":
            kopf.warn(body, reason="SyncFailed", message=str(exc))


async def resync_forever(runtime: Runtime) -> None:
    failures = 0
    while True:
        try:
            publisher = await runtime.publisher()
            if publisher is not None:
                report = await publisher.resync()
                log.info(
                    "resync: %d services, %d removed, %d with problems, %d writes, %d reads; "
                    "since start: %d writes, %d reads",
                    report.services,
                    report.removed,
                    report.problems,
                    report.writes,
                    report.reads,
                    publisher.sync.writes,
                    publisher.sync.reads,
                )
            failures = 0
            delay = runtime.settings.resync_seconds
        except (BoundaryError, KubeError) as exc:
            await runtime.forget_login(exc)
            failures += 1
            delay = min(runtime.settings.resync_seconds, 2.0 * 2**failures)
            log.warning("resync failed (%s); next try in %.0f s", exc, delay)
        except Exception:
            # This loop is what repairs drift and removes orphans: it must outlive any bug.
            failures += 1
            delay = min(runtime.settings.resync_seconds, 2.0 * 2**failures)
            log.exception("resync failed unexpectedly; next try in %.0f s", delay)
        await asyncio.sleep(delay)


@kopf.on.startup()
async def start_resync(memo: Runtime, **_: Any) -> None:
    memo.resync_task = asyncio.create_task(resync_forever(memo), name="service-resync")


@kopf.on.cleanup()
async def stop_resync(memo: Runtime, **_: Any) -> None:
    if memo.resync_task is not None:
        memo.resync_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await memo.resync_task
