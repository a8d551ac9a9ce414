"""The operator through real outages of what it depends on, on the session's own stack:

- the Boundary controller frozen (SIGSTOP: it accepts connections and answers nothing, the
  harder case for a client) for 60 s while work is pending: the operator does not crash, says
  so in conditions and Events, keeps its call rate bounded (counted on its /metrics), and
  converges once the controller is back;
- kube-apiserver stopped and started again: the operator's watches resume, changes made right
  after the restart are applied, and drift made in Boundary meanwhile is repaired."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chaos_profile import pick
from operator_scenario import (
    Scenario,
    boundary_attempts,
    converge,
    service,
    start_scenario,
    worker,
)

from boundary_api import BoundaryClient
from boundary_devstack.chart import operator_under_chart, scenario_values
from boundary_devstack.clients import CommandFailed, Kubectl
from boundary_devstack.stack import LocalStack, StackEnv, wait_for

SERVICES = pick(100, 20)
OUTAGE_SECONDS = pick(60, 30)
CONVERGE_SECONDS = 120


def _attempts(metrics_port: int) -> Counter[str]:
    """Boundary HTTP attempts so far, by status code ("0": no answer)."""
    counts: Counter[str] = Counter()
    for (_, code), n in boundary_attempts(metrics_port).items():
        counts[code] += n
    return counts


async def _start(
    stack_env: StackEnv, kubectl: Kubectl, boundary: BoundaryClient, name: str
) -> tuple[Scenario, dict[str, Any]]:
    return await start_scenario(stack_env, kubectl, boundary, name, services=SERVICES, workers=1)


def _pending_work(kubectl: Kubectl, scenario: Scenario, upstream: str, tag: str) -> None:
    """A new worker, new Services, and a deleted one: work that needs the controller."""
    ns = scenario.namespace
    items = [worker(ns, f"late-{tag}", upstream)]
    for j in range(5):
        name = f"{tag}-{j}"
        scenario.aliases[name] = scenario.default_alias(name)
        items.append(service(ns, name, None))
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": items})
    kubectl("delete", "service", "svc-0", "-n", ns, "--wait=false")
    del scenario.aliases["svc-0"]


def _warning_reasons(kubectl: Kubectl, namespace: str) -> set[str]:
    events = kubectl.get_json("events", "-n", namespace)["items"]
    return {e["reason"] for e in events if e["type"] == "Warning"}


async def test_controller_frozen_for_a_minute(
    local_stack: LocalStack,
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary: BoundaryClient,
    crds: None,
    tmp_path: Path,
) -> None:
    scenario, untouched = await _start(stack_env, kubectl, boundary, "outage")
    upstream = stack_env.values["BOUNDARY_CLUSTER_ADDR"]
    controller = local_stack.component("boundary")
    assert controller.pid is not None
    with operator_under_chart(
        stack_env,
        scenario.namespace,
        f"bk-{scenario.cluster}",
        tmp_path,
        **scenario_values(stack_env, scenario.cluster),
    ) as (operator, chart_operator):
        problems = await converge(
            scenario, boundary, untouched, workers=1, timeout=CONVERGE_SECONDS
        )
        assert not problems, problems[:10]
        before = _attempts(chart_operator.metrics_port)
        os.killpg(controller.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            _pending_work(kubectl, scenario, upstream, "during")

            def reported() -> bool:
                late = kubectl.get_json("bpw", "late-during", "-n", scenario.namespace)
                conditions = {
                    c["type"]: c["status"]
                    for c in (late.get("status") or {}).get("conditions") or []
                }
                reasons = _warning_reasons(kubectl, scenario.namespace)
                return conditions.get("Registered") == "False" and "SyncFailed" in reasons

            left = OUTAGE_SECONDS - (time.monotonic() - frozen_at)
            reported_in_time = wait_for(reported, timeout=left, interval=2)
            reported_after = time.monotonic() - frozen_at
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - frozen_at)))
            assert operator.running(), operator.log_tail(40)
            during = _attempts(chart_operator.metrics_port)
        finally:
            os.killpg(controller.pid, signal.SIGCONT)
        outage = time.monotonic() - frozen_at
        calls = sum(during.values()) - sum(before.values())
        assert reported_in_time, "no Registered=False condition and SyncFailed Event"
        # Bounded: backoff and timeouts, not a tight loop (well under one call a second).
        assert calls / outage < 1.0, (calls, outage, during)
        problems = await converge(
            scenario, boundary, untouched, workers=2, timeout=CONVERGE_SECONDS
        )
        assert not problems, (problems[:10], operator.log_tail(40))
        assert operator.running()
    print(
        f"controller frozen {outage:.0f} s: {calls} Boundary attempts meanwhile "
        f"({calls / outage:.2f}/s); condition and Event reported after {reported_after:.0f} s; "
        "converged after"
    )
    await boundary.targets.delete(untouched["target"].id)
    kubectl("delete", "namespace", scenario.namespace, "--wait=false")


def _apiserver_ready(kubectl: Kubectl) -> bool:
    try:
        return kubectl("get", "--raw", "/readyz", timeout=5).strip() == "ok"
    except CommandFailed:
        return False


async def test_apiserver_restart(
    local_stack: LocalStack,
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary: BoundaryClient,
    crds: None,
    tmp_path: Path,
) -> None:
    scenario, untouched = await _start(stack_env, kubectl, boundary, "apirestart")
    upstream = stack_env.values["BOUNDARY_CLUSTER_ADDR"]
    apiserver = local_stack.component("kube-apiserver")
    with operator_under_chart(
        stack_env,
        scenario.namespace,
        f"bk-{scenario.cluster}",
        tmp_path,
        **scenario_values(stack_env, scenario.cluster),
    ) as (operator, _):
        problems = await converge(
            scenario, boundary, untouched, workers=1, timeout=CONVERGE_SECONDS
        )
        assert not problems, problems[:10]
        apiserver.stop()
        # Drift while Kubernetes is away: one of the operator's targets deleted by hand.
        victim = next(
            t
            for t in (await boundary.targets.list(scenario.project)).items
            if t.name == f"{scenario.cluster}/{scenario.namespace}/svc-1/http"
        )
        await boundary.targets.delete(victim.id)
        await asyncio.sleep(pick(20, 5))
        apiserver.start()
        assert wait_for(lambda: _apiserver_ready(kubectl), timeout=60), apiserver.log_tail()
        _pending_work(kubectl, scenario, upstream, "after")
        problems = await converge(
            scenario, boundary, untouched, workers=2, timeout=CONVERGE_SECONDS
        )
        assert not problems, (problems[:10], operator.log_tail(40))
        assert operator.running(), operator.log_tail(40)
    await boundary.targets.delete(untouched["target"].id)
    kubectl("delete", "namespace", scenario.namespace, "--wait=false")
