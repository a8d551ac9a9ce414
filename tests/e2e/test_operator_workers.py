"""BoundaryPKIWorker on the real stack: the operator registers workers with the real controller,
the pod runner runs them as real `boundary server` processes, and scale-down, deletion, the
seed's shape and lost storage all end as designed."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boundary_devstack.chart import operator_under_chart
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Kubectl
from boundary_devstack.operator_process import operator_process, pod_runner_process
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv, wait_for

REPO = Path(__file__).resolve().parents[2]
CLUSTER = f"e2e{uuid.uuid4().hex[:6]}"
NAMESPACE = f"workers-{uuid.uuid4().hex[:6]}"
FAULT_NAMESPACE = f"faults-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def env_file(stack_env: StackEnv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stack") / "env"
    stack_env.write(path)
    return path


@pytest.fixture(scope="module")
def operator(
    crds: None, stack_env: StackEnv, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    for namespace in (NAMESPACE, FAULT_NAMESPACE):
        kubectl("create", "namespace", namespace)
    # Under exactly the Helm chart's ServiceAccount and settings: this proves its RBAC is enough.
    with operator_under_chart(
        stack_env,
        NAMESPACE,
        f"bk-{CLUSTER}",
        tmp_path_factory.mktemp("operator"),
        clusterName=CLUSTER,
    ) as (process, _):
        yield process
    for namespace in (NAMESPACE, FAULT_NAMESPACE):
        kubectl("delete", "namespace", namespace, "--wait=false")


class Pods:
    """Pod runners started by a test, stopped at its end."""

    def __init__(self, env_file: Path, state_dir: Path, log_dir: Path) -> None:
        self.env_file, self.state_dir, self.log_dir = env_file, state_dir, log_dir
        self.running: list[ManagedProcess] = []

    def run(self, namespace: str, pod: str) -> ManagedProcess:
        process = pod_runner_process(self.env_file, self.state_dir, self.log_dir, namespace, pod)
        process.start()
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            process.stop()


@pytest.fixture
def pods(env_file: Path, tmp_path: Path) -> Iterator[Pods]:
    runner = Pods(env_file, tmp_path / "pod-state", tmp_path / "logs")
    yield runner
    runner.stop_all()


def our_workers(cli: BoundaryCLI, prefix: str) -> dict[str, dict[str, Any]]:
    items = cli("workers", "list", "-scope-id", "global")["items"] or []
    return {w["name"]: w for w in items if w.get("name", "").startswith(prefix)}


def worker_cr(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def status_of(kubectl: Kubectl, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    try:
        body = kubectl.get_json("bpw", name, "-n", namespace)
    except CommandFailed:
        return {}
    status: dict[str, Any] = body.get("status") or {}
    return status


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def wait_pod(kubectl: Kubectl, namespace: str, pod: str, uid_not: str = "") -> str:
    def current() -> str:
        try:
            meta = kubectl.get_json("pod", pod, "-n", namespace)["metadata"]
        except CommandFailed:
            return ""
        return "" if meta["uid"] == uid_not or meta.get("deletionTimestamp") else meta["uid"]

    assert wait_for(current, timeout=60), f"pod {namespace}/{pod} did not appear"
    return current()


def test_two_replicas_register_connect_scale_down_and_delete(
    operator: ManagedProcess,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    stack_env: StackEnv,
    pods: Pods,
) -> None:
    prefix = f"{CLUSTER}-{NAMESPACE}-edge-"
    kubectl.apply(
        worker_cr(
            "edge",
            NAMESPACE,
            {
                "replicas": 2,
                "registration": {"initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]},
                "tags": {"env": "e2e", "team": ["a", "b"]},
            },
        )
    )
    assert wait_for(lambda: len(our_workers(boundary_cli, prefix)) == 2, timeout=60)

    for ordinal in (0, 1):
        wait_pod(kubectl, NAMESPACE, f"edge-{ordinal}")
        pods.run(NAMESPACE, f"edge-{ordinal}")

    def connected() -> bool:
        status = status_of(kubectl, "edge")
        return status.get("connectedReplicas") == 2 and all(
            r["lastStatusTime"] and r["upstreamConnectionState"] == "READY"
            for r in status.get("replicas", [])
        )

    assert wait_for(connected, timeout=90), status_of(kubectl, "edge")
    status = status_of(kubectl, "edge")
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Ready")["observedGeneration"] == 1
    workers = our_workers(boundary_cli, prefix)
    assert {r["workerId"] for r in status["replicas"]} == {w["id"] for w in workers.values()}
    tags = next(iter(workers.values()))["config_tags"]
    assert tags["env"] == ["e2e"]
    assert tags["team"] == ["a", "b"]
    assert tags["namespace"] == [NAMESPACE]
    assert tags["boundary_pki_worker"] == ["edge"]
    assert "kubernetes" in tags["type"]

    kubectl(
        "patch", "bpw", "edge", "-n", NAMESPACE, "--type", "merge", "-p", '{"spec":{"replicas":1}}'
    )
    assert wait_for(lambda: set(our_workers(boundary_cli, prefix)) == {f"{prefix}0"}, timeout=90), (
        our_workers(boundary_cli, prefix)
    )

    kubectl("delete", "bpw", "edge", "-n", NAMESPACE, "--wait=false")
    assert wait_for(lambda: not our_workers(boundary_cli, prefix), timeout=90)
    assert wait_for(lambda: not status_of(kubectl, "edge"), timeout=60)
    events = kubectl("get", "events", "-n", NAMESPACE, "-o", "json")
    assert "Deregistered" in events


def test_seed_shaped_resource_keeps_its_token_in_the_secret_only(
    operator: ManagedProcess, kubectl: Kubectl
) -> None:
    token = "neslat_" + "A" * 60  # shaped like a real one; never valid
    kubectl.apply(
        worker_cr(
            "seed",
            NAMESPACE,
            {
                "registration": {
                    "hcpBoundaryClusterID": "4a3a8bd1-3f32-4bd4-a3cc-8bbf2d4b2e56",
                    "controllerGeneratedActivationToken": token,
                },
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "storage": {"storageClassName": "standard"},
                },
                "tags": {"type": ["seed"]},
            },
        )
    )

    def secret_token() -> str:
        try:
            secret = kubectl.get_json("secret", "seed-activation-tokens", "-n", NAMESPACE)
        except CommandFailed:
            return ""
        return base64.b64decode(secret["data"].get("seed-0", "")).decode()

    assert wait_for(lambda: secret_token() == token, timeout=60)
    config = kubectl.get_json("configmap", "seed-config", "-n", NAMESPACE)
    hcl = config["data"]["worker.hcl"]
    assert token not in hcl
    assert 'hcp_boundary_cluster_id = "4a3a8bd1-3f32-4bd4-a3cc-8bbf2d4b2e56"' in hcl
    assert wait_for(lambda: condition(status_of(kubectl, "seed"), "PlainTextToken"), timeout=30)
    status = status_of(kubectl, "seed")
    assert token not in json.dumps(status)
    assert condition(status, "PlainTextToken")["status"] == "True"
    events = kubectl(
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        "involvedObject.name=seed",
        "-o",
        "json",
    )
    assert "PlainTextToken" in events
    assert token not in events
    kubectl("delete", "bpw", "seed", "-n", NAMESPACE, "--wait=false")


def test_wiped_storage_recovers_through_the_reregister_annotation(
    operator: ManagedProcess,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    stack_env: StackEnv,
    pods: Pods,
) -> None:
    prefix = f"{CLUSTER}-{NAMESPACE}-lost-"
    kubectl.apply(
        worker_cr(
            "lost",
            NAMESPACE,
            {
                "registration": {"initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]},
            },
        )
    )
    first_uid = wait_pod(kubectl, NAMESPACE, "lost-0")
    runner = pods.run(NAMESPACE, "lost-0")
    assert wait_for(lambda: status_of(kubectl, "lost").get("connectedReplicas") == 1, timeout=90)
    first_worker = our_workers(boundary_cli, prefix)[f"{prefix}0"]["id"]

    # The replica loses its auth storage; its single-use token is spent.
    runner.stop()
    claims = list((pods.state_dir / "volumes" / NAMESPACE).glob("data-lost-0-*"))
    assert len(claims) == 1
    shutil.rmtree(claims[0])
    claims[0].mkdir()

    kubectl("annotate", "bpw", "lost", "-n", NAMESPACE, "workers.boundaryproject.io/reregister=0")
    wait_pod(kubectl, NAMESPACE, "lost-0", uid_not=first_uid)
    pods.run(NAMESPACE, "lost-0")

    def recovered() -> bool:
        workers = our_workers(boundary_cli, prefix)
        status = status_of(kubectl, "lost")
        return (
            f"{prefix}0" in workers
            and workers[f"{prefix}0"]["id"] != first_worker
            and status.get("connectedReplicas") == 1
        )

    assert wait_for(recovered, timeout=120), status_of(kubectl, "lost")
    annotations = kubectl.get_json("bpw", "lost", "-n", NAMESPACE)["metadata"]["annotations"]
    assert "workers.boundaryproject.io/reregister" not in annotations
    kubectl("delete", "bpw", "lost", "-n", NAMESPACE, "--wait=false")
    assert wait_for(lambda: not our_workers(boundary_cli, prefix), timeout=90)


def test_wrong_controller_credentials_become_a_condition_not_a_crash(
    crds: None,
    operator: ManagedProcess,
    stack_env: StackEnv,
    kubectl: Kubectl,
    tmp_path: Path,
) -> None:
    faulty = operator_process(
        stack_env,
        tmp_path,
        cluster_name=f"{CLUSTER}f",
        namespaces=[FAULT_NAMESPACE],
        extra_env={"BOUNDARY_PASSWORD": "wrong"},
        name="faulty-operator",
    )
    faulty.start()
    try:
        kubectl.apply(
            worker_cr(
                "broken",
                FAULT_NAMESPACE,
                {
                    "registration": {
                        "initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]
                    },
                },
            )
        )

        def reported() -> bool:
            status = status_of(kubectl, "broken", FAULT_NAMESPACE)
            return condition(status, "Registered").get("reason") == "Unauthenticated"

        assert wait_for(reported, timeout=60), status_of(kubectl, "broken", FAULT_NAMESPACE)
        message = condition(status_of(kubectl, "broken", FAULT_NAMESPACE), "Registered")
        assert "authenticate" in message["message"]
        events = kubectl("get", "events", "-n", FAULT_NAMESPACE, "-o", "json")
        assert "SyncFailed" in events
        assert faulty.running(), "the operator must back off, not exit"
    finally:
        faulty.stop()
        kubectl("delete", "bpw", "broken", "-n", FAULT_NAMESPACE, "--wait=false")
        # No operator is left for that namespace: release the finalizer by hand.
        kubectl(
            "patch",
            "bpw",
            "broken",
            "-n",
            FAULT_NAMESPACE,
            "--type",
            "merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
        )
