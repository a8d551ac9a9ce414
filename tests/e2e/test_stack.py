"""The local stack is real: Pods run, Boundary workers connect, and start-up failures and
Ctrl-C leave nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from boundary_devstack.clients import BoundaryCLI, Kubectl
from boundary_devstack.process import ComponentError
from boundary_devstack.pytest_plugin import default_bin_dir
from boundary_devstack.stack import LocalStack, StackEnv, wait_for
from boundary_devstack.workers import WorkerProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def test_statefulset_pod_becomes_running(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "serviceName": "web",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]},
                },
            },
        }
    )

    def pod_phase() -> str:
        try:
            return str(kubectl.get_json("pod", "web-0", "-n", namespace)["status"]["phase"])
        except Exception:
            return ""

    assert wait_for(lambda: pod_phase() == "Running", timeout=90), pod_phase()


def test_controller_led_worker_connects(
    boundary_cli: BoundaryCLI, stack_env: StackEnv, tmp_path: Path
) -> None:
    name = f"e2e-stack-{uuid.uuid4().hex[:8]}"
    created = boundary_cli("workers", "create", "controller-led", "-name", name)["item"]
    worker = WorkerProcess(
        boundary_bin=Path(stack_env.values["STACK_BIN"]) / "boundary",
        directory=tmp_path / "worker",
        upstream=stack_env.values["BOUNDARY_CLUSTER_ADDR"],
        activation_token=created["controller_generated_activation_token"],
    )
    try:
        worker.start()

        def last_status() -> str | None:
            item = boundary_cli("workers", "read", "-id", created["id"])["item"]
            status: str | None = item.get("last_status_time")
            return status

        assert wait_for(lambda: last_status() is not None, timeout=60)
        item = boundary_cli("workers", "read", "-id", created["id"])["item"]
        assert item["release_version"] == "Boundary v0.21.1"
        assert item["config_tags"] == {"type": ["devstack"]}
    finally:
        worker.stop()
        boundary_cli("workers", "delete", "-id", created["id"])


@pytest.mark.parametrize("component", ["etcd", "postgresql"])
def test_start_failure_names_component_and_stops_everything(component: str) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        stack = LocalStack(bin_dir=default_bin_dir(), fixed_ports={component: port})
        with pytest.raises(ComponentError) as caught:
            stack.start()
    assert caught.value.component == component
    assert "already in use" in caught.value.log_tail.lower()
    assert stack.processes == []
    assert stack.work_dir is not None
    assert not stack.work_dir.exists()


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_make_stack_then_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    # Not under tmp_path: pytest makes that private to root, and PostgreSQL runs as nobody.
    tmpdir = Path(tempfile.mkdtemp(prefix="bk-ctrl-c-"))
    tmpdir.chmod(0o755)
    env_file = tmp_path / "env"
    env = {**os.environ, "TMPDIR": str(tmpdir), "STACK_ENV": str(env_file)}
    make = subprocess.Popen(
        ["make", "--no-print-directory", "stack"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        assert wait_for(lambda: env_file.exists() or make.poll() is not None, timeout=300)
        if not env_file.exists():
            os.killpg(make.pid, signal.SIGINT)
            pytest.fail(f"make stack did not become ready:\n{make.communicate(timeout=120)[0]}")
        assert _processes_mentioning(str(tmpdir)), "the stack's processes should be running"
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        output, _ = make.communicate(timeout=120)
    assert "[stack] stopped; nothing left running" in output, output
    assert wait_for(lambda: not _processes_mentioning(str(tmpdir)), timeout=30), (
        _processes_mentioning(str(tmpdir))
    )
    assert not env_file.exists()
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("boundary-k8s-stack")] == []
    shutil.rmtree(tmpdir)
