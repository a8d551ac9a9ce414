"""kill -9 the operator at random moments while Services and workers sync, then restart it, round
after round. After every round, once the restarted operator has converged: no duplicate target
or alias, no orphan (nothing left for a deleted Service), every exposed Service published with
its current alias, every worker registered once, and the Boundary objects this operator does
not own untouched. Sizes: 300 Services, 3 workers, 20 rounds under `make test-chaos`."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from chaos_profile import pick
from operator_scenario import Scenario, converge, create_unowned, service, worker

from boundary_api import BoundaryClient
from boundary_devstack.chart import operator_under_chart, scenario_values
from boundary_devstack.clients import Kubectl
from boundary_devstack.stack import StackEnv

SERVICES = pick(300, 60)
WORKERS = pick(3, 1)
ROUNDS = pick(20, 3)
CONVERGE_SECONDS = pick(180, 90)


async def test_kill_9_mid_sync_loses_nothing(
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary: BoundaryClient,
    crds: None,
    tmp_path: Path,
) -> None:
    namespace = f"kill-{uuid.uuid4().hex[:6]}"
    cluster = f"kl{uuid.uuid4().hex[:6]}"
    project = stack_env.values["BOUNDARY_PROJECT_ID"]
    scenario = Scenario(namespace, cluster, project)
    kubectl("create", "namespace", namespace)
    untouched = await create_unowned(boundary, project, namespace, cluster)
    upstream = stack_env.values["BOUNDARY_CLUSTER_ADDR"]
    items = [worker(namespace, f"w{i}", upstream) for i in range(WORKERS)]
    for i in range(SERVICES):
        scenario.aliases[f"svc-{i}"] = scenario.default_alias(f"svc-{i}")
        items.append(service(namespace, f"svc-{i}", None))
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": items})

    report: list[dict[str, Any]] = []
    with operator_under_chart(
        stack_env, namespace, f"bk-{cluster}", tmp_path, **scenario_values(stack_env, cluster)
    ) as (operator, _):
        for round_number in range(ROUNDS):
            if round_number:
                scenario.mutate(kubectl, round_number)
                operator.start()
            # Killed mid-sync: once the operator has synced something and before it is done
            # (at a random moment within that window), never before it started or after.
            started_round = time.monotonic()
            at_start = len(await scenario.problems(boundary, untouched))
            pending = at_start
            while pending >= at_start and time.monotonic() - started_round < 60:
                await asyncio.sleep(scenario.rng.uniform(0.05, 0.3))
                pending = len(await scenario.problems(boundary, untouched))
            killed_after = time.monotonic() - started_round
            operator.kill()
            pending_at_kill = len(await scenario.problems(boundary, untouched))
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
    (tmp_path / "kill-rounds.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    mid_sync = sum(1 for r in report if r["unsynced_at_kill"])
    print(f"{ROUNDS} rounds, {mid_sync} killed mid-sync, nothing lost or duplicated")
    # Every round's kill came with work still pending: otherwise it tested a restart, not a
    # kill in the middle of a sync.
    assert mid_sync == ROUNDS, report
    await boundary.targets.delete(untouched["target"].id)
    kubectl("delete", "namespace", namespace, "--wait=false")
