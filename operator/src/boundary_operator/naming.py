"""Names and ownership markers of what the operator creates, in Kubernetes and in Boundary."""

from __future__ import annotations

import re

GROUP = "workers.boundaryproject.io"
MANAGED_BY = "boundary-operator"
OWNER_MARKER = "boundary-k8s"
"""Prefix of the description of every Boundary object the operator creates."""

_BAD = re.compile(r"[^a-z0-9-]+")


def boundary_worker_name(cluster: str, namespace: str, name: str, ordinal: int) -> str:
    """Lowercase, unique across the clusters sharing one controller."""
    return _BAD.sub("-", f"{cluster}-{namespace}-{name}-{ordinal}".lower())


def worker_owner_description(
    cluster: str, namespace: str, name: str, uid: str, ordinal: int
) -> str:
    return (
        f"{OWNER_MARKER} cluster={cluster} namespace={namespace} worker={name} uid={uid} "
        f"ordinal={ordinal}"
    )


def parse_owner_description(description: str) -> dict[str, str] | None:
    """The ownership fields of a description we wrote, or None if not ours."""
    if not description.startswith(OWNER_MARKER + " "):
        return None
    fields = dict(part.split("=", 1) for part in description.split()[1:] if "=" in part)
    return fields if {"cluster", "namespace", "worker", "uid", "ordinal"} <= fields.keys() else None


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
