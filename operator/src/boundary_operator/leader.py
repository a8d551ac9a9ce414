"""Leader election on a coordination.k8s.io Lease: of the replicas that share one, exactly one
operates; the others stand by and take over when it stops renewing.

Why not kopf's peering: it is not leader election. It pauses an operator only while a peer of
higher priority is alive, so replicas of one Deployment (equal priorities) would all run, and
it needs CRDs of its own. Here a standby does not run kopf at all: no watch, no handler, no
resync task, nothing that could write. `main` starts kopf when the Lease is won and stops it
when the Lease is lost.

The algorithm is client-go's (tools/leaderelection), so Kubernetes users read the Lease as they
read any controller's: `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime`,
`leaseTransitions`. Every write carries the resourceVersion read, so of two candidates only one
wins. A candidate judges a Lease expired by its own clock: `leaseDurationSeconds` after it last
saw the record change, never by comparing `renewTime` with its clock (clocks differ between
nodes). The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it gives
up, which leaves it `duration - renew_deadline` to stop before any standby may take over."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from boundary_operator.kube import KubeError, KubePort
from boundary_operator.manifest import Manifest
from boundary_operator.metrics import LEADER

log = logging.getLogger("boundary_operator.leader")

MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
"""A Lease's MicroTime, as the apiserver writes and parses it."""


@dataclass(frozen=True)
class LeaseTiming:
    """Derived from the Lease duration: with the default 8 s, a standby takes over at most
    10 s (duration plus one retry) after the leader's last renewal."""

    duration: float = 8.0

    @property
    def renew_deadline(self) -> float:
        """How long the leader keeps trying to renew before it gives the Lease up."""
        return self.duration * 5 / 8

    @property
    def retry_period(self) -> float:
        """How often the leader renews and a standby looks."""
        return self.duration / 4

    @property
    def step_down(self) -> float:
        """How long a leader that gave up has to stop before a standby may take over."""
        return self.duration - self.renew_deadline


def _micro_time(moment: datetime.datetime | None = None) -> str:
    return (moment or datetime.datetime.now(datetime.UTC)).strftime(MICRO_TIME)


class LeaseElector:
    """One candidate for the Lease `namespace/name`, as `identity` (unique per process that may
    run at the same time: the pod's name)."""

    def __init__(
        self,
        kube: KubePort,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timing = timing
        self._clock = clock
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._holder = ""
        self._said = ""
        self.leading = False
        """Whether this candidate operates now (set by `lead_or_stand_by`)."""

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def holder(self) -> str:
        """Who held the Lease when it was last read ("" when nobody)."""
        return self._holder

    async def acquire(self) -> None:
        """Stand by until this candidate holds the Lease."""
        while True:
            try:
                if await self.try_acquire_or_renew():
                    self._said = ""
                    return
                self._say(f"standing by: the lease {self.lease} is held by {self._holder}")
            except KubeError as exc:
                self._say(f"cannot read or take the lease {self.lease}: {exc}", logging.WARNING)
            await asyncio.sleep(self._until_next_look())

    async def hold(self) -> None:
        """Renew the Lease every retry period; return once it is lost: taken by another, or not
        renewed for the renew deadline."""
        renewed = self._clock()
        while True:
            await asyncio.sleep(self.timing.retry_period)
            left = self.timing.renew_deadline - (self._clock() - renewed)
            try:
                # asyncio.timeout, not wait_for: on 3.11, wait_for drops a cancellation that
                # comes in the same turn as the renewal's result, and the loop renewed on.
                async with asyncio.timeout(max(left, 0.1)):
                    held = await self.try_acquire_or_renew()
                if held:
                    renewed = self._clock()
                    continue
                log.warning("lost the lease %s: %s holds it now", self.lease, self._holder)
                return
            except (KubeError, TimeoutError) as exc:
                failure = str(exc) or "no answer in time"
            if self._clock() - renewed >= self.timing.renew_deadline:
                log.warning(
                    "lost the lease %s: not renewed for %.0f s (%s)",
                    self.lease,
                    self.timing.renew_deadline,
                    failure,
                )
                return
            log.info("could not renew the lease %s (%s); trying again", self.lease, failure)

    async def release(self) -> None:
        """Give the Lease up at a clean stop, so a standby takes over at once instead of after
        the duration. Best effort: an apiserver that is away lets it expire instead."""
        try:
            lease = await self.kube.get("Lease", self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            await self.kube.patch_merge(
                "Lease",
                self.namespace,
                self.name,
                {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": {"holderIdentity": None, "leaseDurationSeconds": 1},
                },
            )
            log.info("released the lease %s", self.lease)
        except KubeError as exc:
            log.warning("could not release the lease %s (%s); it expires instead", self.lease, exc)

    async def try_acquire_or_renew(self) -> bool:
        """One look at the Lease: take it (free, expired, or already ours) and say True, or
        say False when another candidate holds it."""
        now = _micro_time()
        lease = await self.kube.get("Lease", self.namespace, self.name)
        if lease is None:
            try:
                await self.kube.create(self._lease_manifest(now))
            except KubeError as exc:
                if exc.status == 409:  # another candidate created it first
                    return False
                raise
            self._holder = self.identity
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        self._observe(lease)
        self._holder = holder
        if holder and holder != self.identity and self._expires_in(spec) > 0:
            return False
        changes: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._duration_seconds,
            "renewTime": now,
        }
        if holder != self.identity:
            changes["acquireTime"] = now
            changes["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        try:
            await self.kube.patch_merge(
                "Lease",
                self.namespace,
                self.name,
                {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": changes,
                },
            )
        except KubeError as exc:
            if exc.status == 409:  # changed since we read it: someone else renewed or took it
                return False
            raise
        self._holder = self.identity
        return True

    @property
    def _duration_seconds(self) -> int:
        return max(1, round(self.timing.duration))

    def _lease_manifest(self, now: str) -> Manifest:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._duration_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }

    def _observe(self, lease: Manifest) -> None:
        spec = lease.get("spec") or {}
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            lease["metadata"].get("resourceVersion"),
        )
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()

    def _expires_in(self, spec: dict[str, Any]) -> float:
        duration = float(spec.get("leaseDurationSeconds") or self.timing.duration)
        return self._observed_at + duration - self._clock()

    def _until_next_look(self) -> float:
        """A retry period, or less when the Lease we saw expires sooner: a standby looks again
        right when it may take over."""
        if self._observed is None or not self._holder:
            return self.timing.retry_period
        spec = {"leaseDurationSeconds": self._observed[2]}
        return min(self.timing.retry_period, max(0.05, self._expires_in(spec) + 0.05))

    def _say(self, message: str, level: int = logging.INFO) -> None:
        """Log what a standby sees when it changes, not at every look."""
        if message != self._said:
            self._said = message
            log.log(level, message)


