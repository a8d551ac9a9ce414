"""The install journey in real pods (`make e2e-kind`): the project's own dockerd, a kind
cluster from the offline node image, both images built from images/Containerfile, the chart,
examples/, and the local stack's controller listening on the dockerd's bridge so that pods reach
it. tools/e2e-kind.sh does the installing, as it does for a user; these fixtures give it what
this machine has instead of registries, then tear everything down (cluster and dockerd).

BK_OFFLINE_IMAGES=0 lets kind and docker pull the images a machine with registries can reach
(kind's own node image, the UBI and golang bases, nginx and postgres) instead of building them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import laptop
import pytest
from kind_harness import (
    CACHE,
    CLUSTER,
    ENGINE,
    MIRROR_PORT_BASE,
    REPO,
    TIMINGS,
    WORKER_NODE_PORT,
    WORKER_UID,
    Engine,
    KindCluster,
    offline_images,
    run,
)

from boundary_devstack.agent_process import LocalAgent, local_agent
from boundary_devstack.clients import Kubectl
from boundary_devstack.net import http_ok
from boundary_devstack.process import ManagedProcess, unmarked_environment
from boundary_devstack.pytest_plugin import default_bin_dir
from boundary_devstack.stack import LocalStack, StackEnv


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keeps each phase's report on the test item, for _report_on_failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The project's dockerd, started if it is not running. Left running: other test sessions
    (other checkouts) may share it; `make test` and `make e2e-kind` stop it when they end."""
    # Without the session's marker: no_process_left_behind (tests/conftest.py) would otherwise
    # kill the shared dockerd this session happened to start (it did, once).
    run(ENGINE, "start", env=unmarked_environment())
    return Engine(run(ENGINE, "host"), run(ENGINE, "address"))


@pytest.fixture(scope="session")
def base_images(engine: Engine) -> dict[str, str]:
    """The offline base and backend images by role (base, python, go, nginx, postgres)."""
    if not offline_images():
        return {}
    lines = run(REPO / "tools" / "images" / "offline-bases.sh", env=engine.env()).splitlines()
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture(scope="session")
def node_image(engine: Engine) -> str:
    if not offline_images():
        return ""
    return run(REPO / "tools" / "kind" / "build-node-image.sh", env=engine.env())


def serving(url: str) -> bool:
    try:
        return http_ok(url)
    except OSError:  # nothing listening (URLError is an OSError)
        return False


