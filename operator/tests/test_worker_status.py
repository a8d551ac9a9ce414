"""The pure parts of the worker timer's compare-before-write: does the live object already hold
what we would apply, and would the status change."""

from __future__ import annotations

from typing import Any

import pytest

from boundary_operator.conditions import Condition
from boundary_operator.manifest import covers, rfc3339
from boundary_operator.workers.reconcile import APPLIED_ANNOTATION, stamped
from boundary_operator.workers.status import ReplicaStatus, SyncResult, status_update


@pytest.mark.parametrize(
    ("live", "desired", "held"),
    [
        ({"a": 1, "defaulted": 2}, {"a": 1}, True),  # the apiserver adds defaults
        ({"a": 1}, {"a": 2}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"l": [{"x": 1, "d": 0}]}, {"l": [{"x": 1}]}, True),  # defaults inside list items
        ({"l": [{"x": 1}, {"x": 2}]}, {"l": [{"x": 1}]}, False),  # lists are whole
        ({"n": 256}, {"n": 256}, True),
        ({"n": "256"}, {"n": 256}, False),
        ({}, {}, True),
    ],
)
def test_covers(live: Any, desired: Any, held: bool) -> None:
    assert covers(live, desired) is held


def test_the_applied_digest_changes_with_any_field_even_a_removed_one() -> None:
    full = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    less = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    live = stamped(full)
    assert covers(live, stamped(full))
    # The live object still holds every field of `less`; only the digest tells it changed.
    assert covers(live, less)
    assert not covers(live, stamped(less))
    assert stamped(full)["metadata"]["annotations"][APPLIED_ANNOTATION]


def body(status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"generation": 3}, "status": status or {}}


def result(last_seen: str, state: str = "READY") -> SyncResult:
    return SyncResult(
        conditions=[Condition("Ready", state == "READY", "AllConnected", "1/1")],
        replicas=[
            ReplicaStatus(
                ordinal=0,
                pod="edge-0",
                pod_phase="Running",
                worker_id="w_1",
                last_status_time=last_seen,
                upstream_connection_state=state,
            )
        ],
    )


def test_status_is_written_on_change_only() -> None:
    first, events = status_update(body(), result("2026-01-01T00:00:00Z"))
    assert first is not None
    assert first["observedGeneration"] == 3
    assert [e.reason for e in events] == ["AllConnected"]
    # The worker reported again: only its last status time moved, nothing to write.
    again, events = status_update(body(first), result("2026-01-01T00:00:09Z"))
    assert (again, events) == (None, [])
    # It lost its connection: written, with the new time, and an Event.
    lost, events = status_update(body(first), result("2026-01-01T00:00:40Z", "NOT_CONNECTED"))
    assert lost is not None
    assert lost["replicas"][0]["lastStatusTime"] == "2026-01-01T00:00:40Z"
    assert lost["conditions"][0]["status"] == "False"
    assert [e.type for e in events] == ["Warning"]


def test_conditions_not_evaluated_keep_their_last_value() -> None:
    kept = {"type": "PlainTextToken", "status": "True", "reason": "Discouraged"}
    written, _ = status_update(body({"conditions": [kept]}), result(rfc3339()))
    assert written is not None
    assert kept in written["conditions"]
