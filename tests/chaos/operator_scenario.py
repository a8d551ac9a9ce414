"""The operator fault tests' shared scenario: Services and BoundaryPKIWorkers in one namespace
(the truth in Kubernetes), and the check that Boundary matches it with nothing duplicated,
orphaned, or touched that the operator does not own."""

from __future__ import annotations

import asyncio
import random
import re
import time
import urllib.request
import uuid
from collections import Counter
from typing import Any

from boundary_api import BoundaryClient
from boundary_devstack.clients import Kubectl
from boundary_devstack.stack import StackEnv


def service(namespace: str, name: str, alias: str | None) -> dict[str, Any]:
    annotations = {"boundaryproject.io/expose": "true"}
    if alias:
        annotations["boundaryproject.io/alias"] = alias
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


def boundary_attempts(metrics_port: int) -> Counter[tuple[str, str]]:
    """The operator's Boundary HTTP attempts so far, by (method, status code) ("0": no answer),
    from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    counts: Counter[tuple[str, str]] = Counter()
    for m in re.finditer(
        r'^boundary_operator_boundary_requests_total\{code="(\d+)",method="(\w+)"\} (\S+)$',
        text,
        re.MULTILINE,
    ):
        counts[m.group(2), m.group(1)] += int(float(m.group(3)))
    return counts


def worker(namespace: str, name: str, upstream: str) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"registration": {"initialUpstreams": [upstream]}},
    }


class Scenario:
    """What Kubernetes holds (the truth the operator must converge to) and what it must leave
    alone in Boundary."""

    def __init__(self, namespace: str, cluster: str, project: str) -> None:
        self.namespace, self.cluster, self.project = namespace, cluster, project
        self.aliases: dict[str, str] = {}  # live Service name -> alias it should have
        self.rng = random.Random(f"{namespace}")  # noqa: S311 - chaos, not crypto

    def default_alias(self, service: str) -> str:
        return f"{service}.{self.namespace}.{self.cluster}"

    def mutate(self, kubectl: Kubectl, round_number: int) -> None:
        """Re-alias some Services, delete some, create new ones: work for the next sync."""
        names = sorted(self.aliases)
        batch = max(2, len(names) // 10)
        manifests = []
        for name in self.rng.sample(names, batch // 2):
            alias = f"r{round_number}-{name}.{self.namespace}.{self.cluster}"
            self.aliases[name] = alias
            manifests.append(service(self.namespace, name, alias))
        realiased = {m["metadata"]["name"] for m in manifests}
        for name in self.rng.sample(sorted(set(self.aliases) - realiased), batch // 2):
            kubectl("delete", "service", name, "-n", self.namespace, "--wait=false")
            del self.aliases[name]
        for j in range(batch):
            name = f"new-{round_number}-{j}"
            self.aliases[name] = self.default_alias(name)
            manifests.append(service(self.namespace, name, None))
        kubectl.apply({"apiVersion": "v1", "kind": "List", "items": manifests})

    async def problems(self, boundary: BoundaryClient, untouched: dict[str, Any]) -> list[str]:
        targets = (await boundary.targets.list(self.project)).items
        aliases = (await boundary.aliases.list("global")).items
        ours = [t for t in targets if t.name.startswith(f"{self.cluster}/")]
        found: list[str] = []
        names = Counter(t.name for t in ours)
        found += [f"duplicate target {n}" for n, c in names.items() if c > 1]
        expected = {f"{self.cluster}/{self.namespace}/{s}/http": s for s in self.aliases}
        found += [f"orphan target {n}" for n in names if n not in expected]
        found += [f"missing target for {s}" for n, s in expected.items() if n not in names]
        by_destination: dict[str, list[str]] = {}
        for alias in aliases:
            by_destination.setdefault(alias.destination_id, []).append(alias.value)
        ids = {t.id for t in ours}
        for target in ours:
            values = by_destination.get(target.id, [])
            service = expected.get(target.name)
            if service is not None and values != [self.aliases[service]]:
                found.append(f"{target.name} has aliases {values}, wants {self.aliases[service]}")
        stray = [
            a.value
            for a in aliases
            if a.value.endswith(f".{self.cluster}") and a.destination_id not in ids
        ]
        found += [f"orphan alias {v}" for v in stray if v != untouched["alias"].value]
        alias_values = Counter(a.value for a in aliases)
        found += [f"duplicate alias {v}" for v, c in alias_values.items() if c > 1]
        target = await boundary.targets.read(untouched["target"].id)
        if (target.version, target.description) != (
            untouched["target"].version,
            untouched["target"].description,
        ):
            found.append("the unowned target was modified")
        return found

    async def registered_workers(self, boundary: BoundaryClient) -> Counter[str]:
        prefix = f"{self.cluster}-{self.namespace}-"
        return Counter(w.name for w in await boundary.workers.list() if w.name.startswith(prefix))


async def converge(
    scenario: Scenario,
    boundary: BoundaryClient,
    untouched: dict[str, Any],
    *,
    workers: int,
    timeout: float,
) -> list[str]:
    """Problems left once Boundary matches the scenario, or at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        problems = await scenario.problems(boundary, untouched)
        registered = await scenario.registered_workers(boundary)
        if len(registered) != workers or any(c != 1 for c in registered.values()):
            problems.append(f"workers registered: {dict(registered)}")
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(2)


async def create_unowned(
    boundary: BoundaryClient, project: str, namespace: str, cluster: str
) -> dict[str, Any]:
    """Not ours: a target and alias in the same project whose names look like ours. The
    operator must never modify or delete them (Scenario.problems checks)."""
    target = await boundary.targets.create_tcp(
        project,
        f"{cluster}-unowned",
        address="192.0.2.1",
        default_port=80,
        description="created by hand",
        aliases=[f"unowned.{namespace}.{cluster}"],
    )
    aliases = (await boundary.aliases.list("global")).items
    return {"target": target, "alias": next(a for a in aliases if a.destination_id == target.id)}


async def start_scenario(
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary: BoundaryClient,
    prefix: str,
    *,
    services: int,
    workers: int,
) -> tuple[Scenario, dict[str, Any]]:
    """A fresh namespace holding `workers` BoundaryPKIWorkers (`w<n>`) and `services` exposed
    Services (`svc-<n>`), a cluster name of its own, and the unowned objects to leave alone."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    scenario = Scenario(
        namespace, f"{prefix[:2]}{uuid.uuid4().hex[:6]}", stack_env.values["BOUNDARY_PROJECT_ID"]
    )
    kubectl("create", "namespace", namespace)
    upstream = stack_env.values["BOUNDARY_CLUSTER_ADDR"]
    items = [worker(namespace, f"w{i}", upstream) for i in range(workers)]
    for i in range(services):
        scenario.aliases[f"svc-{i}"] = scenario.default_alias(f"svc-{i}")
        items.append(service(namespace, f"svc-{i}", None))
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": items})
    untouched = await create_unowned(boundary, scenario.project, namespace, scenario.cluster)
    return scenario, untouched
