"""charts/boundary-worker against the real stack: helm lint and template, values.schema.json
rejecting bad values at `helm install` with the field named, the chart's CRDs identical to
crds/, and an install whose operator, run under exactly the chart's ServiceAccount, registers a
worker declared in values, publishes a Service, serves metrics, and is drained on uninstall by
the pre-delete hook's own command under the hook's own ServiceAccount."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from boundary_devstack import chart
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Helm, Kubectl
from boundary_devstack.stack import StackEnv, wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "boundary-worker"
CI_VALUES = CHART / "ci" / "test-values.yaml"


@pytest.fixture(scope="module")
def helm(stack_env: StackEnv) -> Helm:
    return Helm(stack_env)


def render(helm: Helm, *args: str) -> list[dict[str, Any]]:
    text = helm("template", "rel", str(CHART), "--namespace", "ops", *args)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_chart_crds_are_exact_copies_of_crds_dir() -> None:
    ours = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == ours
    for name in ours:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/boundary-worker/crds/{name} drifted from crds/{name}: copy it again"
        )


def test_helm_lint(helm: Helm) -> None:
    helm("lint", "--strict", str(CHART), "--values", str(CI_VALUES))


def test_namespaced_install_has_no_cluster_wide_write(helm: Helm) -> None:
    docs = render(helm, "--values", str(CI_VALUES))
    kinds = [(d["kind"], d["metadata"].get("namespace")) for d in docs]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["BOUNDARY_OPERATOR_LEADER_ELECTION_LEASE"] == "ops/rel-boundary-worker"
    budget = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    lease_role = next(
        d for d in docs if d["metadata"]["name"] == "rel-boundary-worker-leader-election"
    )
    assert lease_role["metadata"]["namespace"] == "ops"
    assert lease_role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["rel-boundary-worker"],
            "verbs": ["get", "patch"],
        },
    ]
    roles = [d for d in docs if d["kind"] == "Role" and d is not lease_role]
    assert {r["metadata"]["namespace"] for r in roles} == {"team-a", "team-b"}
    cluster_roles = [d for d in docs if d["kind"] == "ClusterRole"]
    assert [c["metadata"]["name"] for c in cluster_roles] == ["ops-rel-boundary-worker-discovery"]
    for rule in cluster_roles[0]["rules"]:
        assert set(rule["verbs"]) <= {"list", "watch"}, rule
    for role in roles + cluster_roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"], rule
            assert "*" not in rule["resources"], rule
            if "secrets" in rule["resources"]:
                assert not {"list", "watch"} & set(rule["verbs"]), "Secrets are read one by one"
    worker = next(d for d in docs if d["kind"] == "BoundaryPKIWorker")
    assert (worker["metadata"]["name"], worker["metadata"]["namespace"]) == ("edge", "team-a")
    job = next(d for d in docs if d["kind"] == "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == [
        "drain",
        "--namespaces=team-a,team-b",
    ]
    assert ("ServiceMonitor", "ops") not in kinds


def test_cluster_wide_install_uses_the_same_rules(helm: Helm) -> None:
    namespaced = render(helm, "--values", str(CI_VALUES))
    cluster_wide = render(
        helm, "--values", str(CI_VALUES), "--set", "watchNamespaces=null", "--set", "workers=null"
    )
    role = next(
        d for d in namespaced if d["kind"] == "Role" and d["metadata"]["namespace"] == "team-a"
    )
    cluster_role = next(
        d
        for d in cluster_wide
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "ops-rel-boundary-worker"
    )
    assert cluster_role["rules"] == role["rules"]
    # Only the Lease's Role and binding stay namespaced (in the release namespace).
    namespaced_rbac = [
        (d["kind"], d["metadata"]["name"])
        for d in cluster_wide
        if d["kind"] in ("Role", "RoleBinding")
    ]
    assert namespaced_rbac == [
        ("Role", "rel-boundary-worker-leader-election"),
        ("RoleBinding", "rel-boundary-worker-leader-election"),
    ]
    monitor = render(
        helm, "--values", str(CI_VALUES), "--set", "metrics.serviceMonitor.enabled=true"
    )
    assert any(d["kind"] == "ServiceMonitor" for d in monitor)


BAD_VALUES = [
    ({"controller": {"address": ""}}, "/controller/address"),
    ({"controller": {"address": "boundary.example.com:9200"}}, "/controller/address"),
    ({"controller": {"caCert": "not a certificate"}}, "/controller/caCert"),
    ({"auth": {"existingSecret": ""}}, "/auth/existingSecret"),
    ({"auth": {"methodId": "ampw_x", "loginName": ""}}, "/auth/loginName"),
    ({"auth": {"methodId": "oidc_123"}}, "/auth/methodId"),
    ({"clusterName": "Prod_Cluster"}, "/clusterName"),
    ({"watchNamespaces": ["Team A"]}, "/watchNamespaces/0"),
    ({"targetAddress": "nodeport"}, "/targetAddress"),
    ({"metrics": {"port": 70000}}, "/metrics/port"),
    ({"resyncSeconds": 0}, "/resyncSeconds"),
    ({"workers": [{"spec": {}}]}, "/workers/0"),
    ({"replicas": 2}, "replicas"),
    ({"replicaCount": 3, "leaderElection": {"enabled": False}}, "/leaderElection/enabled"),
    ({"leaderElection": {"leaseDurationSeconds": 1}}, "/leaderElection/leaseDurationSeconds"),
    ({"leaderElection": {"leaseName": "Not_A_Name"}}, "/leaderElection/leaseName"),
]


def test_one_replica_without_election_is_recreated_and_has_no_lease(helm: Helm) -> None:
    docs = render(
        helm,
        "--values",
        str(CI_VALUES),
        "--set",
        "replicaCount=1",
        "--set",
        "leaderElection.enabled=false",
    )
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]) == (
        1,
        {"type": "Recreate"},
    )
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "BOUNDARY_OPERATOR_LEADER_ELECTION_LEASE" not in {e["name"] for e in env}
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert not [d for d in docs if "leader-election" in d["metadata"]["name"]]


@pytest.mark.parametrize(("override", "field"), BAD_VALUES)
def test_bad_values_are_rejected_by_helm_install_naming_the_field(
    helm: Helm, tmp_path: Path, override: dict[str, Any], field: str
) -> None:
    values = _merge(yaml.safe_load(CI_VALUES.read_text()), override)
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    release = f"bad-{uuid.uuid4().hex[:6]}"
    with pytest.raises(CommandFailed) as failed:
        helm("install", release, str(CHART), "--namespace", "default", "--values", str(values_file))
    assert "values don't meet the specifications of the schema" in failed.value.stderr
    assert field in failed.value.stderr, failed.value.stderr
    with pytest.raises(CommandFailed):
        helm("status", release, "--namespace", "default")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_install_operate_and_drain_under_the_charts_service_accounts(
    crds: None,
    stack_env: StackEnv,
    kubectl: Kubectl,
    helm: Helm,
    boundary_cli: BoundaryCLI,
    tmp_path: Path,
) -> None:
    namespace = f"chart-{uuid.uuid4().hex[:6]}"
    cluster = f"ch{uuid.uuid4().hex[:6]}"
    release = f"bk-{cluster}"
    kubectl("create", "namespace", namespace)
    workers = [
        {
            "name": "edge",
            "spec": {
                "registration": {"initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]}
            },
        }
    ]
    with chart.operator_under_chart(
        stack_env,
        namespace,
        release,
        tmp_path,
        **chart.scenario_values(stack_env, cluster, workers=workers),
    ) as (process, operator):
        # The worker declared in values is registered with the controller.
        worker_name = f"{cluster}-{namespace}-edge-0"
        assert wait_for(lambda: worker_name in _boundary_workers(boundary_cli), timeout=60), (
            process.log_tail()
        )
        # An annotated Service becomes a target with an alias.
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "web",
                    "namespace": namespace,
                    "annotations": {"boundaryproject.io/expose": "true"},
                },
                "spec": {"ports": [{"name": "http", "port": 80}]},
            }
        )
        alias = f"web.{namespace}.{cluster}"
        assert wait_for(lambda: alias in _aliases(boundary_cli), timeout=30), process.log_tail()
        metrics = _scrape(operator.metrics_port)
        assert 'boundary_operator_reconciles_total{kind="BoundaryPKIWorker",result="ok"}' in (
            metrics
        )
        assert 'boundary_operator_boundary_requests_total{code="200",method="GET"}' in metrics
        forbidden = [line for line in process.log_tail(400).splitlines() if "forbidden" in line]
        assert not forbidden, forbidden

        # `helm uninstall` would now run the pre-delete hook. kwok runs no containers, so run
        # the hook Job's own arguments as its pod would: under the hook's ServiceAccount.
        hook = _hook_manifests(helm, release, namespace, tmp_path)
        kubectl.apply("\n---\n".join(yaml.safe_dump(d) for d in hook))
        job = next(d for d in hook if d["kind"] == "Job")
        pod_spec = job["spec"]["template"]["spec"]
        kubeconfig = chart.service_account_kubeconfig(
            kubectl, namespace, pod_spec["serviceAccountName"], tmp_path / "drain.kubeconfig"
        )
        drained = subprocess.run(
            [
                sys.executable,
                "-m",
                "boundary_operator.main",
                *pod_spec["containers"][0]["args"],
            ],
            env={"PATH": "/usr/bin:/bin", "KUBECONFIG": str(kubeconfig)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert drained.returncode == 0, drained.stderr
        assert worker_name not in _boundary_workers(boundary_cli)
        assert not kubectl.get_json("bpw", "-n", namespace)["items"]
        for manifest in hook:
            kubectl("delete", manifest["kind"], manifest["metadata"]["name"], "-n", namespace)
    leftovers = kubectl.get_json(
        "deployment,role,rolebinding,serviceaccount,service",
        "-n",
        namespace,
        "-l",
        f"app.kubernetes.io/instance={release}",
    )
    assert not leftovers["items"]
    kubectl("delete", "namespace", namespace, "--wait=false")


def _hook_manifests(
    helm: Helm, release: str, namespace: str, work_dir: Path
) -> list[dict[str, Any]]:
    values = work_dir / "release-values.yaml"
    values.write_text(helm("get", "values", release, "--namespace", namespace, "-o", "yaml"))
    text = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(values),
        "--show-only",
        "templates/pre-delete-drain.yaml",
    )
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert all(d["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete" for d in docs)
    return docs


def _boundary_workers(cli: BoundaryCLI) -> set[str]:
    return {w.get("name", "") for w in cli("workers", "list", "-scope-id", "global")["items"] or []}


def _aliases(cli: BoundaryCLI) -> set[str]:
    return {a["value"] for a in cli("aliases", "list", "-scope-id", "global")["items"] or []}


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text: str = response.read().decode()
    return text
