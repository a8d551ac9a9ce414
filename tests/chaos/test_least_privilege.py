"""The chart's RBAC is the least that works: with every permission the scenario passes, and with
any single verb of any rule taken away it fails (a Forbidden in the operator's log, or the
scenario not finishing). The scenario uses what the operator is for: a BoundaryPKIWorker
registered, re-registered (its pod restarted) and torn down, a Service with brokered
credentials published, and a BoundaryKubernetesAccess made ready, its token rotated (the old one
revoked at once) and removed.

`make test-chaos` removes every verb in turn; `make test` removes a fixed sample."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from chaos_profile import FULL

from boundary_devstack.chart import CHART, operator_under_chart, scenario_values
from boundary_devstack.clients import CommandFailed, Helm, Kubectl
from boundary_devstack.stack import StackEnv

SCENARIO_SECONDS = 60
REREGISTER = "workers.boundaryproject.io/reregister"
ROTATE = "workers.boundaryproject.io/rotate-token"


def _rendered_rules(helm: Helm) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The namespaced Role's rules and the discovery ClusterRole's, as the chart renders them."""
    text = helm(
        "template",
        "r",
        str(CHART),
        "--namespace",
        "ns",
        "--values",
        str(CHART / "ci" / "test-values.yaml"),
        "--set",
        "watchNamespaces={ns}",
    )
    docs = [d for d in yaml.safe_load_all(text) if d]
    role = next(
        d for d in docs if d["kind"] == "Role" and not d["metadata"]["name"].endswith("drain")
    )
    discovery = next(d for d in docs if d["kind"] == "ClusterRole")
    return role["rules"], discovery["rules"]


def _removals(helm: Helm) -> list[tuple[str, int, str]]:
    namespaced, discovery = _rendered_rules(helm)
    found = [("Role", i, v) for i, rule in enumerate(namespaced) for v in rule["verbs"]]
    found += [("ClusterRole", i, v) for i, rule in enumerate(discovery) for v in rule["verbs"]]
    return found


def _without(rules: list[dict[str, Any]], index: int, verb: str) -> list[dict[str, Any]]:
    reduced = copy.deepcopy(rules)
    reduced[index]["verbs"].remove(verb)
    return [r for r in reduced if r["verbs"]]


def _label(removal: tuple[str, int, str], helm: Helm) -> str:
    kind, index, verb = removal
    rules = _rendered_rules(helm)[0 if kind == "Role" else 1]
    return f"{verb} {','.join(rules[index]['resources'])}"


class RBAC:
    """The release's Role and discovery ClusterRole, edited in place (RBAC applies per request,
    so the running operator sees each change at once; it is restarted for the watches)."""

    def __init__(self, kubectl: Kubectl, helm: Helm, namespace: str, release: str) -> None:
        self.kubectl = kubectl
        self.role = kubectl.get_json("role", f"{release}-boundary-worker", "-n", namespace)
        self.cluster_role = kubectl.get_json(
            "clusterrole", f"{namespace}-{release}-boundary-worker-discovery"
        )
        self.full = (copy.deepcopy(self.role["rules"]), copy.deepcopy(self.cluster_role["rules"]))

    def set(self, namespaced: list[dict[str, Any]], discovery: list[dict[str, Any]]) -> None:
        for obj, rules in ((self.role, namespaced), (self.cluster_role, discovery)):
            updated = {k: v for k, v in obj.items() if k != "status"}
            updated["metadata"] = {
                k: v for k, v in obj["metadata"].items() if k in ("name", "namespace")
            }
            updated["rules"] = rules
            self.kubectl("replace", "-f", "-", input_text=json.dumps(updated))

    def restore(self) -> None:
        self.set(*self.full)


def _scenario_finishes(kubectl: Kubectl, namespace: str, log: Path, since: int) -> str:
    """'' when the scenario worked within the time; otherwise what went wrong."""
    deadline = time.monotonic() + SCENARIO_SECONDS
    step = "worker registered"
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")[since:]
        if "forbidden" in text.lower():
            line = next(x for x in text.splitlines() if "forbidden" in x.lower())
            return f"Forbidden during '{step}': {line[:200]}"
        try:
            if step == "worker registered" and _registered(kubectl, namespace):
                step = "service published"
            if step == "service published" and _published(kubectl, namespace):
                step = "access ready"
            if step == "access ready" and _access_ready(kubectl, namespace):
                kubectl("annotate", "bka", "viewers", "-n", namespace, f"{ROTATE}=now")
                step = "access token rotated"
            if step == "access token rotated" and _access_rotated(kubectl, namespace):
                kubectl("delete", "bka", "viewers", "-n", namespace, "--wait=false")
                step = "access removed"
            if step == "access removed" and not kubectl.get_json("bka", "-n", namespace)["items"]:
                kubectl("annotate", "bpw", "edge", "-n", namespace, f"{REREGISTER}=0")
                step = "worker re-registered"
            if step == "worker re-registered" and not _reregistering(kubectl, namespace):
                kubectl("delete", "bpw", "edge", "-n", namespace, "--wait=false")
                step = "worker torn down"
            if step == "worker torn down" and not kubectl.get_json("bpw", "-n", namespace)["items"]:
                return ""
        except CommandFailed as exc:
            return f"kubectl failed during '{step}': {exc}"
        time.sleep(1)
    return f"not done after {SCENARIO_SECONDS} s: stuck at '{step}'"


