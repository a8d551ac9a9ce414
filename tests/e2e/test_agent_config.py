"""The real `boundary-agent run` process, with no controller (no stack needed): logging set by
the config file from the first line on, as the official Client Agent documents `log_file`,
`log_to_stdout` and `log_level`, and `control_listen_port` found by the CLI from the same file.
The routing itself is unit-tested in agent/tests/test_agent_logs.py."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from boundary_devstack.agent_process import AGENT_CLI
from boundary_devstack.net import free_port


@dataclass(frozen=True)
class Run:
    config: Path
    state_file: Path


def _write_config(directory: Path, extra: str) -> Run:
    dns_port, control_port = free_port(), free_port()
    config = directory / "agent.hcl"
    config.write_text(
        textwrap.dedent(f"""\
        dns_listen_addresses = ["127.0.0.1:{dns_port}"]
        override_upstream_dns_servers = ["127.0.0.1:9"]
        v4_prefix = "127.98.0.0/16"
        control_listen_port = {control_port}
        state_file = "{directory}/run/state.json"
        login_store = "{directory}/logins"
        """)
        + extra
    )
    return Run(config, directory / "run" / "state.json")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("BOUNDARY_CLIENT_AGENT_LISTENING_PORT", None)
    return env


def test_log_file_alone_from_the_first_line_and_the_cli_finds_the_port(tmp_path: Path) -> None:
    """log_to_stdout = false: the log goes to log_file alone, at the level asked for (in
    capitals, as the official documentation writes it) from the first line; and
    `boundary-agent status -config` reaches the control_listen_port the file names."""
    log_file = tmp_path / "logs" / "agent.log"
    run = _write_config(
        tmp_path, f'log_file = "{log_file}"\nlog_to_stdout = false\nlog_level = "DEBUG"\n'
    )
    output, status = _run_briefly(run, then=["status", "-config", str(run.config)])
    assert output == "", f"log_to_stdout = false, yet stdout got: {output!r}"
    text = log_file.read_text()
    assert "DNS on 127.0.0.1:" in text
    assert " DEBUG " in text, "log_level DEBUG applies from the start"
    assert log_file.stat().st_mode & 0o077 == 0, "the log file is the agent's user's alone"
    assert "Status:" in status
    assert "running" in status


def test_log_to_stdout_as_well_as_the_file(tmp_path: Path) -> None:
    log_file = tmp_path / "agent.log"
    run = _write_config(tmp_path, f'log_file = "{log_file}"\n')
    output, _ = _run_briefly(run)
    assert "DNS on 127.0.0.1:" in output
    assert "DNS on 127.0.0.1:" in log_file.read_text()


@pytest.mark.parametrize(
    ("extra", "running"), [("", "uvloop"), ('event_loop = "asyncio"\n', "asyncio")]
)
def test_the_agent_runs_on_uvloop_unless_its_config_says_asyncio(
    tmp_path: Path, extra: str, running: str
) -> None:
    """The start-up line names the loop actually running, not the field."""
    output, _ = _run_briefly(_write_config(tmp_path, extra))
    assert f"; event loop {running}" in output


def _run_briefly(run: Run, then: list[str] | None = None) -> tuple[str, str]:
    """Start the agent, wait until it runs, run `boundary-agent THEN` if given, and stop it:
    what the agent printed, and what THEN printed."""
    process = subprocess.Popen(
        [*AGENT_CLI, "run", "-config", str(run.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_env(),
        text=True,
    )
    printed = ""
    try:
        deadline = time.monotonic() + 30
        while not run.state_file.exists():
            if process.poll() is not None:
                raise AssertionError(process.communicate()[0])
            assert time.monotonic() < deadline, "the agent did not start in 30 s"
            time.sleep(0.05)
        if then is not None:
            result = subprocess.run(
                [*AGENT_CLI, *then], capture_output=True, text=True, timeout=30, env=_env()
            )
            assert result.returncode == 0, result.stdout + result.stderr
            printed = result.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    return output, printed
