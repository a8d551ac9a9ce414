"""Pure functions that turn a BoundaryPKIWorker into the manifests the operator applies. No I/O:
they are unit-tested with golden files."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from boundary_operator import naming
from boundary_operator.manifest import Manifest
from boundary_operator.workers.spec import WorkerSpec

PROXY_PORT = 9202
OPS_PORT = 9203
CONFIG_DIR = "/opt/boundary/config"
DATA_DIR = "/opt/boundary/data"
TOKEN_PATH = "/opt/boundary/token/activation-token"  # noqa: S105 - a path
CONFIG_FILE = "worker.hcl"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
"""Set by the StatefulSet controller on each pod (Kubernetes 1.28 and later): its ordinal."""

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701 - HCL, not HTML; values are quoted with tojson
)


@dataclass(frozen=True)
class WorkerContext:
    """One BoundaryPKIWorker and the operator settings its manifests depend on."""

    name: str
    namespace: str
    uid: str
    spec: WorkerSpec
    default_image: str
    cluster_domain: str = "cluster.local"
    load_balancer_address: str | None = None
    generation: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def selector_labels(self) -> dict[str, str]:
        return naming.worker_selector_labels(self.name)

    @property
    def labels(self) -> dict[str, str]:
        return {
            **self.selector_labels,
            "app.kubernetes.io/managed-by": naming.MANAGED_BY,
            f"{naming.GROUP}/worker": self.name,
        }


def owner_reference(ctx: WorkerContext) -> Manifest:
    return {
        "apiVersion": f"{naming.GROUP}/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "name": ctx.name,
        "uid": ctx.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(ctx: WorkerContext, name: str, **extra: Any) -> Manifest:
    return {
        "name": name,
        "namespace": ctx.namespace,
        "labels": ctx.labels,
        "ownerReferences": [owner_reference(ctx)],
        **extra,
    }


def _merged_tags(ctx: WorkerContext) -> dict[str, list[str]]:
    """The user's tags plus the defaults, merged per key."""
    tags = ctx.spec.normalised_tags()
    defaults = {
        "type": ["kubernetes"],
        "namespace": [ctx.namespace],
        "boundary_pki_worker": [ctx.name],
    }
    for key, values in defaults.items():
        tags[key] = tags.get(key, []) + [v for v in values if v not in tags.get(key, [])]
    return tags


def config_revision(ctx: WorkerContext) -> str:
    """A digest of what a running worker reloads on SIGHUP (its tags and initial_upstreams;
    Worker.Reload in Boundary's internal/daemon/worker/worker.go): the worker reports it back
    as a tag, so its Boundary record shows which of these it has loaded."""
    reloadable = {
        "tags": sorted(_merged_tags(ctx).items()),
        "upstreams": ctx.spec.registration.initial_upstreams or [],
    }
    return hashlib.sha256(json.dumps(reloadable).encode()).hexdigest()[:12]


def worker_tags(ctx: WorkerContext) -> list[tuple[str, list[str]]]:
    """The worker's config tags in a stable order: the user's merged with the defaults, and
    the configuration revision."""
    tags = _merged_tags(ctx)
    tags[naming.CONFIG_REVISION_TAG] = [config_revision(ctx)]
    return sorted(tags.items())


def render_worker_hcl(ctx: WorkerContext) -> str:
    registration = ctx.spec.registration
    return _TEMPLATES.get_template("worker.hcl.j2").render(
        name=ctx.name,
        namespace=ctx.namespace,
        hcp_cluster_id=registration.hcp_boundary_cluster_id or "",
        upstreams=registration.initial_upstreams or [],
        proxy_port=PROXY_PORT,
        ops_port=OPS_PORT,
        auth_storage_path=f"{DATA_DIR}/auth",
        token_path=TOKEN_PATH,
        tags=worker_tags(ctx),
    )


def restart_checksum(ctx: WorkerContext) -> str:
    """Hash of the worker.hcl settings that need a restart to take effect. Tags and
    initial_upstreams are left out: a running worker reloads them (SIGHUP from
    boundary-worker-supervisor when the mounted file changes), so they must not roll the pods."""
    registration = ctx.spec.registration.model_copy(update={"initial_upstreams": None})
    plain = WorkerContext(
        name=ctx.name,
        namespace=ctx.namespace,
        uid=ctx.uid,
        spec=ctx.spec.model_copy(update={"tags": {}, "registration": registration}),
        default_image=ctx.default_image,
    )
    return hashlib.sha256(render_worker_hcl(plain).encode()).hexdigest()[:16]


def build_config_map(ctx: WorkerContext) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ctx, naming.config_map_name(ctx.name)),
        "data": {CONFIG_FILE: render_worker_hcl(ctx)},
    }


