"""Worker reconcile: from creating a BoundaryPKIWorker to its StatefulSet, its token Secret and
its Boundary worker all present, p50 and p95 over N resources; and the operator's peak RSS.
Baseline (the raw-API floor): the same Boundary worker creation and the same manifests applied
directly with the same clients, with no operator in between. Both sides create the resource
the same way (a server-side apply in process), apply the manifests in the same concurrent
rounds, and pause PACE before each create; each side runs RUNS times, turn about.

    uv run python -m bench.operator_workers [--count 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes.aio import watch
from kubernetes.aio.client import AppsV1Api
from kubernetes.aio.client.api_client import ApiClient

from bench.api_create import stack
from bench.profiling import Profiled
from bench.results import RUNS, Row, interleaved, row, spread, write
from boundary_api import BoundaryClient
from boundary_devstack.clients import Kubectl
from boundary_devstack.operator_process import operator_process
from boundary_devstack.stack import StackEnv
from boundary_operator.boundary_session import HTTP
from boundary_operator.kube import KubeClient, load_kubeconfig
from boundary_operator.naming import boundary_worker_name, token_secret_name
from boundary_operator.workers import builders
from boundary_operator.workers.spec import WorkerSpec

REPO = Path(__file__).resolve().parents[1]
PACE = 0.5
"""Seconds both sides wait before each create, so that what follows the previous one (the
operator's status, annotations and Events; on both sides the controller-manager starting its
pods) is not measured as part of the next: each sample is one create on a quiet stack, as a
user applying a resource sees it. Back to back, the operator's extra writes for one resource
(about 8, on the 2 cores it shares with the apiserver) slow the next one's applies."""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _login(env: StackEnv) -> BoundaryClient:
    """The stack's admin, on the HTTP library the operator uses."""
    client = BoundaryClient(env.values["BOUNDARY_ADDR"], http=HTTP)
    await client.authenticate_password(
        env.values["BOUNDARY_AUTH_METHOD_ID"],
        env.values["BOUNDARY_LOGIN_NAME"],
        env.values["BOUNDARY_PASSWORD"],
    )
    return client


def _spec(env: StackEnv) -> dict[str, Any]:
    return {"registration": {"initialUpstreams": [env.values["BOUNDARY_CLUSTER_ADDR"]]}}


def _resource(env: StackEnv, name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": _spec(env),
    }


def _user(env: StackEnv) -> KubeClient:
    """The client both sides create the resource with, as a user's tool would."""
    return KubeClient(load_kubeconfig(env.values["KUBECONFIG"]), field_manager="bench")


async def _watch_stateful_sets(
    kube: KubeClient, namespace: str, appeared: dict[str, asyncio.Future[float]]
) -> None:
    """When each StatefulSet of `namespace` first appears, from a watch. Polling added up to
    its interval to every sample (the floor times itself in process), and a GET every few
    milliseconds to the apiserver the operator shares the machine with."""
    async with ApiClient((await kube.credentials()).configuration) as api:
        stream = watch.Watch().stream(AppsV1Api(api).list_namespaced_stateful_set, namespace)
        async for event in stream:
            seen = appeared[event["raw_object"]["metadata"]["name"]]
            if event["type"] == "ADDED" and not seen.done():
                seen.set_result(time.perf_counter())


