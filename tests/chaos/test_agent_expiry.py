"""Clock and token edges. A session that expires (a target allowing 5 s): connections open at
expiry are closed cleanly, connections around the instant of expiry either work or close before
any byte, and the next one gets a newly authorized session. An auth token revoked under the
agent (deleted through the API): the alias is deferred to upstream, open connections are ended,
new ones are refused cleanly, and a new login brings it all back; rounds of this leak nothing."""

from __future__ import annotations

import datetime
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_harness import (
    admin_token,
    agent_pid,
    aliased_target,
    control,
    controller_sessions,
    dnsmasq,
    echo,
    echo_once,
    echoing_connection,
    figures_of,
    login_with_token,
    open_fds,
    read_until_closed,
    resolve,
    running_agent,
    sessions_for,
    tcp_backend,
    wait_alias,
)
from chaos_profile import pick

from boundary_devstack.agent_process import LocalAgent
from boundary_devstack.clients import BoundaryCLI
from boundary_devstack.stack import StackEnv, wait_for

SESSION_SECONDS = 5
EXPIRIES = pick(4, 2)
"""Sessions seen through to their expiry, one after the other."""
TOKEN_ROUNDS = pick(6, 2)
CLOSE_BOUND = 20.0
DNS_HOST, UPSTREAM_HOST = "127.0.67.53", "127.0.67.54"
PREFIX = "127.67.0.0/16"
DEFERRED = "192.0.2.99"
"""What the upstream dnsmasq answers for every *.test name, aliases included."""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dnsmasq(tmp_path_factory.mktemp("expiry-dns"), UPSTREAM_HOST, {"test": DEFERRED}) as port:
        yield f"{UPSTREAM_HOST}:{port}"


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    with tcp_backend("echo") as port:
        yield port


@pytest.fixture
def agent(
    request: pytest.FixtureRequest, stack_env: StackEnv, upstream: str, tmp_path: Path
) -> Iterator[LocalAgent]:
    """The agent, forwarding to the dnsmasq; logged in as the admin unless parametrized False."""
    with running_agent(
        tmp_path / "agent",
        stack_env,
        dns_host=DNS_HOST,
        prefix=PREFIX,
        upstreams=[upstream],
        login=getattr(request, "param", True),
    ) as local:
        yield local


