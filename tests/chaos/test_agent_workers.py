"""Worker faults under a transfer through the agent: an extra real `boundary server` worker
(the dev controller's own worker cannot be killed) is the only one a target's egress filter
selects; a client streams from a loopback backend through the agent and that worker, and the
worker is killed (SIGKILL) or stopped mid-stream. A first SIGTERM only starts Boundary's
graceful shutdown, which lets open connections drain (the stream must keep flowing); a second
one stops the worker for good.

The client must see a clean close (EOF or reset) within a bound, never a hang; the agent must
stay up with its control API answering; a new connection to the dead worker's alias must fail
just as cleanly; another alias, through the dev worker, must keep working; and once the target
admits the dev worker too, the dead worker's alias must work again through it, the worker still
dead: the agent leaves a session whose worker is gone for a new one."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from agent_harness import (
    agent_pid,
    alias_agent_fixture,
    aliased_target,
    as_admin,
    control,
    echo_once,
    figures_of,
    proc_status_kib,
    read_until_closed,
    sessions_for,
    tcp_backend,
    wait_alias,
)
from chaos_profile import pick

from boundary_api import BoundaryClient
from boundary_devstack.agent_process import LocalAgent
from boundary_devstack.stack import StackEnv
from boundary_devstack.workers import WorkerProcess

MIB_BEFORE_FAULT = pick(256, 16)
CLOSE_BOUND = 30.0
"""Seconds within which the client must see its connection end once the worker is gone."""
DNS_HOST, PREFIX = "127.0.65.53", "127.65.0.0/16"
DEV_WORKER = '"dev" in "/tags/type"'
"""The dev controller's own worker (its tags: type = [dev, local])."""


@pytest.fixture(scope="module")
def backends() -> Iterator[tuple[int, int]]:
    """(endless stream port, echo port) on loopback."""
    with tcp_backend("stream") as stream, tcp_backend("echo") as echo:
        yield stream, echo


agent = alias_agent_fixture("workers-agent", DNS_HOST, PREFIX)


@pytest.fixture(scope="module")
def dev_worker_alias(
    stack_env: StackEnv, agent: LocalAgent, backends: tuple[int, int]
) -> Iterator[tuple[str, int]]:
    """An alias to the echo backend through the dev controller's own worker: (address, port)."""
    with aliased_target(
        stack_env, "devworker", backends[1], egress_worker_filter=DEV_WORKER
    ) as target:
        yield wait_alias(agent, target.alias, PREFIX, target.port), target.port


@pytest.fixture
def extra_worker(stack_env: StackEnv, tmp_path: Path) -> Iterator[tuple[WorkerProcess, str]]:
    """A real worker registered controller-led, with a tag of its own: (worker, tag)."""
    tag = f"agentchaos{uuid.uuid4().hex[:8]}"

    async def register(client: BoundaryClient) -> tuple[str, str]:
        created = await client.workers.create_controller_led(f"agent-chaos-{tag}")
        return created.id, created.controller_generated_activation_token.get_secret_value()

    worker_id, token = as_admin(stack_env, register)
    worker = WorkerProcess(
        boundary_bin=Path(stack_env.values["STACK_BIN"]) / "boundary",
        directory=tmp_path / "worker",
        upstream=stack_env.values["BOUNDARY_CLUSTER_ADDR"],
        activation_token=token,
        tags={"type": [tag]},
    )
    try:
        worker.start()
        yield worker, tag
    finally:
        kill_for_good(worker)

        async def delete(client: BoundaryClient) -> None:
            await client.workers.delete(worker_id)

        as_admin(stack_env, delete)


def kill_for_good(worker: WorkerProcess) -> None:
    """SIGKILL and reap: a worker's own shutdown idles ~10 s after its connections drain."""
    if worker.process.running() and worker.process.pid is not None:
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.stop()


def stream_until(sock: socket.socket, size: int, timeout: float = 120) -> float:
    """Read `size` bytes of the endless stream; returns MiB/s."""
    sock.settimeout(timeout)
    started, total = time.monotonic(), 0
    while total < size:
        chunk = sock.recv(1 << 20)
        assert chunk, f"the stream ended after {total} bytes"
        total += len(chunk)
    return total / (1 << 20) / (time.monotonic() - started)


