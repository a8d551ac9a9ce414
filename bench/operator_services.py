"""Service sync: N annotated Services across 10 namespaces, created in process CREATORS at a
time (kubectl applies a List one item after another, a minute for a thousand: the operator would
be waiting for Services), converge into targets and aliases.
Baseline (the raw-API floor): the same targets and aliases created directly with boundary_api,
on the same HTTP library the operator uses, at the operator's concurrency (8), in the same run.
Each side runs RUNS times, turn about. Also (from the first run): Boundary API calls per Service
on first sync and in steady state, the operator's peak RSS, annotation-to-resolvable-alias
latency, and how long creating the Services took.

Convergence is watched through list-token deltas (each poll costs the controller only the
changes since the last one), with a login of its own, every POLL seconds.

    uv run python -m bench.operator_services [--services 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.api_create import stack
from bench.operator_workers import _login, _peak_rss_kib, _user, percentile
from bench.profiling import Profiled
from bench.results import RUNS, interleaved, row, spread, write
from boundary_api import Alias, BoundaryClient, Target
from boundary_devstack.clients import Kubectl
from boundary_devstack.operator_process import operator_process
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv
from boundary_operator.boundary_session import HTTP
from boundary_operator.services.sync import CONCURRENCY

NAMESPACES = 10
CREATORS = 16
"""Services created at once."""
POLL = 0.5
"""Seconds between convergence polls: two list calls each, within the controller's list quota
of 150 per 30 s per token."""
GONE_WITHIN = 300.0
"""Seconds the operator has to remove what it made once its Services are deleted."""


def _service(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"boundaryproject.io/expose": "true"},
        },
        "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": name}},
    }


class ClusterCount:
    """How many targets and aliases of one cluster name the controller holds, kept current by
    list-token deltas."""

    def __init__(self, boundary: BoundaryClient, cluster: str) -> None:
        self.boundary, self.cluster = boundary, cluster
        self._targets: dict[str, Target] = {}
        self._aliases: dict[str, Alias] = {}
        self._tokens: tuple[str | None, str | None] = (None, None)

    async def now(self) -> tuple[int, int]:
        targets = await self.boundary.targets.list(
            "global", recursive=True, list_token=self._tokens[0], page_size=1000
        )
        aliases = await self.boundary.aliases.list(
            "global", list_token=self._tokens[1], page_size=1000
        )
        targets.apply_to(self._targets)
        aliases.apply_to(self._aliases)
        self._tokens = (targets.list_token, aliases.list_token)
        return (
            sum(t.name.startswith(f"{self.cluster}/") for t in self._targets.values()),
            sum(a.value.endswith(f".{self.cluster}") for a in self._aliases.values()),
        )

    async def wait_for(self, wanted: tuple[int, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (found := await self.now()) != wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.cluster}: {found} targets and aliases, not {wanted}")
            await asyncio.sleep(POLL)


def _resync_lines(process: ManagedProcess) -> list[tuple[int, int]]:
    found = re.findall(r"since start: (\d+) writes, (\d+) reads", process.log_tail(5000))
    return [(int(w), int(r)) for w, r in found]


async def _next_resync(process: ManagedProcess, seen: int) -> tuple[int, int]:
    for _ in range(120):
        lines = _resync_lines(process)
        if len(lines) > seen:
            return lines[seen]
        await asyncio.sleep(0.5)
    raise RuntimeError("no resync logged within a minute")


async def through_operator(
    env: StackEnv,
    kubectl: Kubectl,
    count: int,
    samples: int,
    profiled: Profiled | None = None,
    extras: bool = True,
) -> tuple[dict[str, float], list[float]]:
    """Convergence through the operator; with `extras`, also call counts, alias latency and
    RSS; with `profiled`, the operator runs under it and apply-to-convergence is profiled."""
    cluster = f"b{uuid.uuid4().hex[:6]}"
    namespaces = [f"{cluster}-ns{i}" for i in range(NAMESPACES)]
    for namespace in namespaces:
        kubectl("create", "namespace", namespace)
    process = operator_process(
        env,
        Path(tempfile.mkdtemp()),
        cluster_name=cluster,
        namespaces=namespaces,
        extra_env={
            "BOUNDARY_OPERATOR_DEFAULT_SCOPE": env.values["BOUNDARY_PROJECT_ID"],
            "BOUNDARY_OPERATOR_RESYNC_SECONDS": "15",
        },
    )
    if profiled is not None:
        profiled.wrap(process)
    process.start()
    boundary = await _login(env)
    counted = ClusterCount(await _login(env), cluster)
    user = _user(env)
    result: dict[str, float] = {}
    latencies: list[float] = []
    try:
        await counted.now()
        await asyncio.sleep(4)
        items = [_service(f"s{i}", namespaces[i % NAMESPACES]) for i in range(count)]
        creators = asyncio.Semaphore(CREATORS)

        async def create(item: dict[str, Any]) -> None:
            async with creators:
                await user.apply(item)

        with profiled.phase("service_sync") if profiled else contextlib.nullcontext():
            started = time.perf_counter()
            await asyncio.gather(*(create(item) for item in items))
            result["services_created_s"] = time.perf_counter() - started
            await counted.wait_for((count, count), timeout=1800)
            result["converge_s"] = time.perf_counter() - started
        if extras:
            # The operator logs cumulative call counts at each resync. The first resync that
            # starts after convergence closes the first sync; the one after it is pure steady
            # state.
            first = await _next_resync(process, len(_resync_lines(process)))
            second = await _next_resync(process, len(_resync_lines(process)))
            result["first_sync_calls_per_service"] = (first[0] + first[1]) / count
            result["steady_writes_per_pass"] = float(second[0] - first[0])
            result["steady_reads_per_pass"] = float(second[1] - first[1])
            latencies = await _alias_latency(kubectl, boundary, namespaces[0], cluster, samples)
            result["peak_rss_mib"] = _peak_rss_kib(process.pid) / 1024
    finally:
        for namespace in namespaces:
            kubectl("delete", "services", "--all", "-n", namespace, timeout=600)
        try:
            await counted.wait_for((0, 0), timeout=GONE_WITHIN)  # the operator removes its own
        finally:
            process.stop()
            for namespace in namespaces:
                kubectl("delete", "namespace", namespace, "--wait=false")
            await boundary.aclose()
            await counted.boundary.aclose()
            await user.aclose()
    return result, latencies


async def _alias_latency(
    kubectl: Kubectl, boundary: BoundaryClient, namespace: str, cluster: str, samples: int
) -> list[float]:
    latencies = []
    listing = await boundary.users.list_resolvable_aliases("u_1234567890")
    token = listing.list_token
    for i in range(samples):
        name = f"lat{i}"
        alias = f"{name}.{namespace}.{cluster}"
        started = time.perf_counter()
        kubectl.apply(_service(name, namespace))
        while True:
            delta = await boundary.users.list_resolvable_aliases("u_1234567890", list_token=token)
            token = delta.list_token
            if any(a.value == alias for a in delta.items):
                break
            await asyncio.sleep(0.25)
        latencies.append(time.perf_counter() - started)
    return latencies


async def raw_floor(env: StackEnv, count: int) -> float:
    boundary = await _login(env)
    # The alias's last label: Boundary refuses one of digits only (a hex tag is, 1 time in 17).
    tag = f"f{uuid.uuid4().hex[:6]}"
    project = env.values["BOUNDARY_PROJECT_ID"]
    limit = asyncio.Semaphore(CONCURRENCY)
    created: list[tuple[str, str]] = []

    async def one(i: int) -> None:
        async with limit:
            target = await boundary.targets.create_tcp(
                project,
                f"floor-{tag}-{i}",
                address=f"s{i}.ns.svc.cluster.local",
                default_port=80,
                description="floor",
            )
            alias = await boundary.aliases.create(
                f"s{i}.floor.{tag}", destination_id=target.id, description="floor"
            )
            created.append((target.id, alias.id))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - started

    async def remove(target_id: str, alias_id: str) -> None:
        async with limit:
            await boundary.targets.delete(target_id)
            await boundary.aliases.delete(alias_id)

    await asyncio.gather(*(remove(t, a) for t, a in created))
    await boundary.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    firsts: list[tuple[dict[str, float], list[float]]] = []
    with stack() as env:
        kubectl = Kubectl(env)

        def ours() -> float:
            result, latencies = asyncio.run(
                through_operator(env, kubectl, args.services, args.samples, extras=not firsts)
            )
            firsts.append((result, latencies))
            print(f"operator: {result}", flush=True)
            return result["converge_s"]

        def floor() -> float:
            elapsed = asyncio.run(raw_floor(env, args.services))
            print(f"floor: {elapsed:.2f} s", flush=True)
            return elapsed

        converged, floors = interleaved(args.runs, ours, floor)
    rows = [
        row(
            "service sync",
            f"{args.services} Services converged",
            "s",
            converged,
            f"raw-API floor (targets+aliases, {HTTP}, concurrency {CONCURRENCY})",
            floors,
            higher_is_better=False,
        )
    ]
    first, latencies = firsts[0]
    extra = {
        **first,
        "services_created_s": spread([r["services_created_s"] for r, _ in firsts]),
        "converge_s": spread(converged),
        "floor_s": spread(floors),
        "alias_latency_p50_s": percentile(latencies, 0.5),
        "alias_latency_p95_s": percentile(latencies, 0.95),
    }
    out = Path(__file__).resolve().parent / "results"
    write(rows, out, "operator_services")
    (out / "operator_services.extra.json").write_text(json.dumps(extra, indent=2) + "\n")
    print((out / "operator_services.md").read_text())
    print(json.dumps(extra, indent=2))


if __name__ == "__main__":
    main()
