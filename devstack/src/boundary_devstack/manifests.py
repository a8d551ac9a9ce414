"""Manifests the tests make again and again."""

from __future__ import annotations

from typing import Any


def exposed_service(
    namespace: str,
    name: str,
    *,
    annotations: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    uid: str | None = None,
) -> dict[str, Any]:
    """A Service the operator publishes (boundaryproject.io/expose: "true"); one http port by
    default. `uid` stands in for the apiserver's, for the in-memory fake."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "annotations": {"boundaryproject.io/expose": "true", **(annotations or {})},
    }
    if uid is not None:
        metadata["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"ports": ports or [{"name": "http", "port": 80}], "selector": {"app": name}},
    }
