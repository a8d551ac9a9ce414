"""The operator's Kubernetes credentials, on the real apiserver, under the chart's
ServiceAccount: a kubeconfig whose user is an exec plugin (minting tokens through the
TokenRequest API), and the in-cluster service account whose token file is rotated while the
operator runs, past the old token's expiry."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boundary_devstack.chart import (
    ChartOperator,
    chart_operator,
    create_credentials_secret,
    install,
    operator_process,
    release_full_name,
    scenario_values,
    stack_values,
)
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Helm, Kubectl
from boundary_devstack.credentials import (
    exec_plugin_kubeconfig,
    plugin_runs,
    short_lived_token,
    write_service_account_dir,
)
from boundary_devstack.manifests import exposed_service
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv, wait_for

CLUSTER = f"cred{uuid.uuid4().hex[:6]}"
NAMESPACE = f"credentials-{uuid.uuid4().hex[:6]}"
RELEASE = f"bk-{CLUSTER}"


@pytest.fixture(scope="module")
def chart(
    crds: None, stack_env: StackEnv, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChartOperator]:
    kubectl("create", "namespace", NAMESPACE)
    helm = Helm(stack_env)
    create_credentials_secret(kubectl, stack_env, NAMESPACE)
    work = tmp_path_factory.mktemp("chart")
    values = stack_values(stack_env, [NAMESPACE], **scenario_values(stack_env, CLUSTER))
    install(helm, RELEASE, NAMESPACE, values, work)
    yield chart_operator(kubectl, NAMESPACE, RELEASE, work)
    helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--no-hooks")
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def service(name: str) -> dict[str, Any]:
    return exposed_service(NAMESPACE, name)


def targets_of(cli: BoundaryCLI, name: str) -> list[dict[str, Any]]:
    items = cli("targets", "list", "-scope-id", "global", "-recursive")["items"] or []
    prefix = f"{CLUSTER}/{NAMESPACE}/{name}/"
    return [t for t in items if t.get("name", "").startswith(prefix)]


def worker_status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    try:
        status: dict[str, Any] = kubectl.get_json("bpw", name, "-n", NAMESPACE).get("status") or {}
    except CommandFailed:
        return {}
    return status


def registered(kubectl: Kubectl, name: str) -> bool:
    conditions = worker_status(kubectl, name).get("conditions") or []
    return any(c["type"] == "Registered" and c["status"] == "True" for c in conditions)


def publish_and_register(
    kubectl: Kubectl, cli: BoundaryCLI, stack_env: StackEnv, suffix: str, operator: ManagedProcess
) -> None:
    """A real scenario through the operator: a Service published as a target (the operator's
    client) and a BoundaryPKIWorker registered, with its status written (kopf's client)."""
    kubectl.apply(service(f"web-{suffix}"))
    upstream = stack_env.values["BOUNDARY_CLUSTER_ADDR"]
    kubectl.apply(
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryPKIWorker",
            "metadata": {"name": f"edge-{suffix}", "namespace": NAMESPACE},
            "spec": {"registration": {"initialUpstreams": [upstream]}},
        }
    )
    assert wait_for(lambda: len(targets_of(cli, f"web-{suffix}")) == 1, timeout=60), (
        operator.log_tail(60)
    )
    assert wait_for(lambda: registered(kubectl, f"edge-{suffix}"), timeout=60), (
        worker_status(kubectl, f"edge-{suffix}"),
        operator.log_tail(60),
    )


def clean_up(kubectl: Kubectl, cli: BoundaryCLI, suffix: str) -> None:
    """While the operator still runs: its finalizer deregisters the worker."""
    kubectl("delete", "service", f"web-{suffix}", "-n", NAMESPACE)
    kubectl("delete", "bpw", f"edge-{suffix}", "-n", NAMESPACE, "--timeout=120s", timeout=150)
    assert wait_for(lambda: not targets_of(cli, f"web-{suffix}"), timeout=60)


