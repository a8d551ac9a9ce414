"""The alias refresh must keep going whatever one round meets: a malformed answer, the controller
failing while the agent learns a target's port, a listener that cannot bind, an address the
interface refuses. Driven by a stub controller (stub_controller.py) and real loopback sockets."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import dns.message
import pytest
from stub_controller import StubController, alias, token

from boundary_agent.config import AgentConfig
from boundary_agent.daemon import Agent
from boundary_agent.sessions import ActiveSession
from boundary_api import PermissionDenied, Unavailable

UID = 4242
ALIAS = "db.stub.test"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _config(tmp_path: Path, **overrides: Any) -> AgentConfig:
    # A random 127.x/16 of its own, so that parallel runs never meet on an address.
    second = 100 + secrets.randbelow(150)
    settings: dict[str, Any] = {
        "v4_prefix": f"127.{second}.0.0/16",
        "state_file": str(tmp_path / "run" / "state.json"),
        "override_upstream_dns_servers": ["127.0.0.1:9"],
        "alias_refresh_interval": 0.01,
        "login_store": "",
        **overrides,
    }
    return AgentConfig.model_validate(settings)


@contextlib.asynccontextmanager
async def _agent(config: AgentConfig, controller: StubController) -> AsyncIterator[Agent]:
    """An agent that is not started (no DNS, no control API): its refresh and listeners only."""
    agent = Agent(config, connect=controller.connect)
    try:
        yield agent
    finally:
        await agent.listeners.close()


def _first_address(config: AgentConfig) -> str:
    return config.v4_prefix.replace("0.0/16", "0.2")


def _port_taken(config: AgentConfig) -> tuple[str, int, socket.socket]:
    """The alias's first local address, a port there, and a socket already listening on it
    (so the agent's listener cannot bind until it is closed)."""
    address = _first_address(config)
    port = _free_port(address)
    squatter = socket.socket()
    squatter.bind((address, port))
    squatter.listen()
    return address, port, squatter


async def _eventually(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_an_unexpected_error_in_one_round_does_not_end_the_refresh_loop(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    controller = StubController(aliases=[alias(ALIAS)], target_port=_free_port("127.0.0.1"))
    async with _agent(config, controller) as agent:
        await agent.add_token(UID, "http://controller.test", token())
        # A controller answer the client cannot parse raises its validation error (a
        # ValueError), not a BoundaryError.
        controller.list_error = ValueError("malformed listing")
        before = controller.calls["users.list_resolvable_aliases"]
        loop = asyncio.create_task(agent._refresh_forever())
        try:
            kept_going = await _eventually(
                lambda: controller.calls["users.list_resolvable_aliases"] >= before + 3
            )
            assert kept_going, "the refresh loop stopped after one failed round"
            assert not loop.done()
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        assert any("malformed listing" in e for e in agent.health.errors), agent.health.errors


async def test_the_controller_failing_while_a_session_tells_the_port_is_a_counted_failure(
    tmp_path: Path,
) -> None:
    """No read grant on the target: the port comes from a session, whose authorization fails."""
    config = _config(tmp_path)
    controller = StubController(
        aliases=[alias(ALIAS)],
        target_error=PermissionDenied("no read grant", status=403),
    )
    async with _agent(config, controller) as agent:
        controller.authorize_error = Unavailable("controller unreachable")
        await agent.add_token(UID, "http://controller.test", token())
        assert controller.calls["sessions.authorize"] == 1
        assert agent.health.failures == 1
        assert agent.lookup(ALIAS) is None, "no port, no listener: the name is not answered"
        # Refused outright (no grant to connect either): an error, not a crash.
        controller.authorize_error = PermissionDenied("no authorize grant", status=403)
        user = agent.users.get(UID)
        assert user is not None
        await agent.refresh_user(user)
        assert any("no authorize grant" in e for e in agent.health.errors)


async def test_a_listener_that_cannot_bind_is_reported_and_tried_again_next_round(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    address, port, squatter = _port_taken(config)
    controller = StubController(aliases=[alias(ALIAS)], target_port=port)
    async with _agent(config, controller) as agent:
        try:
            await agent.add_token(UID, "http://controller.test", token())
            assert agent.lookup(ALIAS) is None, "no listener: the name must not be answered"
            assert any(ALIAS in e and "Address already in use" in e for e in agent.health.errors), (
                agent.health.errors
            )
        finally:
            squatter.close()
        user = agent.users.get(UID)
        assert user is not None
        await agent.refresh_user(user)
        answered = agent.lookup(ALIAS)
        assert answered is not None
        assert answered.addresses == (address,)
        with socket.create_connection((address, port), timeout=2):
            pass  # the agent listens there now


async def test_a_name_sent_upstream_while_its_listener_could_not_bind_is_answered_once_it_listens(
    tmp_path: Path,
) -> None:
    """The resolver remembers that a name goes upstream; the listener coming up in a later
    round (the aliases unchanged) must make it forget that."""
    config = _config(tmp_path)
    address, port, squatter = _port_taken(config)
    controller = StubController(aliases=[alias(ALIAS)], target_port=port)
    query = dns.message.make_query(ALIAS, "A").to_wire()
    replies: list[bytes] = []
    loop = asyncio.get_running_loop()
    async with _agent(config, controller) as agent:
        try:
            await agent.add_token(UID, "http://controller.test", token())
            agent.resolver.respond(query, lambda a, _: replies.append(a), (), loop)
            assert agent.resolver.forwarded == 1, "no listener: the name went upstream"
            squatter.close()
            user = agent.users.get(UID)
            assert user is not None
            await agent.refresh_user(user)
            agent.resolver.respond(query, lambda a, _: replies.append(a), (), loop)
            assert agent.resolver.forwarded == 1
            answer = dns.message.from_wire(replies[-1])
            assert [r.to_text() for rrset in answer.answer for r in rrset] == [address]
        finally:
            squatter.close()
            agent.resolver.close()


async def test_adding_an_address_neither_blocks_the_loop_nor_hides_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prefix outside 127/8 needs `ip addr add`. Here `ip` is a stand-in that takes a while
    and fails as an unprivileged one does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ip = bin_dir / "ip"
    ip.write_text(
        "#!/bin/sh\nsleep 0.5\necho 'RTNETLINK answers: Operation not permitted' >&2\nexit 2\n"
    )
    ip.chmod(ip.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    config = _config(tmp_path, v4_prefix="100.127.0.0/16", interface_to_use="bkstub0")
    controller = StubController(aliases=[alias(ALIAS)], target_port=_free_port("127.0.0.1"))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async with _agent(config, controller) as agent:
        ticker = asyncio.create_task(tick())
        try:
            await agent.add_token(UID, "http://controller.test", token())
        finally:
            ticker.cancel()
        assert ticks >= 10, f"the event loop stood still while `ip` ran ({ticks} ticks)"
        assert any(
            "100.127.0.2" in e and "bkstub0" in e and "Operation not permitted" in e
            for e in agent.health.errors
        ), agent.health.errors
        assert agent.lookup(ALIAS) is None


async def test_cancelled_sessions_leave_no_task_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = 0

    async def cancel(session: ActiveSession) -> None:
        nonlocal cancelled
        cancelled += 1

    async with _agent(_config(tmp_path), StubController()) as agent:
        monkeypatch.setattr(agent.sessions, "_cancel", cancel)
        for round_ in range(50):
            fake = cast(ActiveSession, type("Session", (), {"uid": UID})())
            agent.sessions.active[(UID, f"a{round_}.test")] = fake
            agent.sessions.drop(lambda s: True)
        assert await _eventually(lambda: cancelled == 50)
        await asyncio.sleep(0)
        assert len(agent.sessions._tasks) == 0