def _registered(kubectl: Kubectl, namespace: str) -> bool:
    status = kubectl.get_json("bpw", "edge", "-n", namespace).get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return conditions.get("Registered") == "True"


def _reregistering(kubectl: Kubectl, namespace: str) -> bool:
    annotations = kubectl.get_json("bpw", "edge", "-n", namespace)["metadata"].get("annotations")
    return REREGISTER in (annotations or {})


def _access_ready(kubectl: Kubectl, namespace: str) -> bool:
    status = kubectl.get_json("bka", "viewers", "-n", namespace).get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return conditions.get("Ready") == "True"


def _access_rotated(kubectl: Kubectl, namespace: str) -> bool:
    access = kubectl.get_json("bka", "viewers", "-n", namespace)
    serial = (access.get("status") or {}).get("tokenSerial")
    return serial == 2 and ROTATE not in (access["metadata"].get("annotations") or {})


def _published(kubectl: Kubectl, namespace: str) -> bool:
    service = kubectl.get_json("service", "db", "-n", namespace)
    events = kubectl.get_json("events", "-n", namespace)["items"]
    annotated = "boundaryproject.io/targets" in (service["metadata"].get("annotations") or {})
    return annotated and any(e["reason"] == "Synced" for e in events)


def _objects(namespace: str, upstream: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db-credentials", "namespace": namespace},
            "stringData": {"username": "app", "password": "not-a-real-one"},
        },
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryPKIWorker",
            "metadata": {"name": "edge", "namespace": namespace},
            "spec": {"registration": {"initialUpstreams": [upstream]}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "db",
                "namespace": namespace,
                "annotations": {
                    "boundaryproject.io/expose": "true",
                    "boundaryproject.io/credentials-secret": "db-credentials",
                },
            },
            "spec": {"ports": [{"name": "postgres", "port": 5432}]},
        },
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryKubernetesAccess",
            "metadata": {"name": "viewers", "namespace": namespace},
            "spec": {
                "alias": f"viewers.{namespace}.kube",
                "roleRef": {"kind": "ClusterRole", "name": "view"},
                "principals": {"users": ["u_1234567890"]},
                "worker": {"name": "edge"},
            },
        },
    ]


def _run_case(
    stack_env: StackEnv,
    kubectl: Kubectl,
    helm: Helm,
    tmp_path: Path,
    removal: tuple[str, int, str] | None,
) -> str:
    namespace = f"rbac-{uuid.uuid4().hex[:6]}"
    cluster = f"rb{uuid.uuid4().hex[:6]}"
    release = f"bk-{cluster}"
    kubectl("create", "namespace", namespace)
    with operator_under_chart(
        stack_env, namespace, release, tmp_path, **scenario_values(stack_env, cluster)
    ) as (operator, _):
        rbac = RBAC(kubectl, helm, namespace, release)
        namespaced, discovery = rbac.full
        if removal is not None:
            kind, index, verb = removal
            if kind == "Role":
                namespaced = _without(namespaced, index, verb)
            else:
                discovery = _without(discovery, index, verb)
        rbac.set(namespaced, discovery)
        operator.stop()
        since = len(operator.log_path.read_text(errors="replace"))
        operator.start()
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": _objects(namespace, stack_env.values["BOUNDARY_CLUSTER_ADDR"]),
            }
        )
        outcome = _scenario_finishes(kubectl, namespace, operator.log_path, since)
        rbac.restore()
    kubectl("delete", "namespace", namespace, "--wait=false")
    return outcome


@pytest.fixture(scope="module")
def helm(stack_env: StackEnv) -> Helm:
    return Helm(stack_env)


def test_the_scenario_passes_with_the_charts_permissions(
    crds: None, stack_env: StackEnv, kubectl: Kubectl, helm: Helm, tmp_path: Path
) -> None:
    assert _run_case(stack_env, kubectl, helm, tmp_path, None) == ""


def test_removing_any_one_permission_breaks_the_scenario(
    crds: None, stack_env: StackEnv, kubectl: Kubectl, helm: Helm, tmp_path: Path
) -> None:
    removals = _removals(helm)
    if not FULL:
        removals = removals[:: max(1, len(removals) // 4)][:4]
    results = {}
    for number, removal in enumerate(removals):
        case_dir = tmp_path / str(number)
        case_dir.mkdir()
        outcome = _run_case(stack_env, kubectl, helm, case_dir, removal)
        results[_label(removal, helm)] = outcome or "PASSED: this permission is not needed"
    print(json.dumps(results, indent=1))
    unneeded = [label for label, outcome in results.items() if outcome.startswith("PASSED")]
    assert not unneeded, f"the scenario passes without: {unneeded}"
