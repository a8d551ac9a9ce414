"""`DEMO_EXIT=1 make demo` runs the whole walkthrough and exits 0 only when every step worked."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_every_step_and_exits_zero() -> None:
    env = {**os.environ, "DEMO_EXIT": "1"}
    result = subprocess.run(
        ["make", "--no-print-directory", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for number in range(1, 7):
        assert f"[demo {number}/6]" in output
    assert "curl http://web.demo.boundary/ -> 'hello from the web Service, through Boundary'" in (
        output
    )
    assert "psql -> 'hello from app on 10.96.100.20/32'" in output
    assert "[demo] every step worked." in output