def streaming(address: str, port: int, attempts: int = 4) -> socket.socket | None:
    """A connection through the agent whose stream has begun; a connection closed before its
    first byte (HANDSHAKE_FLAKE) is retried. None when none begins."""
    for _ in range(attempts):
        sock = socket.create_connection((address, port), timeout=10)
        try:
            stream_until(sock, 1 << 16, timeout=10)
        except (OSError, AssertionError):
            sock.close()
            continue
        return sock
    return None


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGTERM"])
def test_worker_dies_mid_transfer(
    fault: str,
    stack_env: StackEnv,
    agent: LocalAgent,
    backends: tuple[int, int],
    dev_worker_alias: tuple[str, int],
    extra_worker: tuple[WorkerProcess, str],
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    worker, tag = extra_worker
    with (
        aliased_target(
            stack_env,
            "viaworker",
            backends[0],
            egress_worker_filter=f'"{tag}" in "/tags/type"',
            session_connection_limit=-1,
        ) as target,
        figures_of(record_property, tmp_path, f"worker-{fault}") as figures,
    ):
        address = wait_alias(agent, target.alias, PREFIX, target.port)
        first = streaming(address, target.port)
        assert first is not None, agent.process.log_tail(20)
        with first as sock:
            figures["mib_per_s_before_fault"] = round(stream_until(sock, MIB_BEFORE_FAULT << 20), 1)
            session = sessions_for(agent, target.alias)
            assert session, "the transfer runs in a session of the agent's"
            pid = worker.process.pid
            assert pid is not None
            os.killpg(pid, signal.Signals[fault])
            if fault == "SIGTERM":
                # Graceful: the open connection drains on; a second signal stops the worker.
                figures["mib_per_s_while_draining"] = round(stream_until(sock, 4 << 20, 10), 1)
                assert worker.process.running()
                os.killpg(pid, signal.SIGTERM)
            how, after, seconds = read_until_closed(sock, CLOSE_BOUND)
        figures.update(
            mib_before_fault=MIB_BEFORE_FAULT,
            client_saw=how,
            bytes_after_fault=after,
            closed_after_s=round(seconds, 2),
        )
        assert how in ("eof", "reset"), figures
        kill_for_good(worker)  # a second SIGTERM leaves it idling a while before it exits
        assert agent.process.running(), agent.process.log_tail(40)
        assert control(agent, "status")["status"] == "running"
        # A new connection to the dead worker's alias ends just as cleanly, and quickly.
        with socket.create_connection((address, target.port), timeout=30) as sock:
            how, got, seconds = read_until_closed(sock, CLOSE_BOUND)
        figures["dead_worker_new_connection"] = {"saw": how, "bytes": got, "s": round(seconds, 2)}
        assert how in ("eof", "reset"), figures
        assert got == 0, figures
        # The dev worker's alias is untouched.
        figures["dev_worker_echo_attempts"] = echo_once(*dev_worker_alias)
        # The target now admits the dev worker too: the agent must leave the dead worker's
        # session for a new one, and the alias carries a stream again, the worker still dead.
        as_admin(stack_env, lambda client: _admit_dev_worker(client, target.id, tag))
        widened = time.monotonic()
        attempts = 0
        while not _streams(address, target.port):
            attempts += 1
            assert time.monotonic() - widened < 60, agent.process.log_tail(20)
            time.sleep(0.5)
        figures["alias_back_through_dev_worker_s"] = round(time.monotonic() - widened, 1)
        figures["failed_connections_until_back"] = attempts
        # The session's dead worker is skipped for a live one (or a fresh session) within the
        # same connection: the client never sees the switch.
        assert attempts == 0, figures
        figures["agent_rss_kib"] = proc_status_kib(agent_pid(agent))
        figures["agent_errors"] = control(agent, "status")["errors"][:5]


async def _admit_dev_worker(client: BoundaryClient, target_id: str, tag: str) -> None:
    target = await client.targets.read(target_id)
    await client.targets.update(
        target_id, target.version, egress_worker_filter=f'"{tag}" in "/tags/type" or {DEV_WORKER}'
    )


def _streams(address: str, port: int) -> bool:
    sock = streaming(address, port, attempts=1)
    if sock is not None:
        sock.close()
    return sock is not None
