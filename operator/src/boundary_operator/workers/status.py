"""What a reconcile found, and the BoundaryPKIWorker status it makes: conditions (each with the
generation it describes), per-replica state, and the Events worth posting. Pure: the handlers
write the status only when `status_update` says something changed, so a quiet resource costs no
write."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from boundary_api import Worker
from boundary_operator import naming
from boundary_operator.conditions import Condition, conditions_status
from boundary_operator.manifest import Manifest, rfc3339
from boundary_operator.workers.reloading import reported_revision

CONNECTED_WITHIN = datetime.timedelta(seconds=30)
WARNING_WHEN_TRUE = frozenset({"PlainTextToken"})
"""Conditions that report a problem by being True."""


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class ReplicaStatus:
    ordinal: int
    pod: str
    pod_phase: str = ""
    worker_id: str = ""
    worker_name: str = ""
    last_status_time: str = ""
    release_version: str = ""
    upstream_connection_state: str = "UNKNOWN"
    config_revision: str = ""
    """The configuration revision the worker reports (its config_revision tag)."""
    draining: bool = False

    def to_status(self) -> dict[str, Any]:
        return {
            "ordinal": self.ordinal,
            "pod": self.pod,
            "podPhase": self.pod_phase,
            "workerId": self.worker_id,
            "workerName": self.worker_name,
            "lastStatusTime": self.last_status_time,
            "releaseVersion": self.release_version,
            "upstreamConnectionState": self.upstream_connection_state,
            "configRevision": self.config_revision,
            "draining": self.draining,
        }


@dataclass
class SyncResult:
    conditions: list[Condition] = field(default_factory=list)
    replicas: list[ReplicaStatus] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    """Ask to be called again this soon (something is still converging)."""

    @property
    def connected(self) -> int:
        return sum(r.upstream_connection_state == "READY" for r in self.replicas)


def draining_marked(worker: Worker) -> bool:
    """Whether the worker carries the operator's draining mark (workers/draining.py)."""
    return naming.DRAINING_MARK in worker.api_tags.get(naming.DRAINING_TAG, [])


def connected(worker: Worker | None, now: datetime.datetime) -> bool:
    return bool(
        worker and worker.last_status_time and now - worker.last_status_time < CONNECTED_WITHIN
    )


def replica_status(
    name: str, replicas: int, owned: dict[int, Worker], pods: dict[str, Manifest]
) -> list[ReplicaStatus]:
    now = datetime.datetime.now(datetime.UTC)
    out = []
    for ordinal in range(replicas):
        pod = naming.pod_name(name, ordinal)
        worker = owned.get(ordinal)
        status = ReplicaStatus(ordinal=ordinal, pod=pod)
        status.pod_phase = str(((pods.get(pod) or {}).get("status") or {}).get("phase", ""))
        if worker:
            status.worker_id, status.worker_name = worker.id, worker.name
            status.release_version = worker.release_version
            if worker.last_status_time:
                status.last_status_time = rfc3339(worker.last_status_time)
            status.upstream_connection_state = (
                "READY" if connected(worker, now) else "NOT_CONNECTED"
            )
            status.config_revision = reported_revision(worker)
            status.draining = draining_marked(worker)
        out.append(status)
    return out


def summarise(automatic: bool, result: SyncResult) -> None:
    """The Registered and Ready conditions from the replicas' state."""
    replicas = len(result.replicas)
    if automatic:
        registered = sum(bool(r.worker_id) for r in result.replicas)
        result.conditions.append(
            Condition(
                "Registered",
                registered == replicas,
                "AllRegistered" if registered == replicas else "Registering",
                f"{registered}/{replicas} replicas have a Boundary worker",
            )
        )
        ready = result.connected == replicas
        result.conditions.append(
            Condition(
                "Ready",
                ready,
                "AllConnected" if ready else "WaitingForWorkers",
                f"{result.connected}/{replicas} workers report to the controller",
            )
        )
        if not ready:
            result.retry_after = min(result.retry_after or 10, 10)
        return
    result.conditions.append(
        Condition(
            "Registered",
            True,
            "ManualToken",
            "workers register themselves with the given activation tokens",
        )
    )
    running = sum(r.pod_phase == "Running" for r in result.replicas)
    result.conditions.append(
        Condition(
            "Ready",
            running == replicas,
            "PodsRunning" if running == replicas else "WaitingForPods",
            f"{running}/{replicas} pods running",
        )
    )


def _replicas(previous: list[dict[str, Any]], current: list[ReplicaStatus]) -> list[dict[str, Any]]:
    """A replica's lastStatusTime moves every few seconds while it is connected; it is written
    only with another change of that replica, so a quiet resource's status stays as it is."""
    before = {r.get("ordinal"): r for r in previous}
    out = []
    for replica in current:
        entry = replica.to_status()
        old = before.get(replica.ordinal)
        steady = old is not None and {**old, "lastStatusTime": ""} == {
            **entry,
            "lastStatusTime": "",
        }
        out.append(old if steady and old is not None else entry)
    return out


def _revision_events(previous: list[dict[str, Any]], current: list[ReplicaStatus]) -> list[Event]:
    """A replica's worker reporting another configuration revision: reloaded in place, or
    restarted with it."""
    before = {r.get("ordinal"): str(r.get("configRevision") or "") for r in previous}
    events = []
    for replica in current:
        old = before.get(replica.ordinal, "")
        if old and replica.config_revision and replica.config_revision != old:
            message = (
                f"the worker of {replica.pod} runs configuration revision "
                f"{replica.config_revision} (was {old})"
            )
            events.append(Event("Normal", "ConfigurationLoaded", message))
    return events


def status_update(body: Manifest, result: SyncResult) -> tuple[dict[str, Any] | None, list[Event]]:
    """The status to write (None when it would not change) and the Events of the conditions
    that changed."""
    current: dict[str, Any] = dict(body.get("status") or {})
    previous: list[dict[str, Any]] = list(current.get("conditions") or [])
    generation = int(body["metadata"].get("generation", 0))
    conditions = conditions_status(result.conditions, generation, previous)
    status: dict[str, Any] = {"conditions": conditions, "observedGeneration": generation}
    if result.replicas:
        status["replicas"] = _replicas(list(current.get("replicas") or []), result.replicas)
        status["connectedReplicas"] = result.connected
        status["readyReplicas"] = result.connected
    events = _revision_events(list(current.get("replicas") or []), result.replicas)
    for condition in conditions:
        old = next((c for c in previous if c.get("type") == condition["type"]), None)
        if old is None or old.get("status") != condition["status"]:
            healthy = (condition["status"] == "True") != (condition["type"] in WARNING_WHEN_TRUE)
            events.append(
                Event(
                    "Normal" if healthy else "Warning",
                    condition["reason"],
                    f"{condition['type']}={condition['status']}: {condition['message']}",
                )
            )
    unchanged = all(current.get(key) == value for key, value in status.items())
    return (None if unchanged else status), events
