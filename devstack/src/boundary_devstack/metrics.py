"""The operator's Prometheus metrics, read as a scraper would, for tests that count its writes."""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass

_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Writes:
    boundary: int
    """Write attempts to the controller (retries included)."""
    kube: int
    """Write requests of the operator's own client to the apiserver (kopf's not included)."""


def writes(port: int, host: str = "127.0.0.1") -> Writes:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    totals = {
        "boundary_operator_boundary_requests_total": 0.0,
        "boundary_operator_kube_requests_total": 0.0,
    }
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match.group(1) not in totals:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if labels.get("method") in WRITE_METHODS:
            totals[match.group(1)] += float(match.group(3))
    return Writes(
        boundary=int(totals["boundary_operator_boundary_requests_total"]),
        kube=int(totals["boundary_operator_kube_requests_total"]),
    )