@pytest.fixture(scope="session")
def package_mirror(engine: Engine) -> Iterator[str]:
    """A plain-HTTP mirror (tools/images/package-mirror.py) on the bridge: the image builds'
    PyPI and Go module proxy, and the laptop's PyPI. Its URL."""
    if not offline_images():
        yield ""
        return
    # Keyed by what decides its contents: the lock, and what the script takes from it.
    script = REPO / "tools" / "images" / "package-mirror.py"
    key = hashlib.sha256((REPO / "uv.lock").read_bytes() + script.read_bytes()).hexdigest()[:16]
    directory = CACHE / "package-mirror" / key
    # The machine's Python, not the project's venv (which has no pip): the first python3 on
    # PATH outside the venv.
    outside = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(sys.prefix)
    )
    python = shutil.which("python3", path=outside)
    assert python, "no python3 outside the project's virtualenv"
    run(python, script, directory)
    # A port of its own per key: the URL is a build argument, and a new one every run would
    # invalidate the builds' cached layers. A mirror of the same key already serving (another
    # checkout's session) is shared.
    port = MIRROR_PORT_BASE + int(key[:4], 16) % 1000
    url = f"http://{engine.address}:{port}"
    if serving(f"{url}/simple/"):
        yield url
        return
    server = ManagedProcess(
        "package-mirror",
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            engine.address,
            "--directory",
            str(directory),
            str(port),
        ],
        log_path=CACHE / "package-mirror" / "server.log",
    )
    server.start()
    server.wait_healthy(lambda: http_ok(f"{url}/simple/"), 30)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def stack_env(engine: Engine) -> Iterator[StackEnv]:
    """The local stack, its controller on the engine's bridge (overrides the plugin's)."""
    stack = LocalStack(bin_dir=default_bin_dir(), controller_host=engine.address)
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def kind_cluster(
    engine: Engine,
    stack_env: StackEnv,
    base_images: dict[str, str],
    node_image: str,
    package_mirror: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KindCluster]:
    """tools/e2e-kind.sh up, with this machine's images; tools/e2e-kind.sh down at the end."""
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    values = stack_env.values
    env = {
        **engine.env(),
        "KUBECONFIG": str(kubeconfig),
        "KIND": str(default_bin_dir() / "kind"),
        "KIND_CLUSTER": CLUSTER,
        "WORKER_NODE_PORT": str(WORKER_NODE_PORT),
        "WORKER_RUN_AS_USER": str(WORKER_UID),
        **{
            name: values[name]
            for name in (
                "BOUNDARY_ADDR",
                "BOUNDARY_CLUSTER_ADDR",
                "BOUNDARY_AUTH_METHOD_ID",
                "BOUNDARY_LOGIN_NAME",
                "BOUNDARY_PASSWORD",
                "BOUNDARY_PROJECT_ID",
            )
        },
    }
    if offline_images():
        mirror_host = package_mirror.removeprefix("http://")
        env |= {
            "KIND_NODE_IMAGE": node_image,
            "WEB_IMAGE": base_images["nginx"],
            "DB_IMAGE": base_images["postgres"],
            "IMAGE_BUILD_ARGS": " ".join(
                f"--build-arg {arg}"
                for arg in (
                    f"BASE_IMAGE={base_images['base']}",
                    f"GO_IMAGE={base_images['go']}",
                    f"PYTHON_IMAGE={base_images['python']}",
                    f"GOPROXY={package_mirror}/go",
                    f"PIP_INDEX_URL={package_mirror}/simple",
                    f"PIP_TRUSTED_HOST={mirror_host}",
                )
            ),
        }
    TIMINGS.unlink(missing_ok=True)
    (REPO / ".stack" / "e2e-kind.log").unlink(missing_ok=True)
    cluster = KindCluster(
        kubectl=Kubectl(
            StackEnv({"KUBECONFIG": str(kubeconfig), "STACK_BIN": str(default_bin_dir())})
        ),
        kubeconfig=kubeconfig,
        node_ip="",
        script_env=env,
        created_at=time.monotonic(),
    )
    try:
        cluster.script("up")
        cluster.record(
            "kind create cluster to everything installed", time.monotonic() - cluster.created_at
        )
        cluster.node_ip = cluster.kubectl(
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[0].status.addresses[?(@.type=='InternalIP')].address}",
        ).strip()
        yield cluster
    finally:
        cluster.script("down")


@pytest.fixture
def agent(
    stack_env: StackEnv, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LocalAgent]:
    """A fresh boundary-agent on loopback, logged in as the stack's admin: every test's first
    connection through it is a new session. Its log is printed when the test fails."""
    started = local_agent(tmp_path / "agent", "127.0.0.1")
    started.start()
    try:
        started.login_as_admin(stack_env)
        yield started
    finally:
        started.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(f"--- boundary-agent log ---\n{started.process.log_tail(40)}")


@pytest.fixture(scope="module")
def laptop_machine(
    engine: Engine,
    kind_cluster: KindCluster,
    base_images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[laptop.Laptop]:
    """A booted Debian systemd container on kind's network, with nothing of the agent yet
    (tests/kind/laptop.py). Removed at the end of the module."""
    image = laptop.image(engine, base_images.get("base", "docker.io/library/debian:bookworm"))
    machine = laptop.Laptop(engine, f"{CLUSTER}-laptop")
    machine.remove()  # one left by an interrupted run
    machine.start(image, "kind", tmp_path_factory.mktemp("laptop") / "resolv.conf")
    try:
        yield machine
    finally:
        machine.remove()


@pytest.fixture
def laptop_journals(
    laptop_machine: laptop.Laptop, request: pytest.FixtureRequest
) -> Iterator[None]:
    """The agent's and resolved's journals, printed when the test fails."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for unit in ("boundary-agent", "systemd-resolved"):
            print(f"--- {unit} journal ---\n{laptop_machine.journal(unit)}")
