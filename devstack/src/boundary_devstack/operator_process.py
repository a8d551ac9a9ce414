"""Start the operator and pod runners as real processes against a stack (for tests and the
demo): the same console scripts a user runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv


def operator_process(
    stack: StackEnv,
    log_dir: Path,
    *,
    cluster_name: str,
    namespaces: list[str],
    extra_env: dict[str, str] | None = None,
    name: str = "boundary-operator",
) -> ManagedProcess:
    env = {
        **os.environ,
        **stack.values,
        "BOUNDARY_OPERATOR_CLUSTER_NAME": cluster_name,
        "BOUNDARY_OPERATOR_NAMESPACES": ",".join(namespaces),
        **(extra_env or {}),
    }
    return ManagedProcess(
        name,
        [sys.executable, "-m", "boundary_operator.main", "run"],
        log_path=log_dir / f"{name}.log",
        env=env,
    )


def pod_runner_process(
    env_file: Path, state_dir: Path, log_dir: Path, namespace: str, pod: str
) -> ManagedProcess:
    return ManagedProcess(
        f"pod-{namespace}-{pod}",
        [
            sys.executable,
            "-m",
            "boundary_devstack.podrunner",
            f"{namespace}/{pod}",
            "--env-file",
            str(env_file),
            "--state-dir",
            str(state_dir),
        ],
        log_path=log_dir / f"pod-{namespace}-{pod}.log",
    )
