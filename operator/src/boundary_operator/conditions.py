"""Status conditions in the Kubernetes style, each stamped with the generation it describes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from boundary_operator.manifest import rfc3339


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str

    def to_status(self, generation: int, previous: list[dict[str, Any]]) -> dict[str, Any]:
        """Keep lastTransitionTime when the status did not change."""
        status = "True" if self.status else "False"
        old = next((c for c in previous if c.get("type") == self.type), None)
        kept = old and old.get("status") == status
        since = old.get("lastTransitionTime") if old and kept else rfc3339()
        return {
            "type": self.type,
            "status": status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": generation,
            "lastTransitionTime": since,
        }


def merge_conditions(
    conditions: list[Condition], generation: int, previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    return [c.to_status(generation, previous) for c in conditions]


def conditions_status(
    conditions: list[Condition], generation: int, previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The status conditions after a run: those it evaluated, stamped with the generation, and
    the ones it did not evaluate as they were."""
    merged = merge_conditions(conditions, generation, previous)
    evaluated = {c["type"] for c in merged}
    return merged + [c for c in previous if c.get("type") not in evaluated]
