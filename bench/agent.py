"""boundary-agent against its baselines, in one run on one machine:

- DNS: queries per second (dnsperf) and p50/p99 latency (dnspython, one at a time) for alias
  answers and for forwarded queries; baseline: dnsmasq answering the same names itself, under
  the same load. Forwarding cost: agent-forwarded latency minus asking the upstream directly,
  beside the same for dnsmasq forwarding and for the CPython floor (bench.python_forwarder).
- Proxy: download throughput and first/second connection setup through the agent; baselines:
  `boundary connect` through the same worker to the same backend, and direct loopback.
- Memory: the agent's RSS idle, after the load, and after each of two bursts of 500
  concurrent proxied connections has closed (a high-water mark, or a leak).

Every timing row is the median of --runs runs on each side, taken turn about, with min and max.

    uv run python -m bench.agent [--mib 100] [--seconds 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query

from bench.api_create import stack
from bench.operator_workers import percentile
from bench.profiling import Profiled
from bench.results import RUNS, Row, interleaved, interleaved_samples, row, spread, write
from boundary_api import BoundaryClient
from boundary_devstack.agent_process import LocalAgent, local_agent
from boundary_devstack.clients import CONNECT_TRIES, BoundaryCLI, connect_tries
from boundary_devstack.dnsmasq import dnsmasq_process
from boundary_devstack.net import free_port, tcp_open
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv, wait_for

AGENT_HOST, UPSTREAM_HOST = "127.0.0.53", "127.0.0.54"
LATENCY_QUERIES = 1000
"""Queries per latency run, one at a time."""
FORWARDING_TURNS = 20
"""The forwarding cost is a difference of two p50s; each run takes each side's queries in this
many turns (bench.results.interleaved_samples). Taken 1,000 at a stretch, the upstream asked
directly measured from 0.170 to 0.249 ms at p50 in the three stretches of one run."""
BURST = 500
"""Concurrent connections per burst, each its own TLS connection through the worker."""
BURST_SETTLE_S = 3.0
"""After a burst, before its RSS is read: the agent closes what the burst left."""


def _rss_kib(pid: int | None, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


@contextmanager
def _processes(*processes: ManagedProcess) -> Iterator[None]:
    try:
        for process in processes:
            process.start()
        yield
    finally:
        for process in reversed(processes):
            process.stop()


def _dnsperf(host: str, port: int, names: list[str], seconds: int, work: Path) -> float:
    queries = work / f"q-{uuid.uuid4().hex[:6]}"
    queries.write_text("".join(f"{n} A\n" for n in names))
    out = subprocess.run(
        [
            "dnsperf",
            "-s",
            host,
            "-p",
            str(port),
            "-d",
            str(queries),
            "-l",
            str(seconds),
            "-c",
            "8",
            "-q",
            "200",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    match = re.search(r"Queries per second:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def _latencies(host: str, port: int, names: list[str], count: int) -> list[float]:
    samples = []
    for i in range(count):
        query = dns.message.make_query(names[i % len(names)], "A")
        started = time.perf_counter()
        dns.query.udp(query, host, port=port, timeout=5)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _download(url: str, resolve: str = "") -> tuple[float, float]:
    """(MiB/s, seconds to first byte) for one curl download to /dev/null."""
    argv = ["curl", "-sSf", "-o", "/dev/null", "-w", "%{speed_download} %{time_starttransfer}"]
    if resolve:
        argv += ["--resolve", resolve]
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=600
    ).stdout.split()
    return float(out[0]) / (1 << 20), float(out[1])


@dataclass
class RunningAgent:
    """An agent logged in as the stack's admin and resolving its aliases, with the backends and
    baselines measure() compares it with; running_agent() starts and stops them."""

    local: LocalAgent
    work: Path
    alias_names: list[str]
    forward_names: list[str]
    target_ids: list[str]
    http_port: int
    upstream_port: int
    baseline_port: int
    floor_port: int
    """bench.python_forwarder, forwarding to the same upstream."""
    rss_idle_kib: int
    """Started, before any login."""
    rss_logged_in_kib: int
    """Logged in, listening on every alias, before any load."""
    burst_address: str
    burst_port: int

    @property
    def dns_port(self) -> int:
        return self.local.dns_port

    def alias_download(self) -> tuple[float, float]:
        """_download() of the blob through the agent, by the first alias."""
        address = (
            dns.query.udp(
                dns.message.make_query(self.alias_names[0], "A"),
                AGENT_HOST,
                port=self.dns_port,
                timeout=2,
            )
            .answer[0][0]
            .to_text()
        )
        url = f"http://{self.alias_names[0]}:{self.http_port}/blob"
        return _download(url, f"{self.alias_names[0]}:{self.http_port}:{address}")


@contextmanager
def running_agent(
    env: StackEnv, mib: int, profiled: Profiled | None = None
) -> Iterator[RunningAgent]:
    """The agent (under `profiled` when given), a backend serving a `mib` MiB blob, an upstream
    dnsmasq, the dnsmasq baseline, and 20 targets with aliases, removed again afterwards."""
    work = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    (work / "www").mkdir()
    with (work / "www" / "blob").open("wb") as handle:
        for _ in range(mib):
            handle.write(os.urandom(1 << 20))
    tag = f"b{uuid.uuid4().hex[:6]}"
    alias_names = [f"svc{i}.{tag}.test" for i in range(20)]
    forward_names = [f"fwd{i}.upstream.test" for i in range(20)]
    http_port, upstream_port = free_port(), free_port(UPSTREAM_HOST)
    baseline_port, floor_port = free_port(UPSTREAM_HOST), free_port(UPSTREAM_HOST)
    http = ManagedProcess(
        "http",
        [
            sys.executable,
            "-m",
            "http.server",
            str(http_port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(work / "www"),
        ],
        log_path=work / "http.log",
    )
    upstream = dnsmasq_process(
        "dnsmasq-upstream",
        host=UPSTREAM_HOST,
        port=upstream_port,
        log_path=work / "up.log",
        addresses={"upstream.test": "192.0.2.7"},
        cache_size=10000,
    )
    # The baseline: dnsmasq answering the alias names itself, as the agent does.
    baseline = dnsmasq_process(
        "dnsmasq-baseline",
        host=UPSTREAM_HOST,
        port=baseline_port,
        log_path=work / "base.log",
        addresses={f"{tag}.test": "127.77.0.9"},
        servers={"upstream.test": f"{UPSTREAM_HOST}#{upstream_port}"},
        cache_size=0,
    )
    floor = ManagedProcess(
        "python-forwarder",
        [
            sys.executable,
            "-m",
            "bench.python_forwarder",
            UPSTREAM_HOST,
            str(floor_port),
            UPSTREAM_HOST,
            str(upstream_port),
        ],
        log_path=work / "floor.log",
    )
    burst_alias = f"burst.{tag}.test"
    backend = _ShortAnswers()
    local = local_agent(work / "agent", AGENT_HOST, upstream=f"{UPSTREAM_HOST}:{upstream_port}")
    agent = local.process
    if profiled is not None:
        profiled.wrap(agent)
    values = env.values

    async def make_targets() -> list[str]:
        async with BoundaryClient(values["BOUNDARY_ADDR"]) as client:
            await client.authenticate_password(
                values["BOUNDARY_AUTH_METHOD_ID"], "admin", "password"
            )
            ids = []
            for name, port in [*((n, http_port) for n in alias_names), (burst_alias, backend.port)]:
                target = await client.targets.create_tcp(
                    values["BOUNDARY_PROJECT_ID"],
                    name,
                    address="127.0.0.1",
                    default_port=port,
                    aliases=[name],
                )
                ids.append(target.id)
            return ids

    async def cleanup(target_ids: list[str]) -> None:
        async with BoundaryClient(values["BOUNDARY_ADDR"]) as client:
            await client.authenticate_password(
                values["BOUNDARY_AUTH_METHOD_ID"], "admin", "password"
            )
            for target_id in target_ids:
                target = await client.targets.read(target_id)
                await client.targets.delete(target_id)
                for alias_ref in target.aliases:
                    await client.aliases.delete(alias_ref.id)

    target_ids = asyncio.run(make_targets())
    try:
        with _processes(http, upstream, baseline, floor, agent), backend:
            agent.wait_healthy(local.state_file.exists, 30)
            time.sleep(1)  # settled: the control API and DNS are up
            rss_idle_kib = _rss_kib(agent.pid)
            local.login_as_admin(env)
            assert wait_for(lambda: bool(_resolve(local.dns_port, burst_alias)), timeout=30)
            burst_address = _resolve(local.dns_port, burst_alias)
            assert wait_for(functools.partial(_listening, backend.port, burst_address), timeout=30)
            time.sleep(1)
            yield RunningAgent(
                local,
                work,
                alias_names,
                forward_names,
                target_ids,
                http_port,
                upstream_port,
                baseline_port,
                floor_port,
                rss_idle_kib,
                _rss_kib(agent.pid),
                burst_address,
                backend.port,
            )
    finally:
        asyncio.run(cleanup(target_ids))
        (work / "www" / "blob").unlink()  # the logs stay, for a failed run


def measure(
    env: StackEnv, mib: int, seconds: int, runs: int = RUNS
) -> tuple[list[Row], dict[str, object]]:
    result: dict[str, object] = {}
    rows: list[Row] = []
    with running_agent(env, mib) as running:
        agent = running.local.process
        result["agent_rss_idle_mib"] = running.rss_idle_kib / 1024
        result["agent_rss_logged_in_mib"] = running.rss_logged_in_kib / 1024
        rows += _dns_rows(running, seconds, runs, result)
        rows += _proxy_rows(env, running, mib, runs, result)
        result["agent_rss_after_downloads_mib"] = _rss_kib(agent.pid) / 1024
        rows += _burst_rows(running, result)
        result["agent_rss_peak_mib"] = _rss_kib(agent.pid, "VmHWM") / 1024
    return rows, result


def _dns_rows(
    running: RunningAgent, seconds: int, runs: int, result: dict[str, object]
) -> list[Row]:
    """qps under dnsperf and p50/p99 one query at a time, alias answers and forwarded names,
    the agent against dnsmasq; and the forwarding cost, the agent against its upstream asked
    directly."""
    rows = []
    ours_at, theirs_at = (AGENT_HOST, running.dns_port), (UPSTREAM_HOST, running.baseline_port)
    for kind, names in (
        ("alias answers", running.alias_names),
        ("forwarded", running.forward_names),
    ):
        ours, theirs = interleaved(
            runs,
            functools.partial(_dnsperf, *ours_at, names, seconds, running.work),
            functools.partial(_dnsperf, *theirs_at, names, seconds, running.work),
        )
        rows.append(
            row(
                "agent DNS",
                f"{kind}, dnsperf 8 clients",
                "qps",
                ours,
                "dnsmasq (same names, same load)",
                theirs,
            )
        )
        lat_ours, lat_theirs = interleaved(
            runs,
            functools.partial(_latencies, *ours_at, names, LATENCY_QUERIES),
            functools.partial(_latencies, *theirs_at, names, LATENCY_QUERIES),
        )
        for pct in (0.5, 0.99):
            rows.append(
                row(
                    "agent DNS",
                    f"{kind}, p{int(pct * 100)} latency",
                    "ms",
                    [percentile(s, pct) for s in lat_ours],
                    "dnsmasq",
                    [percentile(s, pct) for s in lat_theirs],
                    higher_is_better=False,
                )
            )
    # The forwarding cost: what asking the agent adds to asking its upstream directly; and, in
    # the same rounds, what dnsmasq forwarding and the least a CPython forwarder does add.
    forwarders = {
        "agent": ours_at,
        "dnsmasq": theirs_at,
        "python_floor": (UPSTREAM_HOST, running.floor_port),
    }
    *forwarded, direct = interleaved_samples(
        runs,
        FORWARDING_TURNS,
        *(
            functools.partial(
                _latencies, *at, running.forward_names, LATENCY_QUERIES // FORWARDING_TURNS
            )
            for at in [*forwarders.values(), (UPSTREAM_HOST, running.upstream_port)]
        ),
    )
    via = dict(zip(forwarders, forwarded, strict=True))
    for baseline, samples in (
        ("its upstream dnsmasq asked directly", direct),
        ("bench.python_forwarder (the CPython floor)", via["python_floor"]),
    ):
        rows.append(
            row(
                "agent DNS",
                "forwarded, p50 latency",
                "ms",
                [percentile(s, 0.5) for s in via["agent"]],
                baseline,
                [percentile(s, 0.5) for s in samples],
                higher_is_better=False,
            )
        )
    for name, samples in via.items():
        prefix = "" if name == "agent" else f"{name}_"
        result[f"{prefix}forwarding_added_p50_ms"] = spread(
            [percentile(a, 0.5) - percentile(d, 0.5) for a, d in zip(samples, direct, strict=True)]
        )
    return rows


def _proxy_rows(
    env: StackEnv, running: RunningAgent, mib: int, runs: int, result: dict[str, object]
) -> list[Row]:
    """Download throughput, first-connection setup and second-connection time to first byte:
    the agent (a fresh session each run: pause and resume drop it) against `boundary connect`
    (a fresh process each run) and against the backend asked directly."""
    cli = BoundaryCLI(env)
    cli.login()
    connect_failures = 0

    def agent_run() -> tuple[float, float, float]:
        running.local.cli("pause")
        running.local.cli("resume")
        _, first_setup = running.alias_download()
        speed, ttfb = running.alias_download()
        return first_setup, speed, ttfb

    def connect_run() -> tuple[float, float, float]:
        nonlocal connect_failures
        setup, speed, ttfb, failures = _boundary_connect(cli, running.target_ids[0], running.work)
        connect_failures += failures
        return setup, speed, ttfb

    def direct_run() -> tuple[float, float, float]:
        speed, ttfb = _download(f"http://127.0.0.1:{running.http_port}/blob")
        return float("nan"), speed, ttfb

    ours: list[tuple[float, float, float]] = []
    connect: list[tuple[float, float, float]] = []
    direct: list[tuple[float, float, float]] = []
    for _ in range(runs):
        ours.append(agent_run())
        connect.append(connect_run())
        direct.append(direct_run())
    result["boundary_connect_failed_attempts"] = connect_failures
    connect_name = "boundary connect (same worker, same backend)"
    metrics = [
        (f"throughput, {mib} MiB download", "MiB/s", 1, [connect_name, "direct loopback"]),
        ("first connection setup (authorize + connect + first byte)", "s", 0, [connect_name]),
        ("second connection, time to first byte", "s", 2, [connect_name, "direct loopback"]),
    ]
    baselines = {connect_name: connect, "direct loopback": direct}
    return [
        row(
            "agent proxy",
            metric,
            unit,
            [sample[index] for sample in ours],
            baseline,
            [sample[index] for sample in baselines[baseline]],
            higher_is_better=unit == "MiB/s",
        )
        for metric, unit, index, names in metrics
        for baseline in names
    ]


def _burst_rows(running: RunningAgent, result: dict[str, object]) -> list[Row]:
    """The agent's RSS idle, and after each of two bursts of BURST concurrent proxied
    connections (each its own TLS connection to the worker) has closed: the same figure after
    the second burst as after the first is a high-water mark; more again would be a leak."""
    agent = running.local.process
    settled = []
    for burst in (1, 2):
        outcomes = _burst(running.burst_address, running.burst_port, BURST)
        if outcomes != {"ok": BURST}:
            raise RuntimeError(f"burst {burst} of {BURST} connections: {outcomes}")
        time.sleep(BURST_SETTLE_S)
        settled.append(_rss_kib(agent.pid) / 1024)
        result[f"agent_rss_after_burst_{burst}_mib"] = settled[-1]
    idle = [running.rss_idle_kib / 1024]
    return [
        row(
            "agent memory",
            "RSS idle",
            "MiB",
            idle,
            "the goal (issue 16)",
            [50.0],
            higher_is_better=False,
        ),
        row(
            "agent memory",
            f"RSS after a burst of {BURST} TLS connections has closed",
            "MiB",
            [settled[0]],
            "agent idle",
            idle,
            higher_is_better=False,
        ),
        row(
            "agent memory",
            f"RSS after a second burst of {BURST}",
            "MiB",
            [settled[1]],
            "after the first burst",
            [settled[0]],
            higher_is_better=False,
        ),
    ]


def _boundary_connect(
    cli: BoundaryCLI, target_id: str, work: Path, attempts: int = CONNECT_TRIES
) -> tuple[float, float, float, int]:
    """(first-connection setup, throughput, second-connection TTFB) through `boundary
    connect`. A run the worker cuts short (the handshake misread, CONNECT_TRIES) is retried
    with a fresh process; how many failed is reported."""
    for attempt in connect_tries(attempts):
        port = free_port()
        connect = ManagedProcess(
            "boundary-connect",
            [
                cli.binary,
                "connect",
                "-target-id",
                target_id,
                "-listen-port",
                str(port),
                "-token",
                "env://BK_BOUNDARY_TOKEN",
            ],
            log_path=work / f"connect-{attempt}.log",
            env=cli.env(),
        )
        started = time.perf_counter()
        try:
            with _processes(connect):
                # `boundary connect` authorizes before it listens: its setup is process start
                # to listening, plus the first connection's time to first byte.
                connect.wait_healthy(functools.partial(_listening, port), 30, interval=0.01)
                listening_after = time.perf_counter() - started
                _, first_ttfb = _download(f"http://127.0.0.1:{port}/blob")
                speed, ttfb = _download(f"http://127.0.0.1:{port}/blob")
                return listening_after + first_ttfb, speed, ttfb, attempt - 1
        except subprocess.CalledProcessError:
            continue
    raise RuntimeError(f"boundary connect failed {attempts} times; see {work}/connect-*.log")


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    return tcp_open(host, port)


def _resolve(dns_port: int, name: str) -> str:
    """The agent's first A record for name ("" when none)."""
    answer = dns.query.udp(dns.message.make_query(name, "A"), AGENT_HOST, port=dns_port, timeout=2)
    return answer.answer[0][0].to_text() if answer.answer else ""