def build_token_secret(ctx: WorkerContext, tokens: dict[str, str]) -> Manifest:
    """One key per pod name; each pod mounts only its own key (subPathExpr)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(ctx, naming.token_secret_name(ctx.name)),
        "data": {
            pod: base64.b64encode(token.encode()).decode() for pod, token in sorted(tokens.items())
        },
    }


def build_headless_service(ctx: WorkerContext) -> Manifest:
    """Gives each pod a stable DNS name, which is its default public address."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ctx, naming.headless_service_name(ctx.name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": ctx.selector_labels,
            "ports": [
                {"name": "proxy", "port": PROXY_PORT, "targetPort": "proxy"},
                {"name": "ops", "port": OPS_PORT, "targetPort": "ops"},
            ],
        },
    }


def build_proxy_service(ctx: WorkerContext) -> Manifest:
    service = ctx.spec.service
    metadata = _metadata(ctx, naming.proxy_service_name(ctx.name))
    if service.annotations:
        metadata["annotations"] = dict(sorted(service.annotations.items()))
    port: Manifest = {"name": "proxy", "port": PROXY_PORT, "targetPort": "proxy"}
    if service.node_port is not None:
        port["nodePort"] = service.node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {"type": service.type, "selector": ctx.selector_labels, "ports": [port]},
    }


def public_address(ctx: WorkerContext) -> str:
    """What clients dial: spec.publicAddress, else the proxy Service's load balancer, else
    each pod's stable DNS name through the headless Service ($(POD_NAME) is expanded by the
    kubelet)."""
    if ctx.spec.public_address:
        return ctx.spec.public_address
    if ctx.spec.service.type == "LoadBalancer" and ctx.load_balancer_address:
        return f"{ctx.load_balancer_address}:{PROXY_PORT}"
    headless = naming.headless_service_name(ctx.name)
    return f"$(POD_NAME).{headless}.{ctx.namespace}.svc.{ctx.cluster_domain}:{PROXY_PORT}"


# /health always answers 200; only the body says whether the upstream is READY. Our worker
# image ships a static probe for that (images/worker-probe); other images (the upstream
# hashicorp/boundary one) are probed with curl and grep.
_READY_PROBE = (
    "if command -v boundary-worker-ready >/dev/null; then "
    f"exec boundary-worker-ready -addr 127.0.0.1:{OPS_PORT}; fi; "
    f"curl -fsS 'http://127.0.0.1:{OPS_PORT}/health?worker_info=true' | "
    'grep -Eq \'"upstream_connection_state": ?"READY"\''
)


def _resources(ctx: WorkerContext) -> Manifest:
    out: Manifest = {}
    for kind in ("requests", "limits"):
        values = getattr(ctx.spec.resources, kind).model_dump(exclude_none=True)
        if values:
            out[kind] = values
    return out


def _field_env(name: str, path: str) -> Manifest:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


SUPERVISOR = "boundary-worker-supervisor"
STOP_MARGIN_SECONDS = 30
"""Termination grace beyond the drain timeout: Boundary closing what is left and exiting."""
MIN_READY_SECONDS = 10
"""How long a new pod is Ready before a rollout stops the next one: time for the operator to
lift the new worker's draining mark before it puts one on the next."""


def worker_command(ctx: WorkerContext) -> list[str]:
    """`boundary server` under boundary-worker-supervisor (images/worker-supervisor) when the
    image has it: it reloads the worker on SIGHUP when the mounted worker.hcl changes, and ends
    a drain that outlasts spec.drain.timeout. Other images (the upstream hashicorp/boundary)
    run `boundary server` alone: the operator then sees that the worker did not report the new
    configuration revision and restarts it, and the kubelet's SIGKILL ends a long drain."""
    config = f"{CONFIG_DIR}/{CONFIG_FILE}"
    server = f"boundary server -config={config}"
    supervised = (
        f"{SUPERVISOR} -watch {config} -drain-timeout {ctx.spec.drain.timeout_seconds}s -- {server}"
    )
    return [
        "/bin/sh",
        "-c",
        f"if command -v {SUPERVISOR} >/dev/null; then exec {supervised}; fi; exec {server}",
    ]


