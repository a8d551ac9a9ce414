"""Names and ownership markers of what the operator creates, in Kubernetes and in Boundary."""

from __future__ import annotations

import re

GROUP = "workers.boundaryproject.io"
MANAGED_BY = "boundary-operator"
OWNER_MARKER = "boundary-k8s"
"""Prefix of the description of every Boundary object the operator creates."""

DRAINING_TAG, DRAINING_MARK = "draining", "true"
"""API tag the operator adds to one of its Boundary workers while that worker's pod is stopping;
the egress filters the operator writes leave such workers out."""
CONFIG_REVISION_TAG = "config_revision"
"""Config tag carrying a digest of the reloadable configuration (tags and upstreams): the worker
record shows which configuration the running worker has loaded."""
RESERVED_TAGS = (DRAINING_TAG, CONFIG_REVISION_TAG)

_BAD = re.compile(r"[^a-z0-9-]+")


def boundary_worker_name(cluster: str, namespace: str, name: str, ordinal: int) -> str:
    """Lowercase, unique across the clusters sharing one controller."""
    return _BAD.sub("-", f"{cluster}-{namespace}-{name}-{ordinal}".lower())


def owner_marker(**fields: str | int) -> str:
    """The description that marks a Boundary object as ours: the marker, then key=value pairs
    (values hold no spaces: they are Kubernetes names, uids and numbers)."""
    return " ".join([OWNER_MARKER, *(f"{key}={value}" for key, value in fields.items())])


def parse_owner_marker(description: str, *required: str) -> dict[str, str] | None:
    """The fields of a description `owner_marker` wrote, or None when it is not ours or lacks
    one of `required`."""
    if not description.startswith(OWNER_MARKER + " "):
        return None
    fields = dict(part.split("=", 1) for part in description.split()[1:] if "=" in part)
    return fields if set(required) <= fields.keys() else None


def worker_selector_labels(name: str) -> dict[str, str]:
    """The labels that select a BoundaryPKIWorker's pods. Never changes with image or version:
    a StatefulSet's selector is immutable."""
    return {
        "app.kubernetes.io/name": WORKER_POD_LABELS["app.kubernetes.io/name"],
        "app.kubernetes.io/instance": name,
    }


WORKER_POD_LABELS = {
    "app.kubernetes.io/managed-by": MANAGED_BY,
    "app.kubernetes.io/name": "boundary-worker",
}
"""Labels every worker pod the operator makes carries: its pod watch asks for those only."""


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def pod_name(name: str, ordinal: int) -> str:
    return f"{name}-{ordinal}"


def config_map_name(name: str) -> str:
    return f"{name}-config"


def token_secret_name(name: str) -> str:
    return f"{name}-activation-tokens"


def headless_service_name(name: str) -> str:
    return f"{name}-workers"


def proxy_service_name(name: str) -> str:
    return f"{name}-proxy"


def disruption_budget_name(name: str) -> str:
    return name
