"""bench.profiling profiles a phase of a real child process, switched by signals (no timings
are asserted)."""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

from bench.profiling import Profiled
from boundary_devstack.net import free_port, tcp_open
from boundary_devstack.process import ManagedProcess

REPO = Path(__file__).resolve().parents[1]


def test_a_phase_of_a_child_process_is_profiled(tmp_path: Path) -> None:
    port = free_port()
    server = ManagedProcess(
        "http",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        log_path=tmp_path / "http.log",
        cwd=REPO,
    )
    profiled = Profiled(tmp_path / "profiles")
    profiled.wrap(server)
    assert list(server.argv[1:5]) == [
        "-m",
        "bench.profiling",
        "--out-dir",
        str(tmp_path / "profiles"),
    ]
    server.start()
    try:
        server.wait_healthy(lambda: tcp_open("127.0.0.1", port), 30, interval=0.05)
        with profiled.phase("http"):
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as response:
                    response.read()
        assert server.running()
    finally:
        server.stop()
    report = (tmp_path / "profiles" / "profile-http.txt").read_text()
    assert report.startswith("# profile-http: http.server")
    assert "## Self time by package" in report
    assert "## Self time by function" in report
    inclusive = report.split("## Inclusive time by function")[1].split("## Call tree")[0]
    # Self time per package depends on where the samples happen to land (CI once saw only
    # selectors and threading); the main thread's loop is inclusive in every sample.
    assert "serve_forever  socketserver.py" in inclusive
    assert "Call tree" in report
    assert "serve_forever" in report  # the main thread was sampled while the phase ran
    assert (tmp_path / "profiles" / "profile-http.html").read_text().lstrip().startswith("<")