def build_stateful_set(ctx: WorkerContext) -> Manifest:
    template = ctx.spec.pod_template
    storage = ctx.spec.resources.storage
    claim_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        claim_spec["storageClassName"] = storage.storage_class_name
    annotations = {
        **template.annotations,
        f"{naming.GROUP}/config-checksum": restart_checksum(ctx),
    }
    pod_spec: Manifest = {
        "serviceAccountName": "default",
        "automountServiceAccountToken": False,
        # On SIGTERM Boundary drains: it takes no new session and exits once its connections
        # end. The grace period lets it, for spec.drain.timeout.
        "terminationGracePeriodSeconds": ctx.spec.drain.timeout_seconds + STOP_MARGIN_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "fsGroup": 1000,
            "fsGroupChangePolicy": "OnRootMismatch",
            **template.security_context.model_dump(by_alias=True, exclude_none=True),
        },
        "containers": [
            {
                "name": "worker",
                "image": ctx.spec.image or ctx.default_image,
                "command": worker_command(ctx),
                "env": [
                    _field_env("POD_NAME", "metadata.name"),
                    _field_env("POD_NAMESPACE", "metadata.namespace"),
                    _field_env("POD_IP", "status.podIP"),
                    # The ordinal, for a publicAddress per replica ("w-$(POD_INDEX).example").
                    _field_env("POD_INDEX", f"metadata.labels['{POD_INDEX_LABEL}']"),
                    {"name": "BOUNDARY_WORKER_PUBLIC_ADDR", "value": public_address(ctx)},
                    {"name": "SKIP_SETCAP", "value": "true"},
                    *template.env,
                ],
                "ports": [
                    {"name": "proxy", "containerPort": PROXY_PORT, "protocol": "TCP"},
                    {"name": "ops", "containerPort": OPS_PORT, "protocol": "TCP"},
                ],
                "livenessProbe": {
                    "httpGet": {"path": "/health", "port": "ops"},
                    "periodSeconds": 10,
                    "failureThreshold": 6,
                    "timeoutSeconds": 3,
                },
                "readinessProbe": {
                    "exec": {"command": ["/bin/sh", "-c", _READY_PROBE]},
                    "periodSeconds": 5,
                    "failureThreshold": 3,
                    "timeoutSeconds": 3,
                },
                "resources": _resources(ctx),
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "data", "mountPath": DATA_DIR},
                    {
                        "name": "token",
                        "mountPath": TOKEN_PATH,
                        "subPathExpr": "$(POD_NAME)",
                        "readOnly": True,
                    },
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": naming.config_map_name(ctx.name)}},
            {
                "name": "token",
                "secret": {"secretName": naming.token_secret_name(ctx.name), "defaultMode": 0o400},
            },
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    for key, value in (
        ("nodeSelector", template.node_selector),
        ("tolerations", template.tolerations),
        ("affinity", template.affinity),
        ("priorityClassName", template.priority_class_name),
    ):
        if value:
            pod_spec[key] = value
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(ctx, ctx.name),
        "spec": {
            "serviceName": naming.headless_service_name(ctx.name),
            "replicas": ctx.spec.replicas,
            "podManagementPolicy": "Parallel",
            # A rollout replaces one pod at a time, highest ordinal first, each once the one
            # before is Ready (readiness is the worker's upstream connection) for
            # MIN_READY_SECONDS; every stopping pod drains first.
            "updateStrategy": {"type": "RollingUpdate"},
            "minReadySeconds": MIN_READY_SECONDS,
            "selector": {"matchLabels": ctx.selector_labels},
            # A replica's auth storage is useless once its Boundary worker is deregistered
            # (scale down, deletion); keeping it would make a new token be ignored.
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Delete",
                "whenScaled": "Delete",
            },
            "template": {
                "metadata": {
                    "labels": {**template.labels, **ctx.labels},
                    "annotations": dict(sorted(annotations.items())),
                },
                "spec": pod_spec,
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": ctx.selector_labels},
                    "spec": claim_spec,
                }
            ],
        },
    }


def build_disruption_budget(ctx: WorkerContext) -> Manifest:
    """A node drain evicts one worker pod at a time, so the others keep taking sessions while
    it drains."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(ctx, naming.disruption_budget_name(ctx.name)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": ctx.selector_labels}},
    }


def build_all(ctx: WorkerContext, tokens: dict[str, str]) -> list[Manifest]:
    return [
        build_config_map(ctx),
        build_token_secret(ctx, tokens),
        build_headless_service(ctx),
        build_proxy_service(ctx),
        build_stateful_set(ctx),
        build_disruption_budget(ctx),
    ]


def apply_rounds(manifests: list[Manifest]) -> list[list[Manifest]]:
    """The manifests in rounds to apply one after another, each round's concurrently: what
    the StatefulSet refers to (its ConfigMap, tokens, Services) first, so that a pod it starts
    or rolls finds them as they are meant to be, then the StatefulSet."""
    rounds = [
        [m for m in manifests if m["kind"] != "StatefulSet"],
        [m for m in manifests if m["kind"] == "StatefulSet"],
    ]
    return [r for r in rounds if r]


def dumps(manifest: Manifest) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"
