"""What the kind journey's fixtures (conftest.py) and tests share: the engine, the cluster, and
running commands."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boundary_devstack.clients import BoundaryCLI, CommandFailed, Kubectl
from boundary_devstack.process import tail
from boundary_devstack.pytest_plugin import default_bin_dir

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "tools" / "container-engine.sh"
CACHE = Path(os.environ.get("BK_CACHE") or Path.home() / ".cache" / "boundary-k8s")
CLUSTER = os.environ.get("BK_KIND_CLUSTER", "bk-e2e")
"""The kind cluster's name; give each checkout running the journey at once its own."""
WORKER_NODE_PORT = 30920
WORKER_UID = 12345
"""The worker pods run as this UID, not the image's: an arbitrary one, as OpenShift assigns."""
TIMINGS = REPO / ".stack" / "e2e-kind-timings.txt"
MIRROR_PORT_BASE = 47000
"""The package mirror listens on the bridge at this port plus a number taken from its key (uv.lock
and tools/images/package-mirror.py)."""


def run(*argv: str | Path, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    """Run a command; its stdout. A failure says what ran and what it printed."""
    result = subprocess.run(
        [str(a) for a in argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(str(a) for a in argv[:3])} exited {result.returncode}:\n"
            f"{result.stderr[-3000:]}\n{result.stdout[-2000:]}"
        )
    return result.stdout.strip()


def boundary_worker(cli: BoundaryCLI, worker_id: str) -> dict[str, Any] | None:
    """The controller's record of a worker; None once it is deregistered."""
    try:
        item: dict[str, Any] = cli("workers", "read", "-id", worker_id)["item"]
    except CommandFailed as exc:
        if "404" in exc.stderr or "not found" in exc.stderr.lower():
            return None
        raise
    return item


def offline_images() -> bool:
    return os.environ.get("BK_OFFLINE_IMAGES", "1") != "0"


@dataclass
class Engine:
    docker_host: str
    address: str
    """The host's address on the engine's bridge: pods and containers reach it."""

    def env(self) -> dict[str, str]:
        # The classic builder: this machine's docker client has no buildx plugin.
        return {
            **os.environ,
            "DOCKER_HOST": self.docker_host,
            "DOCKER_BUILDKIT": "0",
            "PATH": f"{default_bin_dir()}:{os.environ['PATH']}",
        }

    def docker(self, *args: str, timeout: float = 600) -> str:
        return run("docker", *args, env=self.env(), timeout=timeout)


@dataclass
class KindCluster:
    kubectl: Kubectl
    kubeconfig: Path
    node_ip: str
    script_env: dict[str, str]
    created_at: float
    """When `kind create cluster` began (time.monotonic())."""
    timings: dict[str, float] = field(default_factory=dict)

    def warnings(self, *args: str) -> str:
        """What kubectl prints on stderr (its warnings) for a command that succeeds."""
        result = subprocess.run(
            [self.kubectl.binary, *args],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stderr

    def helm(self, *args: str) -> str:
        return run(default_bin_dir() / "helm", *args, env=self.script_env, timeout=600)

    def script(self, *args: str) -> None:
        """tools/e2e-kind.sh, its progress lines kept in .stack/e2e-kind.log."""
        with (REPO / ".stack" / "e2e-kind.log").open("a") as log:
            result = subprocess.run(
                [str(REPO / "tools" / "e2e-kind.sh"), *args],
                env=self.script_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=1800,
                check=False,
            )
        if result.returncode != 0:
            raise AssertionError(
                f"tools/e2e-kind.sh {' '.join(args)} exited {result.returncode}; "
                f"its output is in .stack/e2e-kind.log:\n{tail(REPO / '.stack' / 'e2e-kind.log')}"
            )

    def record(self, what: str, seconds: float) -> None:
        self.timings[what] = seconds
        TIMINGS.parent.mkdir(exist_ok=True)
        with TIMINGS.open("a") as handle:
            handle.write(f"{what}: {seconds:.1f} s\n")
