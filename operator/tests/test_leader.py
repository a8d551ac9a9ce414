"""Leader election on the contract-checked in-memory apiserver, with short durations: one
candidate leads and the other stands by; a leader killed outright is replaced once its Lease
expires, one that stops cleanly at once; a leader that cannot renew gives up in time; and the
run loop operates only while leading, stands by again after a loss, and exits rather than lead
twice."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp
import pytest

from boundary_devstack.fakes import FakeKube
from boundary_operator.health import serve_health
from boundary_operator.kube import KubeError
from boundary_operator.leader import LeaseElector, LeaseTiming, lead_or_stand_by
from boundary_operator.settings import OperatorSettings

TIMING = LeaseTiming(duration=0.8)  # retry 0.2 s, renew deadline 0.5 s, step-down 0.3 s
NAMESPACE, NAME = "ops", "boundary-operator"


def candidate(kube: FakeKube, identity: str) -> LeaseElector:
    return LeaseElector(kube, NAMESPACE, NAME, identity, TIMING)


async def holder(kube: FakeKube) -> str:
    lease = await kube.get("Lease", NAMESPACE, NAME)
    assert lease is not None
    return str(lease["spec"].get("holderIdentity") or "")


class Unreachable(FakeKube):
    """The same apiserver, gone away for this client while `down`."""

    down = False

    async def get(self, kind: str, namespace: str | None, name: str) -> Any:
        if self.down:
            raise KubeError(0, "Unavailable", "cannot reach the apiserver", "GET", name)
        return await super().get(kind, namespace, name)


async def test_one_leads_the_other_stands_by_and_takes_over_when_the_leader_dies() -> None:
    kube = FakeKube()
    first, second = candidate(kube, "pod-a"), candidate(kube, "pod-b")
    await first.acquire()
    lease = await kube.get("Lease", NAMESPACE, NAME)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "pod-a"
    assert lease["spec"]["leaseDurationSeconds"] == 1
    assert lease["spec"]["renewTime"].endswith("Z")
    renewing = asyncio.create_task(first.hold())
    standing_by = asyncio.create_task(second.acquire())
    await asyncio.sleep(TIMING.duration * 2)
    assert not standing_by.done()
    assert await holder(kube) == "pod-a"

    # kill -9: the leader stops renewing and says nothing.
    renewing.cancel()
    killed = time.monotonic()
    await asyncio.wait_for(standing_by, timeout=5)
    took = time.monotonic() - killed
    # The Lease is written with whole seconds (1 s here); a standby looks at least once more.
    assert took <= 1 + TIMING.retry_period + 0.3, took
    lease = await kube.get("Lease", NAMESPACE, NAME)
    assert lease is not None
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("pod-b", 1)


async def test_a_clean_stop_releases_the_lease_for_an_immediate_takeover() -> None:
    kube = FakeKube()
    first, second = candidate(kube, "pod-a"), candidate(kube, "pod-b")
    await first.acquire()
    standing_by = asyncio.create_task(second.acquire())
    await asyncio.sleep(TIMING.retry_period * 2)
    await first.release()
    released = time.monotonic()
    await asyncio.wait_for(standing_by, timeout=5)
    assert time.monotonic() - released <= TIMING.retry_period + 0.1
    assert await holder(kube) == "pod-b"
    # Releasing a Lease held by another changes nothing.
    await first.release()
    assert await holder(kube) == "pod-b"


async def test_the_same_identity_takes_its_own_lease_back_at_once() -> None:
    """A container restarted in the same pod: the old process is gone, no need to wait."""
    kube = FakeKube()
    await candidate(kube, "pod-a").acquire()
    started = time.monotonic()
    await candidate(kube, "pod-a").acquire()
    assert time.monotonic() - started < 0.1


async def test_a_leader_that_cannot_renew_gives_up_before_a_standby_may_take_over() -> None:
    kube = Unreachable()
    leader = candidate(kube, "pod-a")
    await leader.acquire()
    renewing = asyncio.create_task(leader.hold())
    await asyncio.sleep(TIMING.retry_period * 2)
    assert not renewing.done()
    kube.down = True
    cut = time.monotonic()
    await asyncio.wait_for(renewing, timeout=5)
    gave_up = time.monotonic() - cut
    assert TIMING.renew_deadline - TIMING.retry_period <= gave_up <= TIMING.renew_deadline + 0.1


async def test_two_candidates_racing_for_a_new_lease_get_one_leader() -> None:
    kube = FakeKube()
    results = await asyncio.gather(
        *(candidate(kube, f"pod-{n}").try_acquire_or_renew() for n in range(5))
    )
    assert results.count(True) == 1
    assert await holder(kube) == f"pod-{results.index(True)}"


async def test_the_loop_operates_only_while_leading_and_stands_by_again_after_a_loss() -> None:
    kube = Unreachable()
    elector = candidate(kube, "pod-a")
    terms: list[str] = []
    stopping = asyncio.Event()

    async def operate(stop: asyncio.Event) -> None:
        terms.append("started")
        assert elector.leading
        await stop.wait()
        terms.append("stopped")

    loop = asyncio.create_task(lead_or_stand_by(elector, operate, stopping))
    await asyncio.sleep(TIMING.retry_period)
    assert terms == ["started"]
    kube.down = True  # the apiserver goes away: the lease is lost, operating stops
    await asyncio.sleep(TIMING.renew_deadline + TIMING.retry_period)
    assert terms == ["started", "stopped"]
    assert not elector.leading
    kube.down = False  # back: the same replica leads again
    await asyncio.sleep(TIMING.duration)
    assert terms == ["started", "stopped", "started"]
    stopping.set()
    await asyncio.sleep(TIMING.retry_period)
    assert not loop.done()  # while leading, a signal is kopf's to handle (it stops operate)


async def test_a_signal_while_standing_by_ends_the_loop_and_operate_ending_releases() -> None:
    kube = FakeKube()
    await candidate(kube, "pod-other").acquire()
    stopping = asyncio.Event()

    async def never(stop: asyncio.Event) -> None:
        raise AssertionError("a standby must not operate")

    loop = asyncio.create_task(lead_or_stand_by(candidate(kube, "pod-a"), never, stopping))
    await asyncio.sleep(TIMING.retry_period)
    stopping.set()
    await asyncio.wait_for(loop, timeout=1)

    # Leading, and kopf stops on SIGTERM by itself: the Lease is released on the way out.
    async def until_signal(stop: asyncio.Event) -> None:
        await asyncio.sleep(TIMING.retry_period)

    kube2 = FakeKube()
    await lead_or_stand_by(candidate(kube2, "pod-a"), until_signal, asyncio.Event())
    assert await holder(kube2) == ""


async def test_a_leader_that_does_not_stop_in_time_exits_rather_than_lead_twice() -> None:
    kube = Unreachable()
    exits: list[int] = []

    async def stubborn(stop: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(60)

    loop = asyncio.create_task(
        lead_or_stand_by(
            candidate(kube, "pod-a"), stubborn, asyncio.Event(), exit_process=exits.append
        )
    )
    await asyncio.sleep(TIMING.retry_period)
    kube.down = True
    await asyncio.wait_for(loop, timeout=TIMING.renew_deadline + TIMING.step_down + 1)
    assert exits == [70]


@pytest.mark.parametrize("value", ["", "ops/boundary-operator", "a.b/c-d"])
def test_lease_setting_accepts_namespace_slash_name(value: str) -> None:
    settings = OperatorSettings(BOUNDARY_OPERATOR_LEADER_ELECTION_LEASE=value)
    assert settings.leader_election_lease == value


@pytest.mark.parametrize("value", ["just-a-name", "Ops/x", "a/b/c", "/x"])
def test_lease_setting_refuses_anything_else_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match="BOUNDARY_OPERATOR_LEADER_ELECTION_LEASE"):
        OperatorSettings(BOUNDARY_OPERATOR_LEADER_ELECTION_LEASE=value)


async def test_the_liveness_endpoint_says_whether_the_replica_leads() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    role = ["standby"]
    runner = await serve_health(port, lambda: role[0])
    assert runner is not None
    try:
        async with aiohttp.ClientSession() as session:
            for expected in ("standby", "leader"):
                role[0] = expected
                async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    assert (answer.status, await answer.text()) == (200, f"ok: {expected}\n")
    finally:
        await runner.cleanup()
    assert await serve_health(0, lambda: "leader") is None


async def test_a_cancel_that_lands_as_a_renewal_completes_still_stops_the_renewals() -> None:
    """asyncio.wait_for on 3.11 drops a cancellation that comes in the same turn as its inner
    call's result. A renewal loop built on it kept renewing after a clean stop cancelled it,
    and left the test session's loop unable to close."""
    kube = FakeKube()
    elector = candidate(kube, "a")
    assert await elector.try_acquire_or_renew()
    renewing: asyncio.Task[None] | None = None
    renew = elector.try_acquire_or_renew

    async def renew_then_be_cancelled() -> bool:
        result = await renew()
        assert renewing is not None
        asyncio.get_running_loop().call_soon(renewing.cancel)  # due before the result
        return result

    elector.try_acquire_or_renew = renew_then_be_cancelled  # type: ignore[method-assign]
    renewing = asyncio.create_task(elector.hold())
    done, _ = await asyncio.wait({renewing}, timeout=3 * TIMING.retry_period + 1)
    assert renewing in done, "the renewals went on after the cancel"
    assert renewing.cancelled()
