"""`DEMO_EXIT=1 make demo` runs the walkthrough and exits 0 only when every step worked."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_to_completion_and_exits_zero(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_EXIT": "1", "STACK_ENV": str(tmp_path / "env")}
    result = subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for component in ("postgresql", "etcd", "kube-apiserver", "boundary", "kwok"):
        assert f"[stack] {component}" in result.stdout
    assert "DOWN" not in result.stdout
    assert not (tmp_path / "env").exists()