Operate = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""Operates until the event it is given is set (kopf, with it as the stop flag)."""


async def _hold(elector: LeaseElector, lost: asyncio.Event) -> None:
    try:
        await elector.hold()
    finally:
        lost.set()


async def lead_or_stand_by(
    elector: LeaseElector,
    operate: Operate,
    stopping: asyncio.Event,
    on_standby: Callable[[], None] = lambda: None,
    exit_process: Callable[[int], object] = os._exit,
) -> None:
    """Stand by until the Lease is won, operate while it is held, and stand by again when it is
    lost; until `stopping` is set while standing by, or `operate` ends by itself while leading
    (kopf stops on SIGTERM), when the Lease is released for a standby to take at once.

    `on_standby` runs before each wait (main puts its signal handlers back: kopf replaced them).
    A leader that lost the Lease and does not stop within the step-down time exits the process
    (`exit_process`): a restart is better than two leaders."""
    while not stopping.is_set():
        on_standby()
        won = asyncio.ensure_future(elector.acquire())
        stop = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({won, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if stopping.is_set():
            won.cancel()
            if won.done() and not won.cancelled() and won.exception() is None:
                await elector.release()  # won just as the signal came
            return
        log.info("leading: holding the lease %s as %s", elector.lease, elector.identity)
        elector.leading = True
        LEADER.set(1)
        lost = asyncio.Event()
        holding = asyncio.create_task(_hold(elector, lost), name="lease renewal")
        operating = asyncio.create_task(operate(lost), name="operator")
        try:
            await asyncio.wait({holding, operating}, return_when=asyncio.FIRST_COMPLETED)
            if not holding.done():  # kopf ended by itself, the Lease still ours
                holding.cancel()
                # No renewal may still be on its way when the Lease is released. wait(), not
                # await: that would also swallow a cancellation of this task.
                await asyncio.wait({holding})
                await elector.release()
                operating.result()  # a failure of kopf's own ends the process, as without election
                return
            try:
                async with asyncio.timeout(elector.timing.step_down):
                    await asyncio.shield(operating)
            except TimeoutError:
                log.error(
                    "lost the lease %s and still operating after %.0f s: exiting, so that no two "
                    "replicas lead",
                    elector.lease,
                    elector.timing.step_down,
                )
                exit_process(70)
                return
            log.info("stopped operating; standing by for the lease %s", elector.lease)
        finally:
            elector.leading = False
            LEADER.set(0)
