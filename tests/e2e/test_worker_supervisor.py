"""A real Boundary worker under boundary-worker-supervisor (images/worker-supervisor), as the
worker image runs it, against the local stack's controller, with the official `boundary connect`
carrying a stream to an echo server: a changed worker.hcl reaches the running worker (SIGHUP)
and its open connection survives; SIGTERM drains (no new session, the open connection served,
exit once it ends); the drain timeout ends a drain that outlasts it. And the egress filter the
operator writes, evaluated by the real controller, leaves out a worker marked draining.

tests/kind repeats the whole of it with the operator, in real pods."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from boundary_api import BoundaryClient, BoundaryError
from boundary_devstack.clients import BoundaryCLI
from boundary_devstack.echo import EchoServer, StreamBroken, stream_through_boundary
from boundary_devstack.stack import StackEnv, wait_for
from boundary_devstack.workers import WorkerProcess
from boundary_operator.services.desired import SyncSettings, desired_targets

REPO = Path(__file__).resolve().parents[2]
ACTIVE_CONNECTIONS = "boundary_worker_proxy_websocket_active_connections"

StartWorker = Callable[..., Awaitable[WorkerProcess]]


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images/worker-supervisor, built as the Containerfile builds it."""
    binary = tmp_path_factory.mktemp("supervisor") / "boundary-worker-supervisor"
    subprocess.run(
        ["go", "build", "-trimpath", "-o", str(binary), "."],
        cwd=REPO / "images" / "worker-supervisor",
        env={**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"},
        check=True,
        timeout=300,
    )
    return binary


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


def operator_filter(tag: str) -> str:
    """The egress filter the operator writes for a Service of namespace `tag` (any worker of
    the namespace), as services/desired.py builds it."""
    service = {
        "metadata": {"name": "echo", "namespace": tag, "uid": "u", "annotations": {}},
        "spec": {"ports": [{"port": 7}]},
    }
    desired = desired_targets(
        service, SyncSettings("e2e", default_scope="p_x"), secrets={}, worker_names=set()
    )
    return desired.targets[0].egress_worker_filter


@pytest_asyncio.fixture(loop_scope="session")
async def start_worker(
    boundary: BoundaryClient,
    stack_env: StackEnv,
    supervisor: Path,
    target: str,
    tmp_path: Path,
    tag: str,
) -> AsyncIterator[StartWorker]:
    """Registers a worker with the tags the operator would render for namespace `tag`, runs it
    under the supervisor, and waits until the controller places sessions of `target` on it."""
    started: list[tuple[WorkerProcess, str]] = []

    async def start(drain_timeout: str = "5m") -> WorkerProcess:
        created = await boundary.workers.create_controller_led(f"e2e-sup-{tag}-{len(started)}")
        worker = WorkerProcess(
            boundary_bin=Path(stack_env.values["STACK_BIN"]) / "boundary",
            directory=tmp_path / f"worker-{len(started)}",
            upstream=stack_env.values["BOUNDARY_CLUSTER_ADDR"],
            activation_token=created.controller_generated_activation_token.get_secret_value(),
            tags={"type": ["kubernetes"], "namespace": [tag]},
            supervisor=supervisor,
            drain_timeout=drain_timeout,
        )
        started.append((worker, created.id))
        worker.start()
        await until(lambda: _placed(boundary, target, f"{worker.host}:{worker.proxy_port}"), 60)
        return worker

    yield start
    for worker, worker_id in started:
        worker.stop()
        with contextlib.suppress(BoundaryError):
            await boundary.workers.delete(worker_id)


@pytest_asyncio.fixture(loop_scope="session")
async def target(
    boundary: BoundaryClient, stack_env: StackEnv, echo: EchoServer, tag: str
) -> AsyncIterator[str]:
    created = await boundary.targets.create_tcp(
        stack_env.values["BOUNDARY_PROJECT_ID"],
        f"e2e-sup-{tag}",
        address="127.0.0.1",
        default_port=echo.port,
        egress_worker_filter=operator_filter(tag),
    )
    yield created.id
    await boundary.targets.delete(created.id)


def authorize(cli: BoundaryCLI, target: str) -> Callable[[], str]:
    def token() -> str:
        item = cli("targets", "authorize-session", "-id", target)["item"]
        return str(item["authorization_token"])

    return token


async def worker_id_of(boundary: BoundaryClient, worker: WorkerProcess) -> str:
    for item in await boundary.workers.list():
        if item.address == f"{worker.host}:{worker.proxy_port}":
            return item.id
    raise AssertionError("the worker is not registered")


async def placed_on(boundary: BoundaryClient, target: str) -> list[str]:
    """The workers a new session may use ([] when the controller finds none)."""
    try:
        session = await boundary.sessions.authorize(target)
    except BoundaryError as refused:
        if "No workers are available" in refused.message:
            return []
        raise
    await boundary.sessions.cancel(session.session_id)
    return session.data.worker_addresses


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until check() held; fails after `timeout`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, f"not within {timeout:.0f} s"
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def active_connections(worker: WorkerProcess) -> float:
    for line in worker.metrics().splitlines():
        if line.startswith(ACTIVE_CONNECTIONS + " "):
            return float(line.split()[1])
    raise AssertionError(f"{ACTIVE_CONNECTIONS} is not among the worker's metrics")


async def test_the_operators_filter_leaves_out_a_worker_marked_draining(
    boundary: BoundaryClient, start_worker: StartWorker, target: str
) -> None:
    worker = await start_worker()
    address = f"{worker.host}:{worker.proxy_port}"
    worker_id = await worker_id_of(boundary, worker)
    current = await boundary.workers.read(worker_id)
    marked = await boundary.workers.add_tags(worker_id, current.version, {"draining": ["true"]})
    assert await placed_on(boundary, target) == []
    await boundary.workers.remove_tags(worker_id, marked.version, {"draining": ["true"]})
    assert await placed_on(boundary, target) == [address]


async def _placed(boundary: BoundaryClient, target: str, address: str) -> bool:
    return address in await placed_on(boundary, target)


async def test_a_changed_config_reaches_the_running_worker_and_its_stream_survives(
    boundary: BoundaryClient,
    boundary_cli: BoundaryCLI,
    start_worker: StartWorker,
    target: str,
    tmp_path: Path,
) -> None:
    worker = await start_worker()
    worker_id = await worker_id_of(boundary, worker)
    with stream_through_boundary(boundary_cli, authorize(boundary_cli, target), tmp_path) as stream:
        pid = worker.process.pid
        worker.tags = {**worker.tags, "reloaded": ["yes"]}
        worker.write_config()

        async def reported() -> bool:
            stream.exchange()  # the stream keeps flowing meanwhile
            item = await boundary.workers.read(worker_id)
            return item.config_tags.get("reloaded") == ["yes"]

        seconds = await until(reported, 30)
        print(f"the new tag was in the worker record {seconds:.1f} s after the change")
        for _ in range(20):
            stream.exchange()
        assert stream.exchanges >= 21
    assert worker.process.pid == pid, "reloaded, not restarted"
    assert worker.process.running()
    log = worker.process.log_path.read_text()
    assert "changed: reloading the worker (SIGHUP)" in log
    assert "Boundary server reload triggered" in log


async def test_sigterm_drains_the_worker_and_it_exits_once_its_stream_ends(
    boundary: BoundaryClient,
    boundary_cli: BoundaryCLI,
    start_worker: StartWorker,
    target: str,
    tmp_path: Path,
) -> None:
    worker = await start_worker()
    with stream_through_boundary(boundary_cli, authorize(boundary_cli, target), tmp_path) as stream:
        # A connection the worker misread on an earlier try of the stream may still be counted
        # for a moment (it closes it after the websocket close handshake).
        assert wait_for(lambda: active_connections(worker) == 1, 15), active_connections(worker)
        assert worker.process.pid is not None
        os.kill(worker.process.pid, signal.SIGTERM)  # the kubelet stopping the pod

        async def left_out() -> bool:
            stream.exchange()
            return await placed_on(boundary, target) == []

        # The worker reports itself shutting down with its next routing info (every 10 s).
        seconds = await until(left_out, 20)
        print(f"the controller left the draining worker out after {seconds:.1f} s")
        for _ in range(10):
            stream.exchange()
            assert await placed_on(boundary, target) == []
            await asyncio.sleep(0.3)
        assert worker.process.running(), "still draining while its stream is open"
        assert active_connections(worker) == 1
        assert stream.bytes_echoed >= 4096 * 12
        stream.close()  # the client is done: the worker's last connection ends
        assert wait_for(lambda: not worker.process.running(), 20), "no exit once drained"
    log = worker.process.log_path.read_text()
    assert "worker connections have drained" in log
    assert "drain timeout" not in log


async def test_the_drain_timeout_ends_a_drain_that_outlasts_it(
    boundary: BoundaryClient,
    boundary_cli: BoundaryCLI,
    start_worker: StartWorker,
    target: str,
    tmp_path: Path,
) -> None:
    worker = await start_worker(drain_timeout="4s")
    with stream_through_boundary(boundary_cli, authorize(boundary_cli, target), tmp_path) as stream:
        assert worker.process.pid is not None
        stopped = time.monotonic()
        os.kill(worker.process.pid, signal.SIGTERM)
        assert wait_for(lambda: not worker.process.running(), 30)
        seconds = time.monotonic() - stopped
        with pytest.raises(StreamBroken):
            stream.exchange()
        stream.close()
    print(f"the worker stopped {seconds:.1f} s after SIGTERM (drain timeout 4 s)")
    assert seconds >= 4
    assert "drain timeout (4s) reached" in worker.process.log_path.read_text()
