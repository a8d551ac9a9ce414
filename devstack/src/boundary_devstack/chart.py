"""The Helm chart on the local stack: install it, then run the operator as a local process under
exactly the chart's ServiceAccount (a token for it, nothing more) and with the environment the
chart's Deployment declares. Pods do not run here (kwok), so this is how the tests prove that
the chart's RBAC and settings are enough."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from boundary_devstack.clients import Helm, Kubectl
from boundary_devstack.credentials import in_cluster_command
from boundary_devstack.net import free_port
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv

CHART = Path(__file__).resolve().parents[3] / "charts" / "boundary-worker"
CREDENTIALS_SECRET = "boundary-operator-credentials"  # noqa: S105 - a Secret's name


def stack_values(stack: StackEnv, namespaces: list[str], **overrides: Any) -> dict[str, Any]:
    """Chart values pointing at the stack's controller, with the login Secret of
    `create_credentials_secret`."""
    env = stack.values
    values: dict[str, Any] = {
        "controller": {"address": env["BOUNDARY_ADDR"]},
        "auth": {
            "methodId": env["BOUNDARY_AUTH_METHOD_ID"],
            "loginName": env["BOUNDARY_LOGIN_NAME"],
            "existingSecret": CREDENTIALS_SECRET,
        },
        "watchNamespaces": namespaces,
    }
    values.update(overrides)
    return values


def scenario_values(stack: StackEnv, cluster_name: str, **overrides: Any) -> dict[str, Any]:
    """Values the e2e scenarios share: the stack's project as default scope, targets at cluster
    IPs (the tests' backends live at fixed ClusterIPs in network namespaces), a fast resync."""
    return {
        "clusterName": cluster_name,
        "defaultScope": stack.values["BOUNDARY_PROJECT_ID"],
        "targetAddress": "clusterip",
        "resyncSeconds": 3,
        **overrides,
    }


def create_credentials_secret(kubectl: Kubectl, stack: StackEnv, namespace: str) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CREDENTIALS_SECRET, "namespace": namespace},
            "stringData": {"password": stack.values["BOUNDARY_PASSWORD"]},
        }
    )


def install(
    helm: Helm, release: str, namespace: str, values: dict[str, Any], work_dir: Path
) -> None:
    """`helm upgrade --install` with the given values; CRDs are left to crds/ (already applied)."""
    values_file = work_dir / f"{release}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm(
        "upgrade",
        "--install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--skip-crds",
        "--values",
        str(values_file),
    )


@dataclass(frozen=True)
class ChartOperator:
    """What a pod of the chart's Deployment would run with."""

    kubeconfig: Path
    env: dict[str, str]
    """Literal values and Secret references, resolved; `pod_env` adds the downward API's."""
    metrics_port: int
    namespace: str
    field_refs: dict[str, str] = field(default_factory=dict)
    """Variables the downward API fills: name -> fieldPath."""

    def pod_env(self, pod_name: str) -> dict[str, str]:
        """The environment of the pod named `pod_name` (ports are per host here, not per pod:
        metrics on `metrics_port`, no probe)."""
        fields = {"metadata.name": pod_name, "metadata.namespace": self.namespace}
        env = {**self.env, **{name: fields[path] for name, path in self.field_refs.items()}}
        env["BOUNDARY_OPERATOR_METRICS_PORT"] = str(self.metrics_port)
        env["BOUNDARY_OPERATOR_HEALTH_PORT"] = "0"
        return env


def service_account_kubeconfig(
    kubectl: Kubectl, namespace: str, service_account: str, path: Path
) -> Path:
    """A kubeconfig holding a token for the ServiceAccount and nothing else (no client
    certificate), so every request is authorized as that account."""
    token = kubectl("create", "token", service_account, "-n", namespace, "--duration=4h").strip()
    config = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster = config["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stack", "cluster": cluster}],
                "users": [{"name": service_account, "user": {"token": token}}],
                "contexts": [
                    {"name": "sa", "context": {"cluster": "stack", "user": service_account}}
                ],
                "current-context": "sa",
            }
        )
    )
    path.chmod(0o600)
    return path


POD_FIELDS = ("metadata.name", "metadata.namespace")
"""The downward API fields a pod here can be given."""