class _ShortAnswers:
    """A loopback backend on its own event loop thread, for the bursts: each connection gets
    one line, answers 1 KiB and is closed. Listens with a backlog the burst cannot overflow."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096), self.loop
        ).result(10)
        self.port: int = self.server.sockets[0].getsockname()[1]

    @staticmethod
    async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            writer.write(b"x" * 1023 + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def __enter__(self) -> _ShortAnswers:
        return self

    def __exit__(self, *_: object) -> None:
        async def close() -> None:
            self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _burst(address: str, port: int, count: int) -> Counter[str]:
    """`count` connections through the agent at once, each asking for and reading its 1 KiB;
    how each ended."""

    async def one() -> str:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 60)
        except (OSError, TimeoutError) as exc:
            return f"connect: {type(exc).__name__}"
        try:
            writer.write(b"hello\n")
            data = await asyncio.wait_for(reader.read(), 120)
            return "ok" if len(data) == 1024 else f"{len(data)} bytes"
        except (OSError, TimeoutError) as exc:
            return type(exc).__name__
        finally:
            writer.close()

    async def all_of_them() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(count)))

    return Counter(asyncio.run(all_of_them()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    with stack() as env:
        rows, extra = measure(env, args.mib, args.seconds, args.runs)
    out = Path(__file__).resolve().parent / "results"
    write(rows, out, "agent")
    (out / "agent.extra.json").write_text(json.dumps(extra, indent=2) + "\n")
    print((out / "agent.md").read_text())
    print(json.dumps(extra, indent=2))


if __name__ == "__main__":
    main()
