"""boundary-agent against its baselines, in one run on one machine:

- DNS: queries per second (dnsperf) and p50/p99 latency (dnspython, one at a time) for alias
  answers and for forwarded queries; baseline: dnsmasq answering the same names itself, under
  the same load. Forwarding cost: agent-forwarded latency minus asking the upstream directly.
- Proxy: download throughput and first/second connection setup through the agent; baselines:
  `boundary connect` through the same worker to the same backend, and direct loopback.
- Memory: the agent's RSS idle and after the load.

    uv run python -m bench.agent [--mib 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query

from bench.api_create import stack
from bench.operator_workers import percentile
from bench.profiling import Profiled
from bench.results import Row, row, write
from boundary_api import BoundaryClient
from boundary_devstack.agent_process import LocalAgent, local_agent
from boundary_devstack.clients import BoundaryCLI
from boundary_devstack.dnsmasq import dnsmasq_process
from boundary_devstack.net import free_port
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv, wait_for

AGENT_HOST, UPSTREAM_HOST = "127.0.0.53", "127.0.0.54"


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
    rss_idle_kib: int

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
    baseline_port = free_port(UPSTREAM_HOST)
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
            for name in alias_names:
                target = await client.targets.create_tcp(
                    values["BOUNDARY_PROJECT_ID"],
                    name,
                    address="127.0.0.1",
                    default_port=http_port,
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
        with _processes(http, upstream, baseline, agent):
            agent.wait_healthy(local.state_file.exists, 30)
            rss_idle_kib = _rss_kib(agent.pid)
            local.login_as_admin(env)

            def resolved() -> bool:
                answer = dns.query.udp(
                    dns.message.make_query(alias_names[-1], "A"),
                    AGENT_HOST,
                    port=local.dns_port,
                    timeout=2,
                )
                return bool(answer.answer)

            assert wait_for(resolved, timeout=30)
            yield RunningAgent(
                local,
                work,
                alias_names,
                forward_names,
                target_ids,
                http_port,
                upstream_port,
                baseline_port,
                rss_idle_kib,
            )
    finally:
        asyncio.run(cleanup(target_ids))
        (work / "www" / "blob").unlink()  # the logs stay, for a failed run


def measure(env: StackEnv, mib: int, seconds: int) -> tuple[list[Row], dict[str, float]]:
    result: dict[str, float] = {}
    rows: list[Row] = []
    with running_agent(env, mib) as running:
        agent, agent_port, work = running.local.process, running.dns_port, running.work
        alias_names, forward_names = running.alias_names, running.forward_names
        baseline_port, upstream_port = running.baseline_port, running.upstream_port
        result["agent_rss_idle_mib"] = running.rss_idle_kib / 1024
        # DNS
        for kind, names in (("alias answers", alias_names), ("forwarded", forward_names)):
            ours = [_dnsperf(AGENT_HOST, agent_port, names, seconds, work)]
            theirs = [_dnsperf(UPSTREAM_HOST, baseline_port, names, seconds, work)]
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
            lat_ours = _latencies(AGENT_HOST, agent_port, names, 2000)
            lat_theirs = _latencies(UPSTREAM_HOST, baseline_port, names, 2000)
            for pct in (0.5, 0.99):
                rows.append(
                    row(
                        "agent DNS",
                        f"{kind}, p{int(pct * 100)} latency",
                        "ms",
                        [percentile(lat_ours, pct)],
                        "dnsmasq",
                        [percentile(lat_theirs, pct)],
                        higher_is_better=False,
                    )
                )
        direct = _latencies(UPSTREAM_HOST, upstream_port, forward_names, 2000)
        via_agent = _latencies(AGENT_HOST, agent_port, forward_names, 2000)
        result["forwarding_cost_p50_ms"] = statistics.median(via_agent) - statistics.median(direct)
        # Proxy. First connection: curl's time to first byte covers authorize-session, TLS,
        # the websocket and handshake, and the backend's first byte.
        _, agent_first_setup = running.alias_download()
        agent_speed, agent_ttfb = running.alias_download()
        result["agent_rss_after_load_mib"] = _rss_kib(agent.pid) / 1024
        result["agent_rss_peak_mib"] = _rss_kib(agent.pid, "VmHWM") / 1024
        direct_speed, direct_ttfb = _download(f"http://127.0.0.1:{running.http_port}/blob")
        cli = BoundaryCLI(env)
        cli.login()
        connect_setup, connect_speed, connect_ttfb, failures = _boundary_connect(
            cli, running.target_ids[0], work
        )
        result["boundary_connect_failed_attempts"] = float(failures)
        rows += [
            row(
                "agent proxy",
                f"throughput, {mib} MiB download",
                "MiB/s",
                [agent_speed],
                "boundary connect (same worker, same backend)",
                [connect_speed],
            ),
            row(
                "agent proxy",
                f"throughput, {mib} MiB download",
                "MiB/s",
                [agent_speed],
                "direct loopback",
                [direct_speed],
            ),
            row(
                "agent proxy",
                "first connection setup (authorize + connect + first byte)",
                "s",
                [agent_first_setup],
                "boundary connect (process start to first byte)",
                [connect_setup],
                higher_is_better=False,
            ),
            row(
                "agent proxy",
                "second connection, time to first byte",
                "s",
                [agent_ttfb],
                "boundary connect",
                [connect_ttfb],
                higher_is_better=False,
            ),
            row(
                "agent proxy",
                "second connection, time to first byte",
                "s",
                [agent_ttfb],
                "direct loopback",
                [direct_ttfb],
                higher_is_better=False,
            ),
            row(
                "agent memory",
                "RSS after load",
                "MiB",
                [result["agent_rss_after_load_mib"]],
                "agent idle",
                [result["agent_rss_idle_mib"]],
                higher_is_better=False,
            ),
        ]
    return rows, result


def _boundary_connect(
    cli: BoundaryCLI, target_id: str, work: Path, attempts: int = 3
) -> tuple[float, float, float, int]:
    """(first-connection setup, throughput, second-connection TTFB) through `boundary
    connect`. A run the worker cuts short is retried with a fresh process; how many failed is
    reported. (Seen here: the worker closing a `boundary connect` handshake with "received
    header with unexpected rsv bits".)"""
    for attempt in range(attempts):
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
                return listening_after + first_ttfb, speed, ttfb, attempt
        except subprocess.CalledProcessError:
            continue
    raise RuntimeError(f"boundary connect failed {attempts} times; see {work}/connect-*.log")


def _listening(port: int) -> bool:
    from boundary_devstack.net import tcp_open

    return tcp_open("127.0.0.1", port)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    with stack() as env:
        rows, extra = measure(env, args.mib, args.seconds)
    out = Path(__file__).resolve().parent / "results"
    write(rows, out, "agent")
    (out / "agent.extra.json").write_text(json.dumps(extra, indent=2) + "\n")
    print((out / "agent.md").read_text())
    print(json.dumps(extra, indent=2))


if __name__ == "__main__":
    main()
