"""Child processes of the local stack: started in their own process group, logged to a file,
waited on until healthy, and stopped with SIGTERM, then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ComponentError(RuntimeError):
    """A stack component failed to start or to become healthy. The message names the component
    and carries the last lines of its log."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        message = f"{component}: {reason}"
        if log_tail:
            message += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(message)


def ensure_system_user(name: str) -> None:
    """A system user of that name (no home), created when missing; needs root."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)


SESSION_MARKER_NAME = "BK_TEST_SESSION"
"""The environment variable a test session marks its processes with (tests/conftest.py)."""


def processes_marked(marker: str) -> dict[int, str]:
    """Live processes whose environment (as they were started) holds `marker` ("NAME=value"),
    by pid, with their command line: what a test session started, daemons included."""
    found: dict[int, str] = {}
    wanted = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue  # gone meanwhile, or a zombie
        if command:
            found[int(entry.name)] = command
    return found


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    """Run as this user (via runuser) when we are root: PostgreSQL refuses to run as root."""
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        argv = list(self.argv)
        if self.user and os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self._popen = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.cwd,
                    # A process group of its own, so stop() reaches its children too and a
                    # Ctrl-C in the terminal reaches only us, who then stop it in order.
                    start_new_session=True,
                )
            except OSError as exc:
                raise ComponentError(self.name, f"cannot start {argv[0]}: {exc}") from exc

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.log_path, lines)

    def wait_healthy(
        self, check: Callable[[], bool], timeout: float, interval: float = 0.2
    ) -> None:
        """Poll check() until it returns True. Fails fast, with the log, when the process exits."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running():
                code = self._popen.returncode if self._popen else None
                raise ComponentError(self.name, f"exited with code {code}", self.log_tail())
            try:
                if check():
                    return
            except Exception:  # noqa: S110 - not healthy yet; the next poll tells
                pass
            if time.monotonic() > deadline:
                raise ComponentError(
                    self.name, f"not healthy after {timeout:.0f} s", self.log_tail()
                )
            time.sleep(interval)

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a crash, not a shutdown."""
        if self._popen is None or self._popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        self._popen.wait()

    def stop(self, grace: float = 10.0) -> None:
        if self._popen is None or self._popen.poll() is not None:
            return
        pgid = self._popen.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self._popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self._popen.wait()
        except ProcessLookupError:
            pass
        # Children that outlived their leader in the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
