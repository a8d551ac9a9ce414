"""Service sync: N annotated Services across 10 namespaces converge into targets and aliases.
Baseline (the raw-API floor): the same targets and aliases created directly with boundary_api at
the same concurrency (8), in the same run. Also: Boundary API calls per Service on first sync and
in steady state, the operator's peak RSS, and annotation-to-resolvable-alias latency.

    uv run python -m bench.operator_services [--services 1000]
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
from bench.operator_workers import _login, _peak_rss_kib, percentile
from bench.profiling import Profiled
from bench.results import row, write
from boundary_api import BoundaryClient
from boundary_devstack.clients import Kubectl
from boundary_devstack.operator_process import operator_process
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv

NAMESPACES = 10
CONCURRENCY = 8


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


async def _count_ours(boundary: BoundaryClient, cluster: str) -> tuple[int, int]:
    targets = await boundary.targets.list("global", recursive=True, page_size=1000)
    aliases = await boundary.aliases.list("global", page_size=1000)
    return (
        sum(t.name.startswith(f"{cluster}/") for t in targets.items),
        sum(a.value.endswith(f".{cluster}") for a in aliases.items),
    )


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
    env: StackEnv, kubectl: Kubectl, count: int, samples: int, profiled: Profiled | None = None
) -> tuple[dict[str, float], list[float]]:
    """Convergence, call counts, alias latency and RSS through the operator; with `profiled`,
    the operator runs under it and the apply-to-convergence phase is profiled."""
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
    result: dict[str, float] = {}
    latencies: list[float] = []
    try:
        await asyncio.sleep(4)
        items = [_service(f"s{i}", namespaces[i % NAMESPACES]) for i in range(count)]
        with profiled.phase("service_sync") if profiled else contextlib.nullcontext():
            started = time.perf_counter()
            kubectl(
                "apply",
                "-f",
                "-",
                input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                timeout=600,
            )
            while await _count_ours(boundary, cluster) != (count, count):  # noqa: ASYNC110
                await asyncio.sleep(2)
            result["converge_s"] = time.perf_counter() - started
        # Wait for a resync pass after convergence, then one more: the steady state.
        # The operator logs cumulative call counts at each resync. The first resync that starts
        # after convergence closes the first sync; the one after it is pure steady state.
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
        await asyncio.sleep(20)  # let the operator remove what it made
        process.stop()
        for namespace in namespaces:
            kubectl("delete", "namespace", namespace, "--wait=false")
        await boundary.aclose()
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
    tag = uuid.uuid4().hex[:6]
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
    for target_id, alias_id in created:
        await boundary.targets.delete(target_id)
        await boundary.aliases.delete(alias_id)
    await boundary.aclose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    with stack() as env:
        ours, latencies = asyncio.run(
            through_operator(env, Kubectl(env), args.services, args.samples)
        )
        floor = asyncio.run(raw_floor(env, args.services))
    rows = [
        row(
            "service sync",
            f"{args.services} Services converged",
            "s",
            [ours["converge_s"]],
            f"raw-API floor (targets+aliases, concurrency {CONCURRENCY})",
            [floor],
            higher_is_better=False,
        )
    ]
    extra = {
        **ours,
        "floor_s": floor,
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
