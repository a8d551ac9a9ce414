"""What a BoundaryKubernetesAccess reconcile found, and the status it makes: conditions (each
with the generation it describes), the Boundary ids, alias, principals and token expiry, and the
Events worth posting. Pure: the handlers write the status only when it changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boundary_operator.conditions import Condition, conditions_status
from boundary_operator.manifest import Manifest
from boundary_operator.workers.status import Event


@dataclass
class AccessResult:
    conditions: list[Condition] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    """Status fields besides the conditions (camelCase, as the CRD has them)."""

    def problem(self, condition: str, reason: str, message: str) -> None:
        """A condition that is False for a reason the user must see (its Warning is posted
        when it first appears or changes, not on every reconcile; the check timer tries
        again)."""
        self.conditions.append(Condition(condition, False, reason, message))


def status_update(
    body: Manifest, result: AccessResult
) -> tuple[dict[str, Any] | None, list[Event]]:
    """The status to write (None when nothing would change) and the Events of the conditions
    that changed: a Normal one when a condition turns True, a Warning when one turns False or
    a False one changes its reason or message. Each problem is posted once, not per tick."""
    current: dict[str, Any] = dict(body.get("status") or {})
    previous: list[dict[str, Any]] = list(current.get("conditions") or [])
    generation = int(body["metadata"].get("generation", 0))
    conditions = conditions_status(result.conditions, generation, previous)
    status = {**result.fields, "conditions": conditions, "observedGeneration": generation}
    before = {p.get("type"): p for p in previous}
    events = []
    for c in conditions:
        old = before.get(c["type"]) or {}
        turned = old.get("status") != c["status"]
        moved = c["status"] == "False" and (old.get("reason"), old.get("message")) != (
            c["reason"],
            c["message"],
        )
        if turned or moved:
            kind = "Normal" if c["status"] == "True" else "Warning"
            events.append(Event(kind, c["reason"], f"{c['type']}={c['status']}: {c['message']}"))
    unchanged = all(current.get(key) == value for key, value in status.items())
    return (None if unchanged else status), events
