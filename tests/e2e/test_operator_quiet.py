"""Restarts and quiet times are normal and cost nothing, on the real stack under the chart's
ServiceAccount:
- an operator restarted over 50 synced Services, then forced to log in to the controller again,
  posts no SyncConflict Warning and writes nothing (its only controller calls that are not
  reads are its logins);
- a BoundaryPKIWorker whose worker runs and reports, left alone for 60 s, causes no write to the
  apiserver (the operator's own client, kopf's status patches, Events) nor to the controller."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boundary_devstack.chart import ChartOperator, operator_under_chart, scenario_values
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Kubectl
from boundary_devstack.manifests import exposed_service
from boundary_devstack.metrics import Writes, writes
from boundary_devstack.operator_process import pod_runner_process
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv, wait_for
from boundary_operator.kube import FIELD_MANAGER

SERVICES = 50
CLUSTER = f"qt{uuid.uuid4().hex[:6]}"
NAMESPACE = f"quiet-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def operator(
    crds: None, stack_env: StackEnv, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, ChartOperator]]:
    kubectl("create", "namespace", NAMESPACE)
    with operator_under_chart(
        stack_env,
        NAMESPACE,
        f"bk-{CLUSTER}",
        tmp_path_factory.mktemp("operator"),
        **scenario_values(stack_env, CLUSTER),
    ) as started:
        yield started
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def service(name: str) -> dict[str, Any]:
    return exposed_service(NAMESPACE, name)


def our_targets(cli: BoundaryCLI) -> list[dict[str, Any]]:
    items = cli("targets", "list", "-scope-id", "global", "-recursive")["items"] or []
    return [t for t in items if t.get("name", "").startswith(f"{CLUSTER}/{NAMESPACE}/")]


def events(kubectl: Kubectl) -> list[tuple[str, str, str, int]]:
    """The operator's Events: the node controller's and the kubelet's are not its writes."""
    items = kubectl.get_json("events", "-n", NAMESPACE)["items"]
    return sorted(
        (e["reason"], e["involvedObject"]["name"], e["metadata"]["name"], e.get("count", 1))
        for e in items
        if (e.get("source") or {}).get("component") == FIELD_MANAGER
    )


def resyncs(process: ManagedProcess) -> list[str]:
    return [line for line in process.log_tail(5000).splitlines() if "resync:" in line]


def quiet(process: ManagedProcess, after: int) -> bool:
    """Two resyncs since line `after` of the resync log, both without writes."""
    lines = resyncs(process)[after:]
    return len(lines) >= 2 and all(" 0 writes" in line for line in lines[-2:])


def logins(process: ManagedProcess) -> int:
    return process.log_tail(5000).count("logged in to the Boundary controller")


def revoke_other_tokens(cli: BoundaryCLI) -> int:
    """Delete every auth token but the CLI's own: the operator's login ends at once."""
    tokens = cli("auth-tokens", "list", "-scope-id", "global", "-recursive")["items"] or []
    gone = 0
    for token in tokens:
        if token["id"] != cli.token_id:
            cli("auth-tokens", "delete", "-id", token["id"])
            gone += 1
    return gone


def test_restart_over_50_services_and_a_relogin_write_nothing(
    operator: tuple[ManagedProcess, ChartOperator], kubectl: Kubectl, boundary_cli: BoundaryCLI
) -> None:
    process, chart = operator
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [service(f"svc-{n}") for n in range(SERVICES)],
        }
    )
    assert wait_for(lambda: len(our_targets(boundary_cli)) == SERVICES, timeout=120)
    assert wait_for(lambda: quiet(process, 0), timeout=60), resyncs(process)[-3:]

    process.stop()
    process.start()  # a new process: fresh views, a fresh login, the Services already synced
    assert wait_for(lambda: logins(process) >= 2, timeout=60), process.log_tail(30)
    seen = len(resyncs(process))
    assert wait_for(lambda: quiet(process, seen), timeout=60), resyncs(process)[-3:]

    revoke_other_tokens(boundary_cli)
    relogins = logins(process)
    assert wait_for(lambda: logins(process) > relogins, timeout=60), process.log_tail(30)
    seen = len(resyncs(process))
    assert wait_for(lambda: quiet(process, seen), timeout=60), resyncs(process)[-3:]

    assert not [e for e in events(kubectl) if e[0] == "SyncConflict"]
    # This process's calls that are not reads, since it started: its two logins to the
    # controller, and the SelfSubjectReview with which it checks its Kubernetes credentials
    # (a POST that stores nothing); no write.
    assert writes(chart.metrics_port) == Writes(boundary=2, kube=1)
    assert len(our_targets(boundary_cli)) == SERVICES
    kubectl("delete", "services", "--all", "-n", NAMESPACE)
    assert wait_for(lambda: not our_targets(boundary_cli), timeout=60)


def apiserver_writes(kubectl: Kubectl, resource: str) -> int:
    """Writes the apiserver has served for `resource`, from its own metrics."""
    total = 0
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("resource") == resource and labels.get("verb") not in (
            "GET",
            "LIST",
            "WATCH",
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_a_running_worker_left_alone_60s_writes_nothing(
    operator: tuple[ManagedProcess, ChartOperator],
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    tmp_path: Path,
) -> None:
    _, chart = operator
    kubectl.apply(
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryPKIWorker",
            "metadata": {"name": "calm", "namespace": NAMESPACE},
            "spec": {
                "registration": {"initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]}
            },
        }
    )

    def pod_exists() -> bool:
        try:
            kubectl("get", "pod", "calm-0", "-n", NAMESPACE)
        except CommandFailed:
            return False
        return True

    assert wait_for(pod_exists, timeout=60)
    env_file = tmp_path / "env"
    stack_env.write(env_file)
    runner = pod_runner_process(env_file, tmp_path / "state", tmp_path, NAMESPACE, "calm-0")
    runner.start()
    try:

        def body() -> dict[str, Any]:
            found: dict[str, Any] = kubectl.get_json("bpw", "calm", "-n", NAMESPACE)
            return found

        assert wait_for(
            lambda: (body().get("status") or {}).get("connectedReplicas") == 1, timeout=90
        ), body().get("status")
        # Settled: two refresh ticks (10 s apart) after it became Ready.
        time.sleep(25)
        before = (
            writes(chart.metrics_port),
            apiserver_writes(kubectl, "boundarypkiworkers"),
            events(kubectl),
            body()["metadata"]["resourceVersion"],
            json.dumps(boundary_cli("workers", "list", "-scope-id", "global")["items"]),
        )
        time.sleep(60)
        assert writes(chart.metrics_port) == before[0]
        assert apiserver_writes(kubectl, "boundarypkiworkers") == before[1]
        assert events(kubectl) == before[2]
        assert body()["metadata"]["resourceVersion"] == before[3]
        workers = boundary_cli("workers", "list", "-scope-id", "global")["items"]
        calm = [w for w in workers if w.get("name", "").startswith(f"{CLUSTER}-")]
        assert len(calm) == 1
        versions = {
            w["id"]: w["version"] for w in json.loads(before[4]) if w["id"] == calm[0]["id"]
        }
        assert versions == {calm[0]["id"]: calm[0]["version"]}
        kubectl("delete", "bpw", "calm", "-n", NAMESPACE, "--timeout=120s", timeout=150)
    finally:
        runner.stop()
