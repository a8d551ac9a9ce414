"""Annotated Services become Boundary targets, on the real stack: created with alias, address,
port and filter; renamed; removed; repaired after drift; brokering a Secret's credentials; and
carrying real traffic through a worker run by the pod runner, with the official
`boundary connect`."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boundary_devstack.chart import ChartOperator, operator_under_chart, scenario_values
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Kubectl
from boundary_devstack.leaks import token_shaped
from boundary_devstack.metrics import writes
from boundary_devstack.netns import NamespaceHost
from boundary_devstack.operator_process import pod_runner_process
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv, wait_for

REPO = Path(__file__).resolve().parents[2]
CLUSTER = f"svc{uuid.uuid4().hex[:6]}"
NAMESPACE = f"services-{uuid.uuid4().hex[:6]}"
BACKEND_IP = "10.96.200.10"


@pytest.fixture(scope="module")
def chart_operator(
    stack_env: StackEnv, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, ChartOperator]]:
    kubectl("apply", "-f", str(REPO / "crds"))
    kubectl("create", "namespace", NAMESPACE)
    # Under exactly the Helm chart's ServiceAccount and settings: this proves its RBAC is enough.
    with operator_under_chart(
        stack_env,
        NAMESPACE,
        f"bk-{CLUSTER}",
        tmp_path_factory.mktemp("operator"),
        **scenario_values(stack_env, CLUSTER),
    ) as (process, chart):
        yield process, chart
    assert token_shaped(process.log_tail(100_000)) == []
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


@pytest.fixture(scope="module")
def operator(chart_operator: tuple[ManagedProcess, ChartOperator]) -> ManagedProcess:
    return chart_operator[0]


@pytest.fixture(scope="module")
def egress_worker(
    operator: ManagedProcess,
    stack_env: StackEnv,
    kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A BoundaryPKIWorker of the namespace, run by the pod runner: the egress for targets."""
    kubectl.apply(
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryPKIWorker",
            "metadata": {"name": "egress", "namespace": NAMESPACE},
            "spec": {
                "registration": {"initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]}
            },
        }
    )
    assert wait_for(lambda: _exists(kubectl, "pod", "egress-0"), timeout=60)
    directory = tmp_path_factory.mktemp("egress")
    env_file = directory / "env"
    stack_env.write(env_file)
    runner = pod_runner_process(env_file, directory / "state", directory, NAMESPACE, "egress-0")
    runner.start()

    def connected() -> bool:
        status = kubectl.get_json("bpw", "egress", "-n", NAMESPACE).get("status") or {}
        return bool(status.get("connectedReplicas") == 1)

    assert wait_for(connected, timeout=90)
    yield "egress"
    runner.stop()


def _exists(kubectl: Kubectl, kind: str, name: str) -> bool:
    try:
        kubectl("get", kind, name, "-n", NAMESPACE)
    except CommandFailed:
        return False
    return True


def service(
    name: str,
    annotations: dict[str, str],
    ports: list[dict[str, Any]],
    cluster_ip: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports, "selector": {"app": name}}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {"boundaryproject.io/expose": "true", **annotations},
        },
        "spec": spec,
    }


def targets_of(cli: BoundaryCLI, svc: str) -> list[dict[str, Any]]:
    items = cli("targets", "list", "-scope-id", "global", "-recursive")["items"] or []
    return [t for t in items if t.get("name", "").startswith(f"{CLUSTER}/{NAMESPACE}/{svc}/")]


def aliases(cli: BoundaryCLI) -> dict[str, dict[str, Any]]:
    items = cli("aliases", "list", "-scope-id", "global")["items"] or []
    return {a["value"]: a for a in items}


