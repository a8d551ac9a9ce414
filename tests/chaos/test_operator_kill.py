"""kill -9 the operator at random moments while Services and workers sync, then restart it, round
after round. After every round, once the restarted operator has converged: no duplicate target
or alias, no orphan (nothing left for a deleted Service), every exposed Service published with
its current alias, every worker registered once, and the Boundary objects this operator does
not own untouched. Sizes: 300 Services, 3 workers, 20 rounds under `make test-chaos`.

With two replicas (leader election on a Lease), the kill -9 hits the leader while the standby
watches: the standby must take the Lease over within 15 s and resume, with the same checks,
10 rounds under `make test-chaos`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from chaos_profile import pick
from operator_scenario import Scenario, boundary_attempts, converge, start_scenario

from boundary_api import BoundaryClient
from boundary_devstack.chart import (
    operator_under_chart,
    release_full_name,
    replicas_under_chart,
    scenario_values,
)
from boundary_devstack.clients import CommandFailed, Kubectl
from boundary_devstack.stack import StackEnv

SERVICES = pick(300, 60)
WORKERS = pick(3, 1)
ROUNDS = pick(20, 3)
LEADER_ROUNDS = pick(10, 3)
CONVERGE_SECONDS = pick(180, 90)
TAKEOVER_SECONDS = 15.0


async def _kill_mid_sync(
    scenario: Scenario,
    boundary: BoundaryClient,
    untouched: dict[str, Any],
    kill: Callable[[], None],
) -> tuple[float, int]:
    """Kill once the operator has synced something and before it is done (at a random moment
    within that window), never before it started or after. Seconds waited, and what was left
    to sync."""
    started = time.monotonic()
    at_start = len(await scenario.problems(boundary, untouched))
    pending = at_start
    while pending >= at_start and time.monotonic() - started < 60:
        await asyncio.sleep(scenario.rng.uniform(0.05, 0.3))
        pending = len(await scenario.problems(boundary, untouched))
    kill()
    return time.monotonic() - started, len(await scenario.problems(boundary, untouched))


def _boundary_writes(metrics_port: int) -> int:
    return sum(n for (method, _), n in boundary_attempts(metrics_port).items() if method != "GET")


async def _kill_at_first_write(
    metrics_port: int, kill: Callable[[], None], pause: float, mutation: Callable[[], None] | None
) -> tuple[float, float]:
    """Apply `mutation` (in a thread) and kill the operator `pause` seconds after its next write
    to Boundary: mid-sync however fast a warm leader syncs (one polled on Boundary's listings
    was often done before the poll saw progress). Seconds waited, and the moment of the kill."""
    before = _boundary_writes(metrics_port)
    started = time.monotonic()
    applying = asyncio.ensure_future(asyncio.to_thread(mutation)) if mutation else None
    await _until(lambda: _boundary_writes(metrics_port) > before, timeout=60, interval=0.02)
    await asyncio.sleep(pause)
    kill()
    killed = time.monotonic()
    if applying is not None:
        await applying
    return killed - started, killed


def _finish(tmp_path: Path, report: list[dict[str, Any]], rounds: int) -> None:
    (tmp_path / "kill-rounds.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    mid_sync = sum(1 for r in report if r["unsynced_at_kill"])
    print(f"{rounds} rounds, {mid_sync} killed mid-sync, nothing lost or duplicated")
    # Every round's kill came with work still pending: otherwise it tested a restart, not a
    # kill in the middle of a sync.
    assert mid_sync == rounds, report


async def test_kill_9_mid_sync_loses_nothing(
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary: BoundaryClient,
    crds: None,
    tmp_path: Path,
) -> None:
    scenario, untouched = await start_scenario(
        stack_env, kubectl, boundary, "kill", services=SERVICES, workers=WORKERS
    )
    namespace, cluster = scenario.namespace, scenario.cluster

    report: list[dict[str, Any]] = []
    with operator_under_chart(
        stack_env, namespace, f"bk-{cluster}", tmp_path, **scenario_values(stack_env, cluster)
    ) as (operator, _):
        for round_number in range(ROUNDS):
            if round_number:
                scenario.mutate(kubectl, round_number)
                operator.start()
            killed_after, pending_at_kill = await _kill_mid_sync(
                scenario, boundary, untouched, operator.kill
            )
            operator.start()
            started = time.monotonic()
            problems = await converge(
                scenario, boundary, untouched, workers=WORKERS, timeout=CONVERGE_SECONDS
            )
            assert not problems, (round_number, problems[:20], operator.log_tail(40))
            report.append(
                {
                    "round": round_number,
                    "killed_after_s": round(killed_after, 2),
                    "unsynced_at_kill": pending_at_kill,
                    "converged_after_restart_s": round(time.monotonic() - started, 1),
                    "services": len(scenario.aliases),
                }
            )
            operator.kill()
    _finish(tmp_path, report, ROUNDS)
    await boundary.targets.delete(untouched["target"].id)
    kubectl("delete", "namespace", namespace, "--wait=false")


def _lease_holder(kubectl: Kubectl, namespace: str, lease: str) -> str:
    try:
        spec = kubectl.get_json("lease", lease, "-n", namespace).get("spec") or {}
    except CommandFailed:
        return ""
    return str(spec.get("holderIdentity") or "")


def _held_by(kubectl: Kubectl, namespace: str, lease: str, pod: str) -> bool:
    return _lease_holder(kubectl, namespace, lease) == pod


async def _until(predicate: Callable[[], object], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return False


async def test_kill_9_of_the_leader_hands_over_to_the_standby(
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary: BoundaryClient,
    crds: None,
    tmp_path: Path,
) -> None:
    scenario, untouched = await start_scenario(
        stack_env, kubectl, boundary, "lead", services=SERVICES, workers=WORKERS
    )
    namespace, cluster = scenario.namespace, scenario.cluster
    release = f"bk-{cluster}"
    lease = release_full_name(release)

    report: list[dict[str, Any]] = []
    with replicas_under_chart(
        stack_env, namespace, release, tmp_path, 2, **scenario_values(stack_env, cluster)
    ) as replicas:
        pods = {f"{lease}-{n}": replica for n, replica in enumerate(replicas)}

        def holder() -> str:
            return _lease_holder(kubectl, namespace, lease)

        for round_number in range(LEADER_ROUNDS):
            assert await _until(lambda: holder() in pods, timeout=30, interval=0.2), holder()
            leader_pod = holder()
            (standby_pod,) = set(pods) - {leader_pod}
            (leader, leader_chart), (standby, _) = pods[leader_pod], pods[standby_pod]
            assert leader.running()
            assert standby.running()
            # Round 0 kills during the first full sync; later ones while the leader applies a
            # mutation (the rest of which lands while nobody leads).
            killed_after, killed = await _kill_at_first_write(
                leader_chart.metrics_port,
                leader.kill,
                scenario.rng.uniform(0, 0.3),
                partial(scenario.mutate, kubectl, round_number) if round_number else None,
            )
            pending_at_kill = len(await scenario.problems(boundary, untouched))
            took_over = await _until(
                partial(_held_by, kubectl, namespace, lease, standby_pod),
                timeout=TAKEOVER_SECONDS + 15,
                interval=0.1,
            )
            takeover = time.monotonic() - killed
            assert took_over, (round_number, holder(), standby.log_tail(40))
            # Resumed: the new leader syncs what the old one left (some of it at least).
            left = pending_at_kill
            while left >= pending_at_kill and time.monotonic() - killed < 60:
                left = len(await scenario.problems(boundary, untouched))
                await asyncio.sleep(0.1)
            resumed = time.monotonic() - killed
            # The killed pod's container is restarted by the kubelet: it stands by.
            leader.start()
            problems = await converge(
                scenario, boundary, untouched, workers=WORKERS, timeout=CONVERGE_SECONDS
            )
            assert not problems, (round_number, problems[:20], standby.log_tail(40))
            report.append(
                {
                    "round": round_number,
                    "killed": leader_pod,
                    "killed_after_s": round(killed_after, 2),
                    "unsynced_at_kill": pending_at_kill,
                    "takeover_s": round(takeover, 2),
                    "first_sync_after_kill_s": round(resumed, 2),
                    "converged_after_kill_s": round(time.monotonic() - killed, 1),
                    "services": len(scenario.aliases),
                }
            )
            assert takeover < TAKEOVER_SECONDS, report[-1]
            assert holder() == standby_pod, "the restarted pod took the Lease back"
    _finish(tmp_path, report, LEADER_ROUNDS)
    takeovers = sorted(r["takeover_s"] for r in report)
    print(f"takeover: min {takeovers[0]} s, max {takeovers[-1]} s over {len(takeovers)} kills")
    await boundary.targets.delete(untouched["target"].id)
    kubectl("delete", "namespace", namespace, "--wait=false")
