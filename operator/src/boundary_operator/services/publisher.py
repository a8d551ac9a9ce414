"""Publishes Kubernetes Services through the sync engine: reads what a Service refers to,
validates its annotations before any API call, reports back on the Service (Events and the
targets annotation), and runs the periodic full resync that repairs drift and removes orphans."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from boundary_operator.kube import KubePort
from boundary_operator.manifest import Manifest
from boundary_operator.services.desired import (
    CREDENTIALS_SECRET,
    TARGETS_STATUS,
    WORKER,
    SyncSettings,
    desired_targets,
    is_exposed,
)
from boundary_operator.services.sync import CONCURRENCY, ServiceSync

log = logging.getLogger("boundary_operator.services")


@dataclass
class ResyncReport:
    services: int = 0
    removed: int = 0
    problems: int = 0
    writes: int = 0
    reads: int = 0


@dataclass
class ServicePublisher:
    kube: KubePort
    sync: ServiceSync
    settings: SyncSettings
    namespaces: list[str] = field(default_factory=list)
    _warned: dict[tuple[str, str], str] = field(default_factory=dict)
    """The last Warning message by Service uid and reason."""
    # One sync at a time per Service: a watch event and a resync pass racing on the same Service
    # would both create its target, and the loser would report a conflict with itself.
    _locks: defaultdict[str, asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )

    async def publish(self, service: Manifest) -> bool:
        """Sync one Service; True when it is valid (or not exposed) and synced."""
        async with self._locks[service["metadata"]["uid"]]:
            return await self._publish(service)

    async def unpublish(self, uid: str, service: Manifest | None = None) -> bool:
        async with self._locks[uid]:
            return await self._unpublish(uid, service)

    async def _publish(self, service: Manifest) -> bool:
        meta = service["metadata"]
        uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]
        if not is_exposed(service) or meta.get("deletionTimestamp"):
            return await self._unpublish(uid, service)
        annotations = meta.get("annotations") or {}
        secrets: dict[str, Manifest] = {}
        if annotations.get(CREDENTIALS_SECRET):
            secret = await self.kube.get("Secret", namespace, annotations[CREDENTIALS_SECRET])
            if secret is not None:
                secrets[annotations[CREDENTIALS_SECRET]] = secret
        workers: set[str] = set()
        if annotations.get(WORKER):
            workers = {
                w["metadata"]["name"] for w in await self.kube.list("BoundaryPKIWorker", namespace)
            }
        desired = desired_targets(service, self.settings, secrets=secrets, worker_names=workers)
        if desired.problems:
            await self._warn(service, "InvalidAnnotations", desired.problems)
            return False
        outcome = await self.sync.sync_service(
            namespace, name, uid, desired.targets, desired.grants
        )
        await self._warn(service, "SyncConflict", outcome.problems)
        if outcome.changes and not outcome.problems:
            await self._post(service, "Normal", "Synced", "; ".join(outcome.changes))
        # Principals that do not exist are bad annotations too: the rest is synced meanwhile.
        await self._warn(service, "InvalidAnnotations", outcome.invalid)
        await self._annotate(service, outcome.targets)
        return not outcome.problems and not outcome.invalid

    async def _unpublish(self, uid: str, service: Manifest | None = None) -> bool:
        outcome = await self.sync.remove_service(uid)
        if (
            outcome.changes
            and service is not None
            and not service["metadata"].get("deletionTimestamp")
        ):
            await self._post(service, "Normal", "Unpublished", "; ".join(outcome.changes))
            await self._annotate(service, None)
        return True

    async def _warn(self, service: Manifest, reason: str, problems: list[str]) -> None:
        """One Warning per distinct set of problems, not one per resync; once they are gone,
        the same problems coming back are told again."""
        key = (service["metadata"]["uid"], reason)
        message = "; ".join(problems)
        if not problems:
            self._warned.pop(key, None)
        elif self._warned.get(key) != message:
            self._warned[key] = message
            await self._post(service, "Warning", reason, message)

    async def _post(self, service: Manifest, kind: str, reason: str, message: str) -> None:
        service = {**service, "kind": "Service", "apiVersion": "v1"}
        await self.kube.post_event(service, kind, reason, message)

    async def _annotate(self, service: Manifest, targets: dict[str, str] | None) -> None:
        meta = service["metadata"]
        value = json.dumps(targets, sort_keys=True) if targets else None
        if (meta.get("annotations") or {}).get(TARGETS_STATUS) == value:
            return
        await self.kube.patch_merge(
            "Service",
            meta["namespace"],
            meta["name"],
            {"metadata": {"annotations": {TARGETS_STATUS: value}}},
        )

    async def resync(self) -> ResyncReport:
        """Full pass: refresh the views by delta, publish every exposed Service, remove what
        belongs to Services that are gone (deleted while the operator was down, say)."""
        report = ResyncReport()
        writes, reads = self.sync.writes, self.sync.reads
        await self.sync.refresh()
        services: list[Manifest] = []
        for namespace in self.namespaces or [None]:  # type: ignore[list-item]
            services += await self.kube.list("Service", namespace)
        exposed = [s for s in services if is_exposed(s)]
        report.services = len(exposed)
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(service: Manifest) -> bool:
            async with limit:
                return await self.publish(service)

        results = await asyncio.gather(*(one(s) for s in exposed), return_exceptions=True)
        for service, result in zip(exposed, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "sync of %s/%s failed: %s",
                    service["metadata"]["namespace"],
                    service["metadata"]["name"],
                    result,
                )
                report.problems += 1
            elif not result:
                report.problems += 1
        live = {s["metadata"]["uid"] for s in exposed}
        watched = set(self.namespaces)
        for owner_uid in self.sync.owned_service_uids() - live:
            if watched and not self._owner_namespace(owner_uid) & watched:
                continue
            if await self._exposed_now(owner_uid):
                continue  # created after this pass listed Services: a watch event published it
            await self.unpublish(owner_uid)
            report.removed += 1
        report.writes, report.reads = self.sync.writes - writes, self.sync.reads - reads
        return report

    async def _exposed_now(self, uid: str) -> bool:
        owners = self.sync.owners(uid)
        if not owners:
            return False
        service = await self.kube.get("Service", owners[0].namespace, owners[0].service)
        return service is not None and service["metadata"]["uid"] == uid and is_exposed(service)

    def _owner_namespace(self, uid: str) -> set[str]:
        return {owner.namespace for owner in self.sync.owners(uid)}