def events_for(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    out = kubectl(
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    )
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def test_service_becomes_target_with_alias_and_follows_rename_and_removal(
    egress_worker: str, kubectl: Kubectl, boundary_cli: BoundaryCLI
) -> None:
    alias = f"api.{NAMESPACE}.test"
    kubectl.apply(
        service(
            "api",
            {"boundaryproject.io/alias": alias},
            [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
        )
    )
    assert wait_for(lambda: len(targets_of(boundary_cli, "api")) == 2, timeout=60)
    cluster_ip = kubectl.get_json("service", "api", "-n", NAMESPACE)["spec"]["clusterIP"]
    by_port = {t["attributes"]["default_port"]: t for t in targets_of(boundary_cli, "api")}
    assert set(by_port) == {8080, 9090}
    assert all(t["address"] == cluster_ip for t in by_port.values())
    assert by_port[8080]["egress_worker_filter"] == (
        f'"{NAMESPACE}" in "/tags/namespace" and "kubernetes" in "/tags/type"'
        ' and "true" not in "/tags/draining"'
    )
    assert wait_for(lambda: f"metrics.{alias}" in aliases(boundary_cli), timeout=30)
    assert aliases(boundary_cli)[alias]["destination_id"] == by_port[8080]["id"]

    session = boundary_cli("targets", "authorize-session", "-id", alias)["item"]
    assert session["target_id"] == by_port[8080]["id"]

    annotation = kubectl.get_json("service", "api", "-n", NAMESPACE)["metadata"]["annotations"]
    assert json.loads(annotation["boundaryproject.io/targets"])[by_port[8080]["id"]] == alias

    renamed = f"api2.{NAMESPACE}.test"
    kubectl(
        "annotate",
        "service",
        "api",
        "-n",
        NAMESPACE,
        "--overwrite",
        f"boundaryproject.io/alias={renamed}",
    )
    assert wait_for(lambda: renamed in aliases(boundary_cli), timeout=30)
    assert alias not in aliases(boundary_cli)
    assert f"metrics.{alias}" not in aliases(boundary_cli)

    kubectl("delete", "service", "api", "-n", NAMESPACE)
    assert wait_for(lambda: not targets_of(boundary_cli, "api"), timeout=30)
    assert not [a for a in aliases(boundary_cli) if a.endswith(f"{NAMESPACE}.test")]


def test_target_deleted_by_hand_comes_back_and_steady_state_writes_nothing(
    egress_worker: str, kubectl: Kubectl, boundary_cli: BoundaryCLI, operator: ManagedProcess
) -> None:
    kubectl.apply(service("drift", {}, [{"name": "pg", "port": 5432}]))
    assert wait_for(lambda: len(targets_of(boundary_cli, "drift")) == 1, timeout=60)
    first = targets_of(boundary_cli, "drift")[0]["id"]
    boundary_cli("targets", "delete", "-id", first)
    assert wait_for(
        lambda: [t["id"] for t in targets_of(boundary_cli, "drift")] not in ([], [first]),
        timeout=30,
    )
    # The default alias follows the recreated target.
    default_alias = f"drift.{NAMESPACE}.{CLUSTER}"
    assert wait_for(
        lambda: (
            aliases(boundary_cli).get(default_alias, {}).get("destination_id")
            == targets_of(boundary_cli, "drift")[0]["id"]
        ),
        timeout=30,
    )

    def quiet_resyncs() -> bool:
        lines = [ln for ln in operator.log_tail(400).splitlines() if "resync:" in ln]
        return len(lines) >= 2 and all(" 0 writes" in ln for ln in lines[-2:])

    assert wait_for(quiet_resyncs, timeout=30), operator.log_tail(20)
    kubectl("delete", "service", "drift", "-n", NAMESPACE)


def _secret(name: str, username: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {
            "username": base64.b64encode(username.encode()).decode(),
            "password": base64.b64encode(password.encode()).decode(),
        },
    }


def test_credentials_secret_is_brokered_and_follows_changes(
    egress_worker: str, kubectl: Kubectl, boundary_cli: BoundaryCLI
) -> None:
    kubectl.apply(_secret("db-creds", "app", "first-password"))
    alias = f"db.{NAMESPACE}.test"
    kubectl.apply(
        service(
            "db",
            {
                "boundaryproject.io/alias": alias,
                "boundaryproject.io/credentials-secret": "db-creds",
            },
            [{"name": "pg", "port": 5432}],
        )
    )

    def brokered() -> list[tuple[str, str]]:
        try:
            item = boundary_cli("targets", "authorize-session", "-id", alias)["item"]
        except CommandFailed:
            return []
        return [
            (c["credential"].get("username"), c["credential"].get("password"))
            for c in item.get("credentials") or []
        ]

    assert wait_for(lambda: brokered() == [("app", "first-password")], timeout=60), brokered()
    kubectl.apply(_secret("db-creds", "app", "second-password"))
    assert wait_for(lambda: brokered() == [("app", "second-password")], timeout=30), brokered()
    kubectl("delete", "service", "db", "-n", NAMESPACE)
    assert wait_for(lambda: not targets_of(boundary_cli, "db"), timeout=30)


def test_invalid_annotations_give_one_warning_and_no_writes(
    egress_worker: str,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    chart_operator: tuple[ManagedProcess, ChartOperator],
) -> None:
    metrics_port = chart_operator[1].metrics_port
    kubectl.apply(
        service(
            "bad",
            {
                "boundaryproject.io/alias": "Bad_Alias.example",
                "boundaryproject.io/ports": "http,nope",
                "boundaryproject.io/worker": "missing",
                "boundaryproject.io/credentials-secret": "absent",
                "boundaryproject.io/session-max-seconds": "soon",
            },
            [{"name": "http", "port": 80}],
        )
    )

    def warnings() -> list[dict[str, Any]]:
        return [e for e in events_for(kubectl, "bad") if e["type"] == "Warning"]

    assert wait_for(lambda: bool(warnings()), timeout=30)
    message = warnings()[0]["message"]
    for fragment in ("Bad_Alias", "'nope'", "'missing'", "'absent'", "'soon'"):
        assert fragment in message
    before = writes(metrics_port)
    subprocess.run(["sleep", "7"], check=True)  # two resyncs
    assert len(warnings()) == 1
    # Nothing else changes meanwhile in this namespace: every write would be for "bad".
    assert writes(metrics_port) == before
    assert targets_of(boundary_cli, "bad") == []
    kubectl("delete", "service", "bad", "-n", NAMESPACE)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An HTTP server on BACKEND_IP inside a network namespace of its own."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    payload = os.urandom(1 << 20)
    (tmp_path / "blob").write_bytes(payload)
    host = NamespaceHost(BACKEND_IP).create()
    server = host.popen(
        ["python3", "-m", "http.server", "80", "--bind", BACKEND_IP, "--directory", str(tmp_path)]
    )
    try:
        yield "blob", hashlib.sha256(payload).hexdigest()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        host.delete()


def test_real_traffic_through_the_worker_with_boundary_connect(
    egress_worker: str,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    stack_env: StackEnv,
    backend: tuple[str, str],
    tmp_path: Path,
) -> None:
    path, digest = backend
    received = tmp_path / "received"
    kubectl.apply(
        service(
            "web",
            {"boundaryproject.io/worker": egress_worker},
            [{"name": "http", "port": 80}],
            cluster_ip=BACKEND_IP,
        )
    )
    assert wait_for(lambda: len(targets_of(boundary_cli, "web")) == 1, timeout=60)
    target = targets_of(boundary_cli, "web")[0]
    assert target["address"] == BACKEND_IP
    boundary_cli.login()
    env = boundary_cli.env()
    # `boundary connect` itself (the official client, not ours) sometimes fails its websocket
    # handshake with the worker ("received header with unexpected rsv bits"): up to 3 tries.
    for _attempt in range(3):
        result = subprocess.run(
            [
                boundary_cli.binary,
                "connect",
                "-target-id",
                target["id"],
                "-token",
                "env://BK_BOUNDARY_TOKEN",
                "-exec",
                "curl",
                "--",
                "-sSf",
                f"http://{{{{boundary.ip}}}}:{{{{boundary.port}}}}/{path}",
                "-o",
                str(received),
            ],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 0:
            break
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert received.exists(), (result.stdout[-1500:], result.stderr[-1500:])
    # curl writes the body to a file: `boundary connect` prints its proxy details on stdout.
    assert hashlib.sha256(received.read_bytes()).hexdigest() == digest
    kubectl("delete", "service", "web", "-n", NAMESPACE)