async def through_operator(
    env: StackEnv, kubectl: Kubectl, count: int, profiled: Profiled | None = None
) -> tuple[list[float], int]:
    """Create-to-registered times and peak RSS through the operator; with `profiled`, the
    operator runs under it and the phase of the creates is profiled."""
    namespace, cluster = f"bench-{uuid.uuid4().hex[:6]}", f"bench{uuid.uuid4().hex[:4]}"
    kubectl("create", "namespace", namespace)
    process = operator_process(
        env, Path(tempfile.mkdtemp()), cluster_name=cluster, namespaces=[namespace]
    )
    if profiled is not None:
        profiled.wrap(process)
    process.start()
    kube = _user(env)
    boundary = await _login(env)
    samples = []
    appeared = collections.defaultdict[str, asyncio.Future[float]](
        asyncio.get_running_loop().create_future
    )
    watching = asyncio.create_task(_watch_stateful_sets(kube, namespace, appeared))
    try:
        await asyncio.sleep(3)  # let the operator and the watch start
        with profiled.phase("worker_reconcile") if profiled else contextlib.nullcontext():
            for i in range(count):
                name = f"w{i}"
                await asyncio.sleep(PACE)
                started = time.perf_counter()
                await kube.apply(_resource(env, name, namespace))
                # The operator applies the StatefulSet after the round that wrote the token
                # Secret, which it writes once the Boundary worker is created (the token comes
                # from that call): the StatefulSet present means registered. Watching Boundary
                # instead would hit its list rate limit (150 per 30 s per token).
                samples.append(await asyncio.wait_for(appeared[name], timeout=60) - started)
                assert await kube.get("Secret", namespace, token_secret_name(name))
        registered = await boundary.workers.list(
            filter=f'"/item/name" matches "^{cluster}-{namespace}-w[0-9]+-0$"'
        )
        assert len(registered) == count, f"{len(registered)} of {count} workers registered"
        peak_rss_kib = _peak_rss_kib(process.pid)
        kubectl("delete", "bpw", "--all", "-n", namespace, "--wait=true", timeout=300)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        process.stop()
        await kube.aclose()
        await boundary.aclose()
        kubectl("delete", "namespace", namespace, "--wait=false")
    return samples, peak_rss_kib


async def raw_floor(env: StackEnv, kubectl: Kubectl, count: int) -> list[float]:
    namespace = f"floor-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    kube = _user(env)
    boundary = await _login(env)
    samples, created = [], []
    try:
        for i in range(count):
            name = f"w{i}"
            await asyncio.sleep(PACE)
            started = time.perf_counter()
            resource = await kube.apply(_resource(env, name, namespace))
            worker = await boundary.workers.create_controller_led(
                boundary_worker_name("floor", namespace, name, 0)
            )
            created.append(worker.id)
            ctx = builders.WorkerContext(
                name=name,
                namespace=namespace,
                uid=resource["metadata"]["uid"],
                spec=WorkerSpec.model_validate(_spec(env)),
                default_image="x",
            )
            token = worker.controller_generated_activation_token.get_secret_value()
            for manifests in builders.apply_rounds(builders.build_all(ctx, {f"{name}-0": token})):
                await asyncio.gather(*(kube.apply(m) for m in manifests))
            samples.append(time.perf_counter() - started)
    finally:
        for worker_id in created:
            await boundary.workers.delete(worker_id)
        await kube.aclose()
        await boundary.aclose()
        kubectl("delete", "namespace", namespace, "--wait=false")
    return samples


def _peak_rss_kib(pid: int | None) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def measure(count: int, runs: int) -> tuple[list[Row], dict[str, Any]]:
    rss: list[int] = []
    with stack() as env:
        kubectl = Kubectl(env)
        kubectl("apply", "-f", str(REPO / "crds"))

        def ours() -> list[float]:
            samples, peak = asyncio.run(through_operator(env, kubectl, count))
            rss.append(peak)
            print(f"operator: p50 {percentile(samples, 0.5):.4f} s", flush=True)
            return samples

        def floor() -> list[float]:
            samples = asyncio.run(raw_floor(env, kubectl, count))
            print(f"floor: p50 {percentile(samples, 0.5):.4f} s", flush=True)
            return samples

        operator_runs, floor_runs = interleaved(runs, ours, floor)
    baseline = "raw-API floor (same resource create, same calls and rounds, no operator)"
    rows = [
        row(
            "worker reconcile",
            f"create to registered, p{round(fraction * 100)} over {count}",
            "s",
            [percentile(samples, fraction) for samples in operator_runs],
            baseline,
            [percentile(samples, fraction) for samples in floor_runs],
            higher_is_better=False,
        )
        for fraction in (0.5, 0.95)
    ]
    extra = {
        "operator_peak_rss_mib": spread([kib / 1024 for kib in rss]),
        "operator_mean_s": spread([statistics.mean(s) for s in operator_runs]),
        "floor_mean_s": spread([statistics.mean(s) for s in floor_runs]),
    }
    return rows, extra


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    rows, extra = measure(args.count, args.runs)
    out = Path(__file__).resolve().parent / "results"
    write(rows, out, "operator_workers")
    (out / "operator_workers.extra.json").write_text(json.dumps(extra, indent=2) + "\n")
    print((out / "operator_workers.md").read_text())
    print(json.dumps(extra, indent=2))


if __name__ == "__main__":
    main()
