"""images/worker-supervisor with a small child that reports the signals it gets: what reaches the
worker and when, and the exit status passed back. tests/e2e/test_worker_supervisor.py runs it
with the real Boundary worker; this is the quick check of its rules."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import signal, sys, time
def report(number, _):
    print(signal.Signals(number).name, flush=True)
    if number == signal.SIGTERM:
        report.terms += 1
        if report.terms == int(sys.argv[1]):
            sys.exit(7)
report.terms = 0
for name in ("SIGHUP", "SIGTERM", "SIGUSR2"):
    signal.signal(getattr(signal, name), report)
print("started", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("supervisor") / "boundary-worker-supervisor"
    subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=REPO / "images" / "worker-supervisor",
        env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"},
        check=True,
        timeout=300,
    )
    return binary


class Supervised:
    def __init__(self, supervisor: Path, directory: Path, *flags: str, terms_to_exit: int) -> None:
        self.config = directory / "worker.hcl"
        self.config.write_text("tags = 1\n")
        self.output = directory / "output"
        self.process = subprocess.Popen(
            [
                str(supervisor),
                f"-watch={self.config}",
                "-poll=50ms",
                *flags,
                "--",
                sys.executable,
                "-c",
                CHILD,
                str(terms_to_exit),
            ],
            stdout=self.output.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stop() reaches the child too
        )
        assert self.wait_for("started")

    def lines(self) -> list[str]:
        return self.output.read_text().splitlines()

    def wait_for(self, line: str, count: int = 1, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lines().count(line) >= count:
                return True
            time.sleep(0.05)
        return False

    def rewrite(self, text: str) -> None:
        """As the kubelet swaps a ConfigMap volume: a new file renamed over the old one."""
        staged = self.config.with_suffix(".new")
        staged.write_text(text)
        staged.replace(self.config)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def supervised(supervisor: Path, tmp_path: Path) -> Iterator[list[Supervised]]:
    made: list[Supervised] = []
    yield made
    for item in made:
        item.stop()


def start(
    made: list[Supervised], supervisor: Path, tmp_path: Path, *flags: str, terms_to_exit: int = 1
) -> Supervised:
    item = Supervised(supervisor, tmp_path, *flags, terms_to_exit=terms_to_exit)
    made.append(item)
    return item


def test_a_changed_config_file_is_a_sighup_and_an_unchanged_rewrite_is_not(
    supervised: list[Supervised], supervisor: Path, tmp_path: Path
) -> None:
    item = start(supervised, supervisor, tmp_path)
    item.rewrite("tags = 1\n")  # the same content again: nothing to reload
    time.sleep(0.5)
    assert "SIGHUP" not in item.lines()
    item.rewrite("tags = 2\n")
    assert item.wait_for("SIGHUP")
    item.config.unlink()  # unreadable for a while: the running configuration stays
    time.sleep(0.3)
    item.rewrite("tags = 2\n")
    time.sleep(0.5)
    assert item.lines().count("SIGHUP") == 1
    item.rewrite("tags = 3\n")
    assert item.wait_for("SIGHUP", count=2)


def test_signals_are_passed_on_and_the_exit_status_comes_back(
    supervised: list[Supervised], supervisor: Path, tmp_path: Path
) -> None:
    item = start(supervised, supervisor, tmp_path)
    item.process.send_signal(signal.SIGUSR2)
    assert item.wait_for("SIGUSR2")
    item.process.send_signal(signal.SIGTERM)
    assert item.process.wait(timeout=10) == 7
    assert item.lines().count("SIGTERM") == 1


def test_the_drain_timeout_sends_a_second_sigterm_and_stops_reloads(
    supervised: list[Supervised], supervisor: Path, tmp_path: Path
) -> None:
    item = start(supervised, supervisor, tmp_path, "-drain-timeout=1s", terms_to_exit=2)
    started = time.monotonic()
    item.process.send_signal(signal.SIGTERM)
    assert item.wait_for("SIGTERM")
    item.rewrite("tags = 9\n")  # while stopping: no reload
    assert item.process.wait(timeout=10) == 7
    assert time.monotonic() - started >= 1
    assert item.lines().count("SIGTERM") == 2
    assert "SIGHUP" not in item.lines()
    assert any("drain timeout (1s) reached" in line for line in item.lines())


def test_a_worker_ended_by_a_signal_gives_128_plus_its_number(
    supervised: list[Supervised], supervisor: Path, tmp_path: Path
) -> None:
    item = start(supervised, supervisor, tmp_path)
    children = subprocess.run(
        ["pgrep", "-P", str(item.process.pid)], capture_output=True, text=True, check=True
    )
    os.kill(int(children.stdout.split()[0]), signal.SIGKILL)
    assert item.process.wait(timeout=10) == 128 + signal.SIGKILL