@pytest.fixture
def figures(
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> Iterator[dict[str, Any]]:
    with figures_of(record_property, tmp_path, request.node.originalname) as collected:
        yield collected


def _expiration(session: dict[str, object]) -> float:
    text = str(session["expiration"])
    return datetime.datetime.fromisoformat(text).timestamp()


def _watch(sock: socket.socket, into: list[tuple[str, float]]) -> None:
    """How, and when, the peer ends the connection."""
    into.append((read_until_closed(sock, SESSION_SECONDS + CLOSE_BOUND)[0], time.time()))


def test_expired_session_is_replaced_by_a_new_one(
    stack_env: StackEnv,
    boundary_cli: BoundaryCLI,
    agent: LocalAgent,
    echo_port: int,
    figures: dict[str, Any],
) -> None:
    with aliased_target(
        stack_env, "expiring", echo_port, session_max_seconds=SESSION_SECONDS
    ) as target:
        address = wait_alias(agent, target.alias, PREFIX, target.port)
        session_ids: list[str] = []
        rounds = []
        for _ in range(EXPIRIES):
            attempts = echo_once(address, target.port)
            (session,) = sessions_for(agent, target.alias)
            session_ids.append(session["session_authorization"]["session_id"])
            expires = _expiration(session)
            # A connection held open across the expiry, watched from a thread.
            held = echoing_connection(address, target.port)
            watched: list[tuple[str, float]] = []
            watcher = threading.Thread(target=_watch, args=(held, watched))
            watcher.start()
            # Connections up to and past the instant of expiry: each works, or closes before a
            # byte; when (seconds from the expiry) those closed early were made is kept.
            outcomes: dict[str, int] = {}
            closed_early_at: list[float] = []
            while time.time() < expires + 1.5:
                made = time.time() - expires
                outcome = echo(address, target.port, size=4096, timeout=15)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                assert outcome in ("ok", "closed early"), outcome
                if outcome == "closed early":
                    closed_early_at.append(round(made, 2))
                time.sleep(0.1)
            watcher.join()
            held.close()
            ((how, closed_at),) = watched
            rounds.append(
                {
                    "first_connection_attempts": attempts,
                    "held_connection_at_expiry": how,
                    "held_closed_s_after_expiry": round(closed_at - expires, 2),
                    "connections_up_to_expiry": outcomes,
                    "closed_early_made_s_from_expiry": closed_early_at,
                }
            )
            assert how in ("eof", "reset"), rounds
        attempts = echo_once(address, target.port)
        (session,) = sessions_for(agent, target.alias)
        session_ids.append(session["session_authorization"]["session_id"])
        figures.update(
            session_max_seconds=SESSION_SECONDS,
            expiries=EXPIRIES,
            rounds=rounds,
            agent_session_ids=session_ids,
            sessions_authorized_controller=controller_sessions(boundary_cli, stack_env, target.id),
        )
        assert len(set(session_ids)) == EXPIRIES + 1, session_ids
        assert control(agent, "status")["status"] == "running"


@pytest.mark.parametrize("agent", [False], indirect=True, ids=["logged-out"])
def test_revoked_token_defers_dns_refuses_connections_and_recovers_on_login(
    stack_env: StackEnv,
    boundary_cli: BoundaryCLI,
    agent: LocalAgent,
    echo_port: int,
    figures: dict[str, Any],
) -> None:
    with aliased_target(stack_env, "revoked", echo_port) as target:
        assert resolve(agent, target.alias) == DEFERRED, "not logged in: deferred to upstream"
        pid = agent_pid(agent)
        rounds = []
        fds_first_login = 0
        for round_number in range(TOKEN_ROUNDS):
            token_id, token = admin_token(stack_env)
            login_with_token(agent, stack_env, token)
            address = wait_alias(agent, target.alias, PREFIX, target.port)
            assert control(agent, "status")["auth_token_id"] == token_id
            if not round_number:
                fds_first_login = open_fds(pid)
            echo_once(address, target.port)
            with echoing_connection(address, target.port) as held:
                boundary_cli("auth-tokens", "delete", "-id", token_id)
                revoked = time.monotonic()
                assert wait_for(lambda: resolve(agent, target.alias) == DEFERRED, timeout=15), (
                    resolve(agent, target.alias)
                )
                deferred_after = time.monotonic() - revoked
                how, _, _ = read_until_closed(held, CLOSE_BOUND)
            status = control(agent, "status")
            with socket.create_connection((address, target.port), timeout=30) as refused:
                refused_how, refused_bytes, refused_s = read_until_closed(refused, CLOSE_BOUND)
            rounds.append(
                {
                    "deferred_to_upstream_after_s": round(deferred_after, 2),
                    "open_connection": how,
                    "new_connection": refused_how,
                    "new_connection_closed_s": round(refused_s, 2),
                    "status_token_after": status["auth_token_id"],
                    "sessions_after": len(sessions_for(agent, target.alias)),
                    "agent_fds": open_fds(pid),
                }
            )
            assert status["auth_token_id"] == "", status
            assert status["status"] == "running", status
            assert any("rejected" in error for error in status["errors"]), status["errors"]
            assert how in ("eof", "reset"), rounds
            assert refused_how in ("eof", "reset"), rounds
            assert refused_bytes == 0, rounds
            assert not sessions_for(agent, target.alias), rounds
        # Recovery: a new login, and the alias is ours again.
        agent.login_as_admin(stack_env)
        address = wait_alias(agent, target.alias, PREFIX, target.port)
        figures.update(
            rounds=rounds,
            recovered_echo_attempts=echo_once(address, target.port),
            agent_fds_first_login=fds_first_login,
            agent_fds_end=open_fds(pid),
        )
        assert figures["agent_fds_end"] <= fds_first_login + 2, figures
