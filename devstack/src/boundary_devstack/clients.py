"""Thin wrappers over the real command-line clients (kubectl and the boundary CLI), bound to a
running stack. Tests and the demo use these, so they exercise the same programs a user runs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boundary_devstack.net import free_port, tcp_open
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv

CONNECT_TRIES = 20
"""How many sessions a test or benchmark gives the official `boundary connect` before it fails.
A 0.21 worker can lose the first byte of the client's first websocket frame and close with 1002
("unexpected rsv bits"; see HandshakeMisread in the agent). The agent waits and tries again on
the same session; `boundary connect` cannot, and exits. Measured here with a fresh worker on an
idle machine: 10 of 30 sessions closed with the misread as their logged reason; two CI runs met
it 6 times in a row."""
CONNECT_RETRY_PAUSES_S = (0.5, 1.0, 2.0, 3.0)
"""Before the second, third, fourth try and every one after: the misread is likelier while
the machine is busy, and CI met it on every one of 6 quick tries twice, so later tries are
spread out to let a busy spell pass (over 20 tries the pauses add up to 51.5 s)."""


def connect_tries(count: int = CONNECT_TRIES) -> Iterator[int]:
    """1 to `count`, pausing before every try after the first (CONNECT_RETRY_PAUSES_S): the
    tries of a `boundary connect` run that the worker may cut short (CONNECT_TRIES)."""
    for attempt in range(1, count + 1):
        if attempt > 1:
            time.sleep(CONNECT_RETRY_PAUSES_S[min(attempt - 2, len(CONNECT_RETRY_PAUSES_S) - 1)])
        yield attempt


def connect_ended_because(log_path: Path) -> str:
    """The reason a stopped `boundary connect` logged for ending, on one line, so that a failed
    try explains itself in CI output, where the log file is out of reach."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    _, _, reason = text.partition("Reason:")
    return " ".join(reason.split())[:400] or "no reason logged"


class CommandFailed(RuntimeError):
    def __init__(self, argv: list[str], returncode: int, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{' '.join(argv[:4])} ... exited {returncode}: {stderr.strip()}")


def _run(
    argv: list[str], env: dict[str, str], input_text: str | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv,
        env=env,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise CommandFailed(argv, result.returncode, result.stderr or result.stdout)
    return result


@dataclass
class Kubectl:
    stack: StackEnv

    @property
    def binary(self) -> str:
        return str(Path(self.stack.values["STACK_BIN"]) / "kubectl")

    def __call__(self, *args: str, input_text: str | None = None, timeout: float = 60) -> str:
        env = {**os.environ, "KUBECONFIG": self.stack.values["KUBECONFIG"]}
        return _run([self.binary, *args], env, input_text, timeout).stdout

    def apply(self, manifest: dict[str, Any] | str) -> str:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self("apply", "-f", "-", input_text=text)

    def get_json(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json"))


@dataclass
class Helm:
    """The real helm, against the stack's apiserver."""

    stack: StackEnv

    def __call__(self, *args: str, timeout: float = 120) -> str:
        env = {**os.environ, "KUBECONFIG": self.stack.values["KUBECONFIG"]}
        binary = str(Path(self.stack.values["STACK_BIN"]) / "helm")
        return _run([binary, *args], env, None, timeout).stdout


@dataclass
class BoundaryCLI:
    """The official `boundary` CLI, authenticated once as the stack's admin. The token is kept in
    the child environment (`-token env://...`), never on a command line or in output."""

    stack: StackEnv
    _token: str | None = field(default=None, repr=False)

    @property
    def binary(self) -> str:
        return str(Path(self.stack.values["STACK_BIN"]) / "boundary")

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "BOUNDARY_ADDR": self.stack.values["BOUNDARY_ADDR"],
            "BOUNDARY_PASSWORD": self.stack.values["BOUNDARY_PASSWORD"],
            # `authenticate` would otherwise start the client cache daemon, which outlives the
            # test or benchmark that ran it (one was left running after `make bench`).
            "BOUNDARY_SKIP_CACHE_DAEMON": "true",
        }
        env.pop("BOUNDARY_TOKEN", None)
        if self._token:
            env["BK_BOUNDARY_TOKEN"] = self._token
        return env

    @property
    def token_id(self) -> str:
        """The id of the CLI's own auth token (at_<10 characters>), once logged in."""
        return "_".join((self._token or "").split("_")[:2])

    def login(self) -> None:
        result = _run(
            [
                self.binary,
                "authenticate",
                "password",
                "-auth-method-id",
                self.stack.values["BOUNDARY_AUTH_METHOD_ID"],
                "-login-name",
                self.stack.values["BOUNDARY_LOGIN_NAME"],
                "-password",
                "env://BOUNDARY_PASSWORD",
                "-keyring-type",
                "none",
                "-format",
                "json",
            ],
            self.env(),
            None,
            60,
        )
        self._token = json.loads(result.stdout)["item"]["attributes"]["token"]

    def __call__(self, *args: str, timeout: float = 60) -> Any:
        """Run `boundary ARGS -format json` with the admin token; return the parsed output."""
        if self._token is None:
            self.login()
        argv = [self.binary, *args, "-format", "json", "-token", "env://BK_BOUNDARY_TOKEN"]
        stdout = _run(argv, self.env(), None, timeout).stdout
        return json.loads(stdout) if stdout.strip() else None

    @contextlib.contextmanager
    def connect(
        self, authorization_token: str, log_path: Path, timeout: float = 30
    ) -> Iterator[int]:
        """`boundary connect` for a session authorized beforehand, listening on 127.0.0.1
        until the block ends: its port. Each TCP connection to it is one proxied connection,
        through the first worker the session names. The token goes through the environment."""
        port = free_port()
        process = ManagedProcess(
            "boundary-connect",
            [self.binary, "connect", "-listen-addr", "127.0.0.1", "-listen-port", str(port)],
            log_path=log_path,
            env={**self.env(), "BOUNDARY_CONNECT_AUTHZ_TOKEN": authorization_token},
        )
        process.start()
        try:
            process.wait_healthy(lambda: tcp_open("127.0.0.1", port), timeout)
            yield port
        finally:
            process.stop()