def started(process: ManagedProcess, account: str) -> None:
    process.start()
    process.wait_healthy(
        lambda: f"authenticated to the apiserver as {account}" in process.log_tail(200), 60
    )


def test_exec_plugin_kubeconfig_runs_a_real_scenario(
    chart: ChartOperator,
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    tmp_path: Path,
) -> None:
    account = release_full_name(RELEASE)
    config = exec_plugin_kubeconfig(kubectl, NAMESPACE, account, tmp_path / "exec")
    assert "token" not in json.loads(config.read_text())["users"][0]["user"]
    process = operator_process(chart, tmp_path, "operator-exec", kubeconfig=config)
    started(process, f"system:serviceaccount:{NAMESPACE}:{account}")
    try:
        publish_and_register(kubectl, boundary_cli, stack_env, "exec", process)
        assert plugin_runs(tmp_path / "exec") >= 1
        assert "Unauthorized" not in process.log_tail(1000)
        clean_up(kubectl, boundary_cli, "exec")
    finally:
        process.stop()
    assert not process.running()


def test_in_cluster_token_rotated_past_the_old_tokens_expiry(
    chart: ChartOperator,
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    tmp_path: Path,
) -> None:
    account = release_full_name(RELEASE)
    lifetime = 45
    first = short_lived_token(kubectl, stack_env, NAMESPACE, account, lifetime)
    expires = time.monotonic() + lifetime
    mounted = write_service_account_dir(tmp_path / "serviceaccount", kubectl, NAMESPACE, first)
    server = json.loads(kubectl("config", "view", "--minify", "-o", "json"))["clusters"][0]
    process = operator_process(
        chart, tmp_path, "operator-in-cluster", in_cluster=(mounted, server["cluster"]["server"])
    )
    started(process, f"system:serviceaccount:{NAMESPACE}:{account}")
    try:
        publish_and_register(kubectl, boundary_cli, stack_env, "before", process)
        # The kubelet rotates the projected token: a fresh one from the TokenRequest API.
        second = kubectl("create", "token", account, "-n", NAMESPACE, "--duration=10m").strip()
        write_service_account_dir(mounted, kubectl, NAMESPACE, second)
        as_first = [
            "--kubeconfig=/dev/null",
            f"--server={server['cluster']['server']}",
            f"--certificate-authority={mounted / 'ca.crt'}",
            f"--token={first}",
        ]

        def first_refused() -> bool:
            try:
                kubectl(*as_first, "get", "services", "-n", NAMESPACE)
            except CommandFailed as exc:
                return re.search(r"(?i)unauthorized|must be logged in", exc.stderr) is not None
            return False

        # The apiserver accepts a token up to a minute past its expiry (the JWT leeway).
        time.sleep(max(0.0, expires - time.monotonic()))
        assert wait_for(first_refused, timeout=120, interval=5)
        publish_and_register(kubectl, boundary_cli, stack_env, "after", process)
        assert "renewed the Kubernetes credentials" in process.log_tail(2000)
        clean_up(kubectl, boundary_cli, "before")
        clean_up(kubectl, boundary_cli, "after")
    finally:
        process.stop()


def test_refused_credentials_stop_the_operator_with_one_line(
    stack_env: StackEnv, kubectl: Kubectl, tmp_path: Path
) -> None:
    cluster = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))["clusters"][
        0
    ]
    config = tmp_path / "refused.kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "stack", "cluster": cluster["cluster"]}],
                "users": [{"name": "nobody", "user": {"token": "not-a-real-token"}}],
                "contexts": [{"name": "c", "context": {"cluster": "stack", "user": "nobody"}}],
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOUNDARY_", "KUBE"))}
    env.update(KUBECONFIG=str(config), BOUNDARY_ADDR=stack_env.values["BOUNDARY_ADDR"])
    result = subprocess.run(
        [sys.executable, "-m", "boundary_operator.main", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"boundary-operator: the apiserver refused the credentials of kubeconfig {config}: "
        "Unauthorized"
    )
