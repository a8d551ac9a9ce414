"""kubectl through Boundary as real people would run it, for the tests (local stack and kind):
Boundary users with password accounts, OS users each logged in to one boundary-agent, and
kubectl run as such an OS user, resolving aliases through the agent's DNS, with the kubeconfig
`boundary-agent kubeconfig` wrote and `boundary-agent kube-credential` as its credential plugin.

The machine's resolver is never touched: kubectl runs in a private mount namespace whose
/etc/resolv.conf names the agent's DNS (on a loopback address of its own, port 53)."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boundary_devstack.agent_process import AGENT_CLI, LocalAgent
from boundary_devstack.clients import BoundaryCLI
from boundary_devstack.process import ensure_system_user

EVERYONE_ROLE = "Authenticated User Grants"
"""`boundary dev`'s role for every logged-in user; it lets anyone authorize a session to any
target, which a real controller would not: `only_granted_sessions` takes that away."""


@dataclass(frozen=True)
class BoundaryUser:
    login_name: str
    password: str
    user_id: str


def create_boundary_user(cli: BoundaryCLI, auth_method_id: str, login_name: str) -> BoundaryUser:
    """A Boundary user with a password account of that login name."""
    password = uuid.uuid4().hex
    env_name = f"BK_PASSWORD_{login_name.upper().replace('-', '_')}"
    os.environ[env_name] = password
    try:
        account = cli(
            "accounts",
            "create",
            "password",
            "-auth-method-id",
            auth_method_id,
            "-login-name",
            login_name,
            "-password",
            f"env://{env_name}",
        )["item"]
    finally:
        del os.environ[env_name]
    user = cli("users", "create", "-scope-id", "global", "-name", login_name)["item"]
    cli("users", "add-accounts", "-id", user["id"], "-account", account["id"])
    return BoundaryUser(login_name, password, user["id"])


@contextmanager
def only_granted_sessions(cli: BoundaryCLI) -> Iterator[None]:
    """Every user keeps reading and listing targets (so they resolve every alias), but may
    authorize sessions only where a role grants it; restored afterwards."""
    roles = cli("roles", "list", "-scope-id", "global")["items"] or []
    (role,) = [r for r in roles if r.get("name") == EVERYONE_ROLE]
    before = cli("roles", "read", "-id", role["id"])["item"]["grant_strings"]
    narrowed = [
        g.replace("actions=list,read,authorize-session", "actions=list,read") for g in before
    ]
    cli("roles", "set-grants", "-id", role["id"], *(a for g in narrowed for a in ("-grant", g)))
    try:
        yield
    finally:
        cli("roles", "set-grants", "-id", role["id"], *(a for g in before for a in ("-grant", g)))


@dataclass(frozen=True)
class OSUser:
    """A local user who runs the agent's CLI and kubectl: it may run this checkout's programs,
    which live under root's home, through CAP_DAC_READ_SEARCH alone (file reads, nothing else)."""

    name: str
    home: Path

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    @classmethod
    def make(cls, name: str, parent: Path) -> OSUser:
        ensure_system_user(name)
        home = parent / name
        home.mkdir(parents=True, exist_ok=True)
        entry = pwd.getpwnam(name)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        home.chmod(0o700)
        return cls(name, home)

    def argv(self, *command: str) -> list[str]:
        entry = pwd.getpwnam(self.name)
        return [
            "setpriv",
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
            "--",
            *command,
        ]

    def env(self, agent: LocalAgent, **extra: str) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "KUBECONFIG": str(self.home / "kubeconfig"),
            "BOUNDARY_CLIENT_AGENT_LISTENING_PORT": str(agent.control_port),
            **extra,
        }

    def run(
        self, agent: LocalAgent, *command: str, timeout: float = 90, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*command),
            env=self.env(agent, **extra),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def login(self, agent: LocalAgent, addr: str, auth_method_id: str, user: BoundaryUser) -> None:
        result = self.run(
            agent,
            *AGENT_CLI,
            "login",
            "-addr",
            addr,
            "-auth-method-id",
            auth_method_id,
            "-login-name",
            user.login_name,
            BOUNDARY_PASSWORD=user.password,
        )
        assert result.returncode == 0, result.stderr

    def kubeconfig(self, agent: LocalAgent) -> subprocess.CompletedProcess[str]:
        """`boundary-agent kubeconfig`, merging into ~/kubeconfig."""
        return self.run(agent, *AGENT_CLI, "kubeconfig")

    def kube_credential(self, agent: LocalAgent, alias: str) -> dict[str, Any]:
        result = self.run(agent, *AGENT_CLI, "kube-credential", alias)
        assert result.returncode == 0, result.stderr
        credential: dict[str, Any] = json.loads(result.stdout)
        return credential

    def kubectl(
        self, agent: LocalAgent, kubectl: str, *args: str, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        """kubectl ARGS as this user, resolving names through the agent's DNS (port 53 on its
        own loopback address) in a private mount namespace."""
        resolv = self.home / "resolv.conf"
        resolv.write_text(f"nameserver {agent.dns_host}\noptions timeout:2 attempts:2\n")
        script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
        argv = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(resolv),
            *self.argv(kubectl, *args),
        ]
        return subprocess.run(
            argv,
            env=self.env(agent),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def free_loopback_for_dns() -> str:
    """A 127/8 address whose port 53 is free (UDP and TCP), for an agent's DNS that resolv.conf
    can name (it has no port)."""
    import socket

    for _ in range(50):
        host = f"127.53.{uuid.uuid4().int % 250 + 1}.{uuid.uuid4().int % 250 + 1}"
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind((host, 53))
        except OSError:
            continue
        return host
    raise RuntimeError("no loopback address with a free port 53")


def sessions_of(cli: BoundaryCLI, project: str, target_id: str) -> dict[str, str]:
    """Session id -> user id of every session (terminated ones too) to the target."""
    items = cli("sessions", "list", "-scope-id", project, "-include-terminated")["items"] or []
    return {s["id"]: s["user_id"] for s in items if s.get("target_id") == target_id}
