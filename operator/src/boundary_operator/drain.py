"""`boundary-operator drain`: delete every BoundaryPKIWorker and BoundaryKubernetesAccess the
operator watches and wait until the running operator has torn each one down (pods stopped,
workers deregistered, access pieces removed on both sides, finalizer removed). The chart's
pre-delete hook runs it, so `helm uninstall` leaves no finalizer behind without an operator to
complete it."""

from __future__ import annotations

import asyncio
import time

from boundary_operator.kube import KubePort

KINDS = ("BoundaryPKIWorker", "BoundaryKubernetesAccess")


async def _present(kube: KubePort, namespaces: list[str]) -> list[str]:
    """`Kind namespace/name` of each resource still there."""
    found = []
    scopes: list[str | None] = [*namespaces] if namespaces else [None]
    for kind in KINDS:
        for namespace in scopes:
            for item in await kube.list(kind, namespace):
                meta = item["metadata"]
                found.append(f"{kind} {meta['namespace']}/{meta['name']}")
    return found


async def drain(
    kube: KubePort, namespaces: list[str], *, timeout: float, poll: float = 2.0
) -> list[str]:
    """Delete the BoundaryPKIWorkers and BoundaryKubernetesAccesses of `namespaces` (every
    namespace when empty); return those still present after `timeout` seconds (empty:
    drained)."""
    for qualified in await _present(kube, namespaces):
        kind, _, where = qualified.partition(" ")
        namespace, name = where.split("/", 1)
        await kube.delete(kind, namespace, name)
    deadline = time.monotonic() + timeout
    while True:
        remaining = await _present(kube, namespaces)
        if not remaining or time.monotonic() >= deadline:
            return remaining
        await asyncio.sleep(poll)
