"""Real clients through a running boundary-agent: dig for an alias, curl and psql to the local
address it answers, and the credentials a session brokered, as its owner sees them. The demo
and the end-to-end tests (local stack and kind) share them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request

from boundary_devstack.stack import wait_for


class NotThroughBoundary(Exception):
    """A client could not get its answer through the agent; the message says which and why."""


def dig(dns_host: str, dns_port: int, name: str) -> str:
    """What the agent answers for name ("" when nothing)."""
    return subprocess.run(
        ["dig", "+short", "+time=2", "+tries=1", f"@{dns_host}", "-p", str(dns_port), name],
        capture_output=True,
        text=True,
        check=False,
        timeout=15,
    ).stdout.strip()


def resolve(dns_host: str, dns_port: int, alias: str, timeout: float = 30) -> str:
    """The local address the agent hands out for alias, once it has learnt the alias."""
    if not wait_for(lambda: dig(dns_host, dns_port, alias), timeout):
        raise NotThroughBoundary(f"the agent did not resolve {alias} within {timeout:.0f} s")
    return dig(dns_host, dns_port, alias)


def http_get(address: str, alias: str, port: int = 80, timeout: float = 60) -> str:
    """curl http://<alias>/ at the agent's address for it; the page."""
    answer = subprocess.run(
        [
            "curl",
            "-sSf",
            "--max-time",
            str(timeout),
            "--resolve",
            f"{alias}:{port}:{address}",
            f"http://{alias}:{port}/",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout + 5,
    )
    if answer.returncode != 0:
        raise NotThroughBoundary(f"curl http://{alias}/ failed: {answer.stderr.strip()}")
    return answer.stdout


def brokered_credentials(
    address: str, port: int, control_port: int, alias: str, timeout: float = 30
) -> tuple[str, str]:
    """Open the alias's session (a connection authorizes it), then read the username and
    password it brokered from the agent's control API, as the session's owner."""
    with socket.create_connection((address, port), timeout=20):
        pass

    def credentials() -> tuple[str, str] | None:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{control_port}/v1/sessions", timeout=5
        ) as response:
            items = json.loads(response.read())["items"]
        for item in items:
            if item["alias"] == alias:
                for credential in item["session_authorization"]["credentials"]:
                    values = credential.get("credential") or {}
                    return str(values["username"]), str(values["password"])
        return None

    if not wait_for(credentials, timeout):
        raise NotThroughBoundary(f"no brokered credentials for {alias} within {timeout:.0f} s")
    found = credentials()
    assert found is not None
    return found


def psql(address: str, username: str, password: str, dbname: str, query: str) -> str:
    """One query through the alias's local address; its single-line answer."""
    answer = subprocess.run(
        [
            "psql",
            "-X",
            "-A",
            "-t",
            f"host={address} port=5432 user={username} dbname={dbname}",
            "-c",
            query,
        ],
        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "20"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if answer.returncode != 0:
        raise NotThroughBoundary(f"psql through Boundary failed: {answer.stderr.strip()}")
    return answer.stdout.strip()
