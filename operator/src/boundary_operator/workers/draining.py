"""The draining mark: which of a BoundaryPKIWorker's Boundary workers carry the `draining` API
tag. A worker whose pod is stopping (scaled away, replaced by a rollout, deleted, evicted by a
node drain) is marked, so that the egress filters the operator writes place no new session on
it, while Boundary drains it: on SIGTERM the worker reports itself shutting down, serves its open
connections and exits once they have ended (or at spec.drain.timeout). When a pod of that
ordinal is Ready again, the mark goes.

The decisions are pure; `sync_marks` writes only the marks that differ."""

from __future__ import annotations

from boundary_api import Worker
from boundary_api.ports import WorkersPort
from boundary_operator import naming
from boundary_operator.manifest import Manifest
from boundary_operator.workers.status import Event, draining_marked


def is_stopping(pod: Manifest) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def is_ready(pod: Manifest) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def mark_wanted(ordinal: int, replicas: int, pod: Manifest | None) -> bool | None:
    """True: mark the ordinal's worker; False: lift its mark; None: leave it as it is (no pod of
    that ordinal, or one not Ready yet: its worker takes no session anyway)."""
    if pod is None:
        return None
    if ordinal >= replicas or is_stopping(pod):
        return True
    return False if is_ready(pod) else None


async def sync_marks(
    workers: WorkersPort,
    name: str,
    replicas: int,
    owned: dict[int, Worker],
    pods: dict[str, Manifest],
) -> list[Event]:
    """Mark and unmark `owned` (by ordinal) as their pods ask; `owned` is updated in place with
    the workers as the controller returns them. The Events of what changed."""
    events = []
    for ordinal, worker in sorted(owned.items()):
        pod = naming.pod_name(name, ordinal)
        wanted = mark_wanted(ordinal, replicas, pods.get(pod))
        if wanted is None or wanted == draining_marked(worker):
            continue
        owned[ordinal] = await _set_mark(workers, worker, wanted)
        if wanted:
            message = (
                f"{pod} is stopping: Boundary worker {worker.name} ({worker.id}) is marked "
                f"{naming.DRAINING_TAG} and takes no new session; it serves its open "
                "connections until they end, at most spec.drain.timeout"
            )
            events.append(Event("Normal", "Draining", message))
        else:
            message = f"{pod} is Ready: Boundary worker {worker.name} takes sessions again"
            events.append(Event("Normal", "Serving", message))
    return events


async def _set_mark(workers: WorkersPort, worker: Worker, marked: bool) -> Worker:
    """Add or remove the mark on the worker as it is now: read first, since the controller
    answers a tag change at a stale version with a 500, not a 404 (measured on 0.21.1)."""
    worker = await workers.read(worker.id)
    if draining_marked(worker) == marked:
        return worker
    if marked:
        return await workers.add_tags(
            worker.id, worker.version, {naming.DRAINING_TAG: [naming.DRAINING_MARK]}
        )
    values = worker.api_tags.get(naming.DRAINING_TAG, [])
    return await workers.remove_tags(worker.id, worker.version, {naming.DRAINING_TAG: values})