def deployment_env(
    kubectl: Kubectl, namespace: str, deployment: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The operator container's environment as the Deployment declares it, Secret references
    resolved the way the kubelet would; and the variables the downward API fills (name ->
    fieldPath), which depend on the pod."""
    manifest = kubectl.get_json("deployment", deployment, "-n", namespace)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    field_refs: dict[str, str] = {}
    for item in container.get("env", []):
        source = item.get("valueFrom")
        if source is None:
            env[item["name"]] = item.get("value", "")  # the API server drops empty values
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            if path not in POD_FIELDS:
                raise ValueError(f"env {item['name']}: fieldRef {path} is not supported here")
            field_refs[item["name"]] = path
        else:
            ref = source["secretKeyRef"]
            secret = kubectl.get_json("secret", ref["name"], "-n", namespace)
            env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env, field_refs


def chart_operator(
    kubectl: Kubectl, release_namespace: str, release: str, work_dir: Path
) -> ChartOperator:
    full_name = release_full_name(release)
    kubeconfig = service_account_kubeconfig(
        kubectl, release_namespace, full_name, work_dir / f"{release}-sa.kubeconfig"
    )
    env, field_refs = deployment_env(kubectl, release_namespace, full_name)
    return ChartOperator(
        kubeconfig=kubeconfig,
        env=env,
        metrics_port=free_port(),
        namespace=release_namespace,
        field_refs=field_refs,
    )


def operator_process(
    operator: ChartOperator,
    log_dir: Path,
    name: str,
    *,
    kubeconfig: Path | None = None,
    in_cluster: tuple[Path, str] | None = None,
    pod_name: str | None = None,
) -> ManagedProcess:
    """The operator as the chart's pod `pod_name` (default: `name`) would run it: its env, its
    ServiceAccount. By default through a kubeconfig holding the account's token (or
    `kubeconfig`); with `in_cluster` (service-account directory, apiserver URL) as in a pod:
    the directory mounted where the kubelet mounts it, KUBERNETES_SERVICE_HOST/PORT set and no
    kubeconfig."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOUNDARY_")}
    env.update(operator.pod_env(pod_name or name))
    env.pop("KUBERNETES_SERVICE_HOST", None)
    argv = [sys.executable, "-m", "boundary_operator.main", "run"]
    if in_cluster is not None:
        directory, server = in_cluster
        address = urlsplit(server)
        env.pop("KUBECONFIG", None)
        env["KUBERNETES_SERVICE_HOST"] = str(address.hostname)
        env["KUBERNETES_SERVICE_PORT"] = str(address.port)
        argv = in_cluster_command(directory, argv)
    else:
        env["KUBECONFIG"] = str(kubeconfig or operator.kubeconfig)
    return ManagedProcess(name, argv, log_path=log_dir / f"{name}.log", env=env)


def release_full_name(release: str) -> str:
    """The chart's `bw.fullname`: the ServiceAccount and Deployment name."""
    return release if "boundary-worker" in release else f"{release}-boundary-worker"


@contextmanager
def operator_under_chart(
    stack: StackEnv,
    namespace: str,
    release: str,
    work_dir: Path,
    **values: Any,
) -> Iterator[tuple[ManagedProcess, ChartOperator]]:
    """Install the chart in `namespace` (which it also watches), then run the operator as one
    of its pods would (it wins the leader election Lease alone). On exit, as the chart's
    pre-delete hook would: delete the namespace's BoundaryPKIWorkers while the operator runs
    (restarted if a test killed it), so their finalizers complete and their Boundary workers
    go; then stop it and `helm uninstall`."""
    with replicas_under_chart(stack, namespace, release, work_dir, 1, **values) as replicas:
        yield replicas[0]


@contextmanager
def replicas_under_chart(
    stack: StackEnv,
    namespace: str,
    release: str,
    work_dir: Path,
    count: int,
    **values: Any,
) -> Iterator[list[tuple[ManagedProcess, ChartOperator]]]:
    """`operator_under_chart` with `count` replicas, as the Deployment's pods `<full
    name>-<n>` would run (each its metrics on a port of its own), all started."""
    kubectl, helm = Kubectl(stack), Helm(stack)
    create_credentials_secret(kubectl, stack, namespace)
    install(helm, release, namespace, stack_values(stack, [namespace], **values), work_dir)
    first = chart_operator(kubectl, namespace, release, work_dir)
    replicas = []
    for n in range(count):
        operator = first if n == 0 else replace(first, metrics_port=free_port())
        pod = f"{release_full_name(release)}-{n}"
        process = operator_process(operator, work_dir, f"operator-{release}-{n}", pod_name=pod)
        replicas.append((process, operator))
    for process, _ in replicas:
        process.start()
    try:
        yield replicas
    finally:
        if not any(process.running() for process, _ in replicas):
            replicas[0][0].start()
        try:
            kubectl("delete", "bpw", "--all", "-n", namespace, "--timeout=120s", timeout=150)
        finally:
            for process, _ in replicas:
                process.stop()
            helm("uninstall", release, "--namespace", namespace, "--no-hooks")
