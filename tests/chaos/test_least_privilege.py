"""The chart's RBAC is the least that works: with every permission the scenario passes, and with
any single verb of any rule taken away it fails (a Forbidden in the operator's log, or the
scenario not finishing). The scenario uses what the operator is for: a BoundaryPKIWorker
registered, re-registered (its pod restarted) and torn down, a Service with brokered
credentials published, and a BoundaryKubernetesAccess made ready, its token rotated (the old one
revoked at once) and removed; by an operator that has to win its leader election Lease first.

`make test-chaos` removes every verb in turn; `make test` removes every verb of the Lease's
rules and a fixed sample of the others."""

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

from boundary_devstack.chart import (
    CHART,
    operator_under_chart,
    release_full_name,
    scenario_values,
)
from boundary_devstack.clients import CommandFailed, Helm, Kubectl
from boundary_devstack.stack import StackEnv

SCENARIO_SECONDS = 60
REREGISTER = "workers.boundaryproject.io/reregister"
ROTATE = "workers.boundaryproject.io/rotate-token"


Rules = list[dict[str, Any]]
Removal = tuple[str, int, str]
"""(which rules: Role, LeaseRole or ClusterRole; the rule's index; the verb taken away)"""


def _rendered_rules(helm: Helm) -> dict[str, Rules]:
    """The namespaced Role's rules, the leader election Role's and the discovery ClusterRole's,
    as the chart renders them."""
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
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}
    return {
        "Role": docs["Role", "r-boundary-worker"]["rules"],
        "LeaseRole": docs["Role", "r-boundary-worker-leader-election"]["rules"],
        "ClusterRole": docs["ClusterRole", "ns-r-boundary-worker-discovery"]["rules"],
    }


def _removals(helm: Helm) -> list[Removal]:
    return [
        (kind, i, verb)
        for kind, rules in _rendered_rules(helm).items()
        for i, rule in enumerate(rules)
        for verb in rule["verbs"]
    ]


def _without(rules: Rules, index: int, verb: str) -> Rules:
    reduced = copy.deepcopy(rules)
    reduced[index]["verbs"].remove(verb)
    return [r for r in reduced if r["verbs"]]


def _label(removal: Removal, helm: Helm) -> str:
    kind, index, verb = removal
    return f"{verb} {','.join(_rendered_rules(helm)[kind][index]['resources'])}"


class RBAC:
    """The release's Role, leader election Role and discovery ClusterRole, edited in place
    (RBAC applies per request, so the running operator sees each change at once; it is
    restarted for the watches)."""

    def __init__(self, kubectl: Kubectl, namespace: str, release: str) -> None:
        self.kubectl = kubectl
        self.objects = {
            "Role": kubectl.get_json("role", f"{release}-boundary-worker", "-n", namespace),
            "LeaseRole": kubectl.get_json(
                "role", f"{release}-boundary-worker-leader-election", "-n", namespace
            ),
            "ClusterRole": kubectl.get_json(
                "clusterrole", f"{namespace}-{release}-boundary-worker-discovery"
            ),
        }
        self.full = {kind: copy.deepcopy(obj["rules"]) for kind, obj in self.objects.items()}

    def set(self, rules: dict[str, Rules]) -> None:
        for kind, obj in self.objects.items():
            updated = {k: v for k, v in obj.items() if k != "status"}
            updated["metadata"] = {
                k: v for k, v in obj["metadata"].items() if k in ("name", "namespace")
            }
            updated["rules"] = rules[kind]
            self.kubectl("replace", "-f", "-", input_text=json.dumps(updated))

    def restore(self) -> None:
        self.set(self.full)


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
        rbac = RBAC(kubectl, namespace, release)
        rules = dict(rbac.full)
        if removal is not None:
            kind, index, verb = removal
            rules[kind] = _without(rules[kind], index, verb)
        rbac.set(rules)
        operator.stop()
        # The restarted operator must win its Lease from nothing: create it, read it, renew it.
        kubectl(
            "delete", "lease", release_full_name(release), "-n", namespace, "--ignore-not-found"
        )
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
    crds: None, stack_env: StackEnv, kubectl: Kubectl, tmp_path: Path
) -> None:
    assert _run_case(stack_env, kubectl, tmp_path, None) == ""


def test_removing_any_one_permission_breaks_the_scenario(
    crds: None, stack_env: StackEnv, kubectl: Kubectl, helm: Helm, tmp_path: Path
) -> None:
    removals = _removals(helm)
    if not FULL:
        # Every verb of the Lease's rules, and a sample of the others.
        others = [r for r in removals if r[0] != "LeaseRole"]
        removals = [r for r in removals if r[0] == "LeaseRole"]
        removals += others[:: max(1, len(others) // 4)][:4]
    results = {}
    for number, removal in enumerate(removals):
        case_dir = tmp_path / str(number)
        case_dir.mkdir()
        outcome = _run_case(stack_env, kubectl, case_dir, removal)
        results[_label(removal, helm)] = outcome or "PASSED: this permission is not needed"
    print(json.dumps(results, indent=1))
    unneeded = [label for label, outcome in results.items() if outcome.startswith("PASSED")]
    assert not unneeded, f"the scenario passes without: {unneeded}"
