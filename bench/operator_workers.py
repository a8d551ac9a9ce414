"""Worker reconcile: from `kubectl apply` of a BoundaryPKIWorker to its StatefulSet, its token
Secret and its Boundary worker all present, p50 and p95 over N resources; and the operator's
peak RSS. Baseline (the raw-API floor): the same Boundary worker creation and the same
manifests applied directly with the same clients, with no operator in between.

    uv run python -m bench.operator_workers [--count 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.api_create import stack
from bench.profiling import Profiled
from bench.results import Row, row, write
from boundary_api import BoundaryClient
from boundary_devstack.clients import Kubectl
from boundary_devstack.operator_process import operator_process
from boundary_devstack.stack import StackEnv
from boundary_operator.kube import KubeClient, load_kubeconfig
from boundary_operator.naming import boundary_worker_name
from boundary_operator.workers import builders
from boundary_operator.workers.spec import WorkerSpec

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _login(env: StackEnv) -> BoundaryClient:
    client = BoundaryClient(env.values["BOUNDARY_ADDR"])
    await client.authenticate_password(
        env.values["BOUNDARY_AUTH_METHOD_ID"],
        env.values["BOUNDARY_LOGIN_NAME"],
        env.values["BOUNDARY_PASSWORD"],
    )
    return client


def _spec(env: StackEnv) -> dict[str, object]:
    return {"registration": {"initialUpstreams": [env.values["BOUNDARY_CLUSTER_ADDR"]]}}


async def through_operator(
    env: StackEnv, kubectl: Kubectl, count: int, profiled: Profiled | None = None
) -> tuple[list[float], int]:
    """Apply-to-registered times and peak RSS through the operator; with `profiled`, the
    operator runs under it and the phase of the applies is profiled."""
    namespace, cluster = f"bench-{uuid.uuid4().hex[:6]}", f"bench{uuid.uuid4().hex[:4]}"
    kubectl("create", "namespace", namespace)
    process = operator_process(
        env, Path(tempfile.mkdtemp()), cluster_name=cluster, namespaces=[namespace]
    )
    if profiled is not None:
        profiled.wrap(process)
    process.start()
    kube = KubeClient(load_kubeconfig(env.values["KUBECONFIG"]))
    boundary = await _login(env)
    samples = []
    try:
        await asyncio.sleep(3)  # let the operator start watching
        with profiled.phase("worker_reconcile") if profiled else contextlib.nullcontext():
            for i in range(count):
                name = f"w{i}"
                started = time.perf_counter()
                kubectl.apply(
                    {
                        "apiVersion": "workers.boundaryproject.io/v1alpha1",
                        "kind": "BoundaryPKIWorker",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": _spec(env),
                    }
                )
                # The token Secret is written only after the Boundary worker was created (the token
                # comes from that call), so Secret + StatefulSet present means registered. Polling
                # Boundary here would hit its list rate limit (150 per 30 s per token).
                while True:
                    sts = await kube.get("StatefulSet", namespace, name)
                    secret = await kube.get("Secret", namespace, f"{name}-activation-tokens")
                    if sts and secret:
                        break
                    await asyncio.sleep(0.02)
                samples.append(time.perf_counter() - started)
        registered = await boundary.workers.list(
            filter=f'"/item/name" matches "^{cluster}-{namespace}-w[0-9]+-0$"'
        )
        assert len(registered) == count, f"{len(registered)} of {count} workers registered"
        peak_rss_kib = _peak_rss_kib(process.pid)
        kubectl("delete", "bpw", "--all", "-n", namespace, "--wait=true", timeout=300)
    finally:
        process.stop()
        await kube.aclose()
        await boundary.aclose()
        kubectl("delete", "namespace", namespace, "--wait=false")
    return samples, peak_rss_kib


async def raw_floor(env: StackEnv, kubectl: Kubectl, count: int) -> list[float]:
    namespace = f"floor-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    kube = KubeClient(load_kubeconfig(env.values["KUBECONFIG"]))
    boundary = await _login(env)
    samples, created = [], []
    try:
        for i in range(count):
            name = f"w{i}"
            started = time.perf_counter()
            worker = await boundary.workers.create_controller_led(
                boundary_worker_name("floor", namespace, name, 0)
            )
            created.append(worker.id)
            ctx = builders.WorkerContext(
                name=name,
                namespace=namespace,
                uid=str(uuid.uuid4()),
                spec=WorkerSpec.model_validate(_spec(env)),
                default_image="x",
            )
            token = worker.controller_generated_activation_token.get_secret_value()
            for manifest in builders.build_all(ctx, {f"{name}-0": token}):
                manifest["metadata"].pop("ownerReferences")
                await kube.apply(manifest)
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


def measure(count: int) -> tuple[list[Row], dict[str, float]]:
    with stack() as env:
        kubectl = Kubectl(env)
        kubectl("apply", "-f", str(REPO / "crds"))
        ours, rss = asyncio.run(through_operator(env, kubectl, count))
        floor = asyncio.run(raw_floor(env, kubectl, count))
    rows = [
        row(
            "worker reconcile",
            f"apply to registered, p50 over {count}",
            "s",
            [percentile(ours, 0.5)],
            "raw-API floor (same calls, no operator)",
            [percentile(floor, 0.5)],
            higher_is_better=False,
        ),
        row(
            "worker reconcile",
            f"apply to registered, p95 over {count}",
            "s",
            [percentile(ours, 0.95)],
            "raw-API floor (same calls, no operator)",
            [percentile(floor, 0.95)],
            higher_is_better=False,
        ),
    ]
    extra = {
        "operator_peak_rss_mib": rss / 1024,
        "operator_mean_s": statistics.mean(ours),
        "floor_mean_s": statistics.mean(floor),
    }
    return rows, extra


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    rows, extra = measure(args.count)
    out = Path(__file__).resolve().parent / "results"
    write(rows, out, "operator_workers")
    (out / "operator_workers.extra.json").write_text(json.dumps(extra, indent=2) + "\n")
    print((out / "operator_workers.md").read_text())
    print(json.dumps(extra, indent=2))


if __name__ == "__main__":
    main()
