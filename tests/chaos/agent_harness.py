"""Shared pieces of the agent fault tests (no tests of its own): the real agent on loopback with
chosen upstreams, a dnsmasq upstream, Boundary targets with aliases, loopback backends served
from a background event loop, DNS and control-API probes, and figure reporting.

Everything listens on 127.0.0.0/8; the agent is always given explicit upstreams, so it never
forwards to the machine's resolvers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from boundary_api import BoundaryClient
from boundary_devstack.agent_process import LocalAgent, local_agent
from boundary_devstack.clients import BoundaryCLI
from boundary_devstack.dnsmasq import dnsmasq_process
from boundary_devstack.net import free_port, port_in_use
from boundary_devstack.stack import StackEnv, wait_for

T = TypeVar("T")


# ---------------------------------------------------------------- a background event loop


class BackgroundLoop:
    """An asyncio loop in a daemon thread: loopback servers and many-connection clients run here
    while the tests themselves stay synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="chaos-loop", daemon=True).start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@functools.cache
def background() -> BackgroundLoop:
    return BackgroundLoop()


def server_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def close_server(server: asyncio.Server) -> None:
    async def close() -> None:
        server.close()
        # Handlers of connections still open may be stuck in a read; do not wait for them.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)

    background().run(close())


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Endless data, 64 KiB at a time, until the peer goes away."""
    chunk = os.urandom(65536)
    try:
        while True:
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.contextmanager
def tcp_backend(kind: str, host: str = "127.0.0.1") -> Iterator[int]:
    """A loopback TCP backend on the background loop: "echo" or "stream". Yields its port."""
    handler = {"echo": _echo, "stream": _stream}[kind]

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handler, host, 0, backlog=1024)

    server = background().run(start())
    try:
        yield server_port(server)
    finally:
        close_server(server)


# ---------------------------------------------------------------- upstream dnsmasq


@contextlib.contextmanager
def dnsmasq(directory: Path, host: str, addresses: dict[str, str]) -> Iterator[int]:
    """A real dnsmasq on host answering `addresses` (domain -> IPv4) and nothing else (it has no
    upstream of its own). Yields its port."""
    port = free_port(host)
    process = dnsmasq_process(
        "dnsmasq", host=host, port=port, log_path=directory / "dnsmasq.log", addresses=addresses
    )
    process.start()
    name = next(iter(addresses))
    try:
        process.wait_healthy(lambda: query(host, port, name, timeout=1).answer != [], 30)
        yield port
    finally:
        process.stop()


# ---------------------------------------------------------------- the agent


@contextlib.contextmanager
def running_agent(
    directory: Path,
    stack: StackEnv,
    *,
    dns_host: str,
    prefix: str,
    upstreams: Sequence[str],
    settings: str = "",
    login: bool = True,
) -> Iterator[LocalAgent]:
    """The real agent process on loopback (unprivileged: a 127.x prefix), forwarding only to
    `upstreams`, with extra HCL `settings`; logged in as the stack's admin unless told not to.
    On the way out it must still be running: a crash fails the test that used it."""
    agent = local_agent(directory, dns_host, prefix=prefix, name=f"agent-{directory.name}")
    servers = ", ".join(f'"{u}"' for u in upstreams)
    with (directory / "agent.hcl").open("a") as config:
        config.write(f"override_upstream_dns_servers = [{servers}]\n{settings}")
    agent.start()
    try:
        if login:
            agent.login_as_admin(stack)
        yield agent
        assert agent.process.running(), f"the agent died:\n{agent.process.log_tail(40)}"
    finally:
        agent.stop()


NO_UPSTREAM = "127.0.0.1:9"
"""Nothing listens there: the upstream of agents that are only asked about aliases."""


def alias_agent_fixture(
    name: str, dns_host: str, prefix: str
) -> Callable[..., Iterator[LocalAgent]]:
    """A module-scoped `agent` fixture: the agent logged in as the admin, with no upstream."""

    @pytest.fixture(scope="module")
    def agent(
        stack_env: StackEnv, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[LocalAgent]:
        with running_agent(
            tmp_path_factory.mktemp(name),
            stack_env,
            dns_host=dns_host,
            prefix=prefix,
            upstreams=[NO_UPSTREAM],
        ) as local:
            yield local

    return agent


def agent_pid(agent: LocalAgent) -> int:
    assert agent.process.pid is not None
    return agent.process.pid


def proc_status_kib(pid: int, field: str = "VmRSS") -> int:
    """A /proc/<pid>/status figure in KiB (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def udp_drops(port: int) -> int:
    """The kernel's drop counter of the UDP socket on port (its receive buffer was full)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        if int(parts[1].rsplit(":", 1)[1], 16) == port:
            return int(parts[-1])
    return 0


def control(agent: LocalAgent, path: str, timeout: float = 5) -> dict[str, Any]:
    """GET the agent's control API (/v1/<path>) as ourselves."""
    url = f"http://127.0.0.1:{agent.control_port}/v1/{path}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def sessions_for(agent: LocalAgent, alias: str) -> list[dict[str, Any]]:
    return [s for s in control(agent, "sessions")["items"] if s["alias"] == alias]


def login_with_token(agent: LocalAgent, stack: StackEnv, token: str) -> None:
    """Hand the agent a given auth token, as `boundary-agent login` does with BOUNDARY_TOKEN."""
    agent.cli("login", "-addr", stack.values["BOUNDARY_ADDR"], extra_env={"BOUNDARY_TOKEN": token})


# ---------------------------------------------------------------- DNS probes


def query(
    host: str,
    port: int,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    timeout: float = 3,
) -> dns.message.Message:
    message = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    if tcp:
        return dns.query.tcp(message, host, port=port, timeout=timeout)
    return dns.query.udp(message, host, port=port, timeout=timeout)


def ask(agent: LocalAgent, name: str, rdtype: str = "A", **kwargs: Any) -> dns.message.Message:
    return query(agent.dns_host, agent.dns_port, name, rdtype, **kwargs)


def a_records(answer: dns.message.Message) -> list[str]:
    return [rr.to_text() for rrset in answer.answer for rr in rrset]


def resolve(agent: LocalAgent, name: str, **kwargs: Any) -> str:
    """The first A record the agent gives for name ("" on no answer, "SERVFAIL" etc. on error)."""
    try:
        answer = ask(agent, name, **kwargs)
    except (OSError, dns.exception.DNSException):
        return ""
    if answer.rcode() != dns.rcode.NOERROR:
        return dns.rcode.to_text(answer.rcode())
    records = a_records(answer)
    return records[0] if records else ""


def wait_alias(agent: LocalAgent, alias: str, prefix: str, port: int, timeout: float = 30) -> str:
    """The alias's local address once the agent answers it and listens there."""
    stem = prefix.split("0.0/")[0]
    assert wait_for(lambda: resolve(agent, alias).startswith(stem), timeout=timeout), (
        f"{alias} never resolved to {prefix}: {resolve(agent, alias)!r}\n"
        f"{agent.process.log_tail(20)}"
    )
    address = resolve(agent, alias)
    assert wait_for(lambda: port_in_use(address, port), timeout=timeout)
    return address


# ---------------------------------------------------------------- Boundary objects


def as_admin(stack: StackEnv, call: Callable[[BoundaryClient], Awaitable[T]]) -> T:
    """Run call(client) with a fresh client logged in as the stack's admin."""
    env = stack.values

    async def run() -> T:
        async with BoundaryClient(env["BOUNDARY_ADDR"]) as client:
            await client.authenticate_password(
                env["BOUNDARY_AUTH_METHOD_ID"], env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"]
            )
            return await call(client)

    return background().run(run(), timeout=120)


def admin_token(stack: StackEnv) -> tuple[str, str]:
    """A new admin auth token: (id, token)."""
    env = stack.values

    async def login() -> tuple[str, str]:
        async with BoundaryClient(env["BOUNDARY_ADDR"]) as client:
            token = await client.authenticate_password(
                env["BOUNDARY_AUTH_METHOD_ID"], env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"]
            )
            return token.id, token.token.get_secret_value()

    return background().run(login(), timeout=60)


def controller_sessions(cli: BoundaryCLI, stack: StackEnv, target_id: str) -> int:
    """How many sessions the controller ever authorized for a target (terminated included)."""
    listed = cli(
        "sessions",
        "list",
        "-scope-id",
        stack.values["BOUNDARY_PROJECT_ID"],
        "-include-terminated",
        "-filter",
        f'"/item/target_id" == "{target_id}"',
    )
    return len(listed.get("items") or [])


@dataclass(frozen=True)
class AliasedTarget:
    id: str
    alias: str
    alias_id: str
    port: int


@contextlib.contextmanager
def aliased_target(
    stack: StackEnv, label: str, port: int, **options: Any
) -> Iterator[AliasedTarget]:
    """A tcp target to 127.0.0.1:port with one alias `<label>.<random>.test`, deleted after."""
    suffix = uuid.uuid4().hex[:8]
    value = f"{label}.c{suffix}.test"

    async def create(client: BoundaryClient) -> AliasedTarget:
        target = await client.targets.create_tcp(
            stack.values["BOUNDARY_PROJECT_ID"],
            f"agent-chaos-{label}-{suffix}",
            address="127.0.0.1",
            default_port=port,
            aliases=[value],
            **options,
        )
        return AliasedTarget(target.id, value, target.aliases[0].id, port)

    target = as_admin(stack, create)
    try:
        yield target
    finally:

        async def delete(client: BoundaryClient) -> None:
            await client.targets.delete(target.id)
            with contextlib.suppress(Exception):  # usually gone with its target
                await client.aliases.delete(target.alias_id)

        as_admin(stack, delete)


# ---------------------------------------------------------------- TCP clients


HANDSHAKE_FLAKE = (
    "Boundary v0.21.1 workers now and then misread a proxied connection's first websocket frame "
    "(`received header with unexpected rsv bits set: false:false:true`; the official Go "
    "`boundary connect` hits it too), and when several connections open a brand-new session "
    "at once the losers of its activation race are closed with code 1011 (`session is not in a "
    "pending state`). The agent retries the first (protocol.HandshakeMisread) and lets a "
    "session's first handshake go alone (sessions.Sessions.handshake), so clients should never "
    "need to retry; they still may, so that a regression shows as a count here rather than a "
    "crash."
)


def echo(address: str, port: int, size: int = 65536, timeout: float = 30) -> str:
    """One connection through the agent to an echo backend, sending `size` random bytes:
    "ok" when they all come back intact, "closed early" when the connection ends before a single
    byte comes back (see HANDSHAKE_FLAKE), else what went wrong."""
    payload = os.urandom(size)
    received = bytearray()
    with (
        socket.create_connection((address, port), timeout=timeout) as sock,
        contextlib.suppress(ConnectionError),  # a reset is judged by what arrived
    ):
        sock.sendall(payload)
        while len(received) < size and (chunk := sock.recv(65536)):
            received += chunk
    if not received:
        return "closed early"
    if hashlib.sha256(received).digest() != hashlib.sha256(payload).digest():
        return f"corrupt: {len(received)} of {size} bytes, not the same"
    return "ok"


def echo_once(address: str, port: int, attempts: int = 4) -> int:
    """An intact echo through the agent, retrying connections closed early (HANDSHAKE_FLAKE);
    returns the attempts it took. Anything else fails the test."""
    for attempt in range(1, attempts + 1):
        outcome = echo(address, port)
        if outcome == "ok":
            return attempt
        assert outcome == "closed early", outcome
    raise AssertionError(f"{attempts} connections to {address}:{port} all closed early")


def echoing_connection(address: str, port: int, attempts: int = 4) -> socket.socket:
    """A connection through the agent, to an echo backend, that has echoed 1 KiB intact; one
    closed before its first byte (HANDSHAKE_FLAKE) is retried."""
    payload = bytes(range(256)) * 4
    for _ in range(attempts):
        sock = socket.create_connection((address, port), timeout=30)
        received = b""
        with contextlib.suppress(ConnectionError):
            sock.sendall(payload)
            while len(received) < len(payload) and (chunk := sock.recv(65536)):
                received += chunk
        if received == payload:
            return sock
        sock.close()
        assert not received, f"corrupt echo: {received[:64]!r}"
    raise AssertionError(f"{attempts} connections to {address}:{port} all closed early")


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[str, int, float]:
    """Read until the peer closes: ("eof" | "reset" | "timeout", bytes read, seconds taken)."""
    started = time.monotonic()
    total = 0
    sock.settimeout(1)
    while time.monotonic() - started < timeout:
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except ConnectionError:
            return "reset", total, time.monotonic() - started
        if not chunk:
            return "eof", total, time.monotonic() - started
        total += len(chunk)
    return "timeout", total, time.monotonic() - started


# ---------------------------------------------------------------- figures


@contextlib.contextmanager
def figures_of(
    record_property: Callable[[str, object], None], tmp_path: Path, name: str
) -> Iterator[dict[str, Any]]:
    """A dict the test fills with its figures, kept when the block ends (even by a failure): a
    JSON file under the test's tmp dir, and junit properties."""
    figures: dict[str, Any] = {}
    try:
        yield figures
    finally:
        (tmp_path / f"{name}.json").write_text(json.dumps(figures, indent=1, default=str))
        for key, value in figures.items():
            record_property(key, value)
