"""boundary-agent as a real process on loopback, for tests, the demo and the benchmark: the
config it runs with, its control-API environment, and a login as the stack's admin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from boundary_devstack.net import free_port
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv

AGENT_CLI = [sys.executable, "-m", "boundary_agent.cli"]


@dataclass
class LocalAgent:
    directory: Path
    dns_host: str
    dns_port: int
    control_port: int
    process: ManagedProcess

    @property
    def state_file(self) -> Path:
        return self.directory / "run" / "state.json"

    @property
    def login_store(self) -> Path:
        """Where it keeps logins across restarts."""
        return self.directory / "logins"

    @property
    def env(self) -> dict[str, str]:
        """The environment a CLI needs to reach this agent's control API."""
        return {**os.environ, "BOUNDARY_CLIENT_AGENT_LISTENING_PORT": str(self.control_port)}

    def start(self) -> None:
        self.process.start()
        self.process.wait_healthy(self.state_file.exists, 30)

    def stop(self) -> None:
        self.process.stop()

    def cli(
        self, *args: str, extra_env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*AGENT_CLI, *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"boundary-agent {args[0]} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}\n"
                f"--- agent log ---\n{self.process.log_tail(20)}"
            )
        return result

    def login_as_admin(self, stack: StackEnv) -> None:
        values = stack.values
        self.cli(
            "login",
            "-addr",
            values["BOUNDARY_ADDR"],
            "-auth-method-id",
            values["BOUNDARY_AUTH_METHOD_ID"],
            "-login-name",
            values["BOUNDARY_LOGIN_NAME"],
            extra_env={"BOUNDARY_PASSWORD": values["BOUNDARY_PASSWORD"]},
        )


def local_agent(
    directory: Path,
    dns_host: str,
    *,
    upstream: str | None = None,
    prefix: str = "127.77.0.0/16",
    name: str = "boundary-agent",
    also_dns_on_ipv6_loopback: bool = False,
    refresh_interval: str = "2s",
    extra_config: str = "",
    dns_port: int | None = None,
) -> LocalAgent:
    """An agent listening for DNS on dns_host (a free port unless given; with
    also_dns_on_ipv6_loopback on [::1] at the same port too), handing out addresses from prefix
    (loopback by default)."""
    directory.mkdir(parents=True, exist_ok=True)
    dns_port, control_port = dns_port or free_port(dns_host), free_port()
    upstream_line = f'override_upstream_dns_servers = ["{upstream}"]\n' if upstream else ""
    listen = [f'"{dns_host}:{dns_port}"']
    if also_dns_on_ipv6_loopback:
        listen.append(f'"[::1]:{dns_port}"')
    config = directory / "agent.hcl"
    config.write_text(
        textwrap.dedent(f"""\
        dns_listen_addresses = [{", ".join(listen)}]
        v4_prefix = "{prefix}"
        control_listen_port = {control_port}
        state_file = "{directory}/run/state.json"
        login_store = "{directory}/logins"
        alias_refresh_interval = "{refresh_interval}"
    """)
        + upstream_line
        + extra_config
    )
    agent = LocalAgent(
        directory,
        dns_host,
        dns_port,
        control_port,
        ManagedProcess(
            name,
            [*AGENT_CLI, "run", "-config", str(config)],
            log_path=directory / "agent.log",
        ),
    )
    return agent
