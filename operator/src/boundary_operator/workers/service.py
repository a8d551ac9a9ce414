"""The BoundaryPKIWorker service layer: registers workers with the controller, applies the
built manifests, scales down and tears down in order. It knows nothing of kopf: the handlers
call it and turn its results into status, Events and retries."""

from __future__ import annotations

import base64
import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from boundary_api import BoundaryError, Conflict, Worker
from boundary_api.ports import BoundaryPort
from boundary_operator import naming
from boundary_operator.conditions import Condition
from boundary_operator.kube import KubePort
from boundary_operator.manifest import Manifest
from boundary_operator.settings import OperatorSettings
from boundary_operator.workers import builders
from boundary_operator.workers.spec import WorkerSpec

log = logging.getLogger("boundary_operator.workers")

REREGISTER_ANNOTATION = f"{naming.GROUP}/reregister"
"""Ordinals (comma-separated) whose Boundary worker is replaced with a fresh registration: for a
replica whose auth storage was lost after its single-use token was spent."""

CONNECTED_WITHIN = datetime.timedelta(seconds=30)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class ReplicaStatus:
    ordinal: int
    pod: str
    pod_phase: str = ""
    worker_id: str = ""
    worker_name: str = ""
    last_status_time: str = ""
    release_version: str = ""
    upstream_connection_state: str = "UNKNOWN"

    def to_status(self) -> dict[str, Any]:
        return {
            "ordinal": self.ordinal,
            "pod": self.pod,
            "podPhase": self.pod_phase,
            "workerId": self.worker_id,
            "workerName": self.worker_name,
            "lastStatusTime": self.last_status_time,
            "releaseVersion": self.release_version,
            "upstreamConnectionState": self.upstream_connection_state,
        }


@dataclass
class SyncResult:
    conditions: list[Condition] = field(default_factory=list)
    replicas: list[ReplicaStatus] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    retry_after: float | None = None
    """Ask to be called again this soon (something is still converging)."""

    @property
    def connected(self) -> int:
        return sum(r.upstream_connection_state == "READY" for r in self.replicas)


class WorkerNotOurs(Exception):
    """A Boundary worker with the name we want exists and was not created by us."""


@dataclass(frozen=True)
class Identity:
    cluster: str
    namespace: str
    name: str
    uid: str

    def worker_name(self, ordinal: int) -> str:
        return naming.boundary_worker_name(self.cluster, self.namespace, self.name, ordinal)

    def description(self, ordinal: int) -> str:
        return naming.worker_owner_description(
            self.cluster, self.namespace, self.name, self.uid, ordinal
        )

    def owned_ordinal(self, worker: Worker) -> int | None:
        """The ordinal of a worker we created for this resource, or None if not ours."""
        owner = naming.parse_owner_description(worker.description)
        if owner is None or (
            owner["cluster"],
            owner["namespace"],
            owner["worker"],
            owner["uid"],
        ) != (self.cluster, self.namespace, self.name, self.uid):
            return None
        return int(owner["ordinal"]) if owner["ordinal"].isdigit() else None


def _connected(worker: Worker | None, now: datetime.datetime) -> bool:
    return bool(
        worker and worker.last_status_time and now - worker.last_status_time < CONNECTED_WITHIN
    )


class WorkerService:
    def __init__(
        self, kube: KubePort, boundary: BoundaryPort | None, settings: OperatorSettings
    ) -> None:
        self.kube = kube
        self.boundary = boundary
        self.settings = settings

    # ------------------------------------------------------------------ reading

    def identity(self, body: Manifest) -> Identity:
        meta = body["metadata"]
        return Identity(self.settings.cluster_name, meta["namespace"], meta["name"], meta["uid"])

    async def owned_workers(self, identity: Identity) -> dict[int, Worker]:
        """Our Boundary workers for this resource, by ordinal. Others are never returned."""
        assert self.boundary is not None
        prefix = identity.worker_name(0).rsplit("-", 1)[0]
        candidates = await self.boundary.workers.list(
            filter=f'"/item/name" matches "^{prefix}-[0-9]+$"'
        )
        owned: dict[int, Worker] = {}
        for worker in candidates:
            ordinal = identity.owned_ordinal(worker)
            if ordinal is not None:
                owned[ordinal] = worker
        return owned

    async def _stored_tokens(self, ctx: builders.WorkerContext) -> dict[str, str]:
        secret = await self.kube.get("Secret", ctx.namespace, naming.token_secret_name(ctx.name))
        data: dict[str, str] = (secret or {}).get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    # ------------------------------------------------------------------ registration

    async def _register(self, identity: Identity, ordinal: int) -> tuple[Worker, str]:
        assert self.boundary is not None
        try:
            created = await self.boundary.workers.create_controller_led(
                identity.worker_name(ordinal), description=identity.description(ordinal)
            )
        except Conflict:
            raise WorkerNotOurs(identity.worker_name(ordinal)) from None
        return created, created.controller_generated_activation_token.get_secret_value()

    async def _automatic_tokens(
        self,
        ctx: builders.WorkerContext,
        identity: Identity,
        reregister: set[int],
        result: SyncResult,
    ) -> tuple[dict[str, str], dict[int, Worker]]:
        assert self.boundary is not None
        stored = await self._stored_tokens(ctx)
        owned = await self.owned_workers(identity)
        tokens: dict[str, str] = {}
        for ordinal in range(ctx.spec.replicas):
            pod = naming.pod_name(ctx.name, ordinal)
            worker = owned.get(ordinal)
            activated = bool(worker and worker.release_version)
            # A worker whose token we no longer hold and that never activated can never
            # activate: replace it. An activated one keeps its credentials in its storage.
            stale = worker is not None and pod not in stored and not activated
            if worker is not None and (ordinal in reregister or stale):
                await self.boundary.workers.delete(worker.id)
                result.events.append(
                    Event(
                        "Normal",
                        "Reregistering",
                        f"replaced Boundary worker {worker.name} ({worker.id}) of {pod}",
                    )
                )
                worker = None
            if worker is None:
                worker, tokens[pod] = await self._register(identity, ordinal)
                owned[ordinal] = worker
                result.events.append(
                    Event(
                        "Normal",
                        "Registered",
                        f"registered Boundary worker {worker.name} ({worker.id}) for {pod}",
                    )
                )
            elif pod in stored:
                tokens[pod] = stored[pod]
        # Ordinals past the replica count keep their token until their worker is deleted.
        for ordinal in owned:
            pod = naming.pod_name(ctx.name, ordinal)
            if ordinal >= ctx.spec.replicas and pod in stored:
                tokens[pod] = stored[pod]
        return tokens, owned

    async def _manual_tokens(
        self, ctx: builders.WorkerContext, result: SyncResult
    ) -> dict[str, str]:
        registration = ctx.spec.registration
        pods = [naming.pod_name(ctx.name, i) for i in range(ctx.spec.replicas)]
        if registration.controller_generated_activation_token:
            result.events.append(
                Event(
                    "Warning",
                    "PlainTextToken",
                    "spec.registration.controllerGeneratedActivationToken holds a token in plain "
                    "text; it was copied into the operator's Secret. Use activationTokenSecretRef.",
                )
            )
            return {pods[0]: registration.controller_generated_activation_token} if pods else {}
        ref = registration.activation_token_secret_ref
        assert ref is not None
        secret = await self.kube.get("Secret", ctx.namespace, ref.name)
        if secret is None:
            raise ConfigError(
                f"spec.registration.activationTokenSecretRef: Secret {ref.name!r} does not exist"
            )
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        if ref.key:
            if ref.key not in data:
                raise ConfigError(
                    f"spec.registration.activationTokenSecretRef: Secret "
                    f"{ref.name!r} has no key {ref.key!r}"
                )
            return {pods[0]: data[ref.key]} if pods else {}
        missing = [p for p in pods if p not in data]
        if missing:
            raise ConfigError(
                f"spec.registration.activationTokenSecretRef: Secret {ref.name!r} "
                f"lacks a key for each pod: missing {', '.join(missing)}"
            )
        return {p: data[p] for p in pods}

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, body: Manifest) -> SyncResult:
        result = SyncResult()
        identity = self.identity(body)
        generation = int(body["metadata"].get("generation", 0))
        try:
            spec = WorkerSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            result.conditions.append(Condition("ConfigValid", False, "InvalidSpec", problems))
            result.events.append(Event("Warning", "InvalidSpec", problems))
            return result
        ctx = builders.WorkerContext(
            name=identity.name,
            namespace=identity.namespace,
            uid=identity.uid,
            spec=spec,
            default_image=self.settings.worker_image,
            cluster_domain=self.settings.cluster_domain,
            load_balancer_address=await self._load_balancer_address(identity),
            generation=generation,
        )
        reregister = _ordinals(body["metadata"].get("annotations", {}).get(REREGISTER_ANNOTATION))
        owned: dict[int, Worker] = {}
        try:
            if spec.registration.mode == "automatic":
                if self.boundary is None:
                    raise ConfigError(
                        "automatic registration needs controller credentials "
                        "(BOUNDARY_ADDR and a login or token) in the operator; "
                        "or give spec.registration.activationTokenSecretRef"
                    )
                tokens, owned = await self._automatic_tokens(ctx, identity, reregister, result)
            else:
                tokens = await self._manual_tokens(ctx, result)
        except ConfigError as exc:
            result.conditions.append(
                Condition("ConfigValid", False, "InvalidRegistration", str(exc))
            )
            result.events.append(Event("Warning", "InvalidRegistration", str(exc)))
            result.retry_after = 30
            return result
        except WorkerNotOurs as exc:
            message = (
                f"a Boundary worker named {exc} exists and was not created by this "
                "operator for this resource; it is left untouched"
            )
            result.conditions.append(Condition("Registered", False, "NameTaken", message))
            result.events.append(Event("Warning", "NameTaken", message))
            result.retry_after = 60
            return result

        result.conditions.append(Condition("ConfigValid", True, "Valid", "spec is valid"))
        if spec.registration.mode == "plain-text":
            result.conditions.append(
                Condition(
                    "PlainTextToken",
                    True,
                    "Discouraged",
                    "the activation token is given in plain text in the resource; move it to a "
                    "Secret and use spec.registration.activationTokenSecretRef",
                )
            )
        for manifest in builders.build_all(ctx, tokens):
            await self.kube.apply(manifest)
        if reregister:
            await self._finish_reregistration(ctx, reregister, result)

        pods = await self._pods(ctx)
        await self._scale_down(ctx, owned, pods, result)
        self._replica_status(ctx, owned, pods, result)
        self._summarise(ctx, result)
        return result

    async def _load_balancer_address(self, identity: Identity) -> str | None:
        service = await self.kube.get(
            "Service", identity.namespace, naming.proxy_service_name(identity.name)
        )
        ingress = ((service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress")
        if not ingress:
            return None
        first: dict[str, str] = ingress[0]
        return first.get("hostname") or first.get("ip")

    async def _pods(self, ctx: builders.WorkerContext) -> dict[str, Manifest]:
        selector = ",".join(f"{k}={v}" for k, v in ctx.selector_labels.items())
        return {
            p["metadata"]["name"]: p
            for p in await self.kube.list("Pod", ctx.namespace, label_selector=selector)
        }

    async def _finish_reregistration(
        self, ctx: builders.WorkerContext, ordinals: set[int], result: SyncResult
    ) -> None:
        # The new token is in the Secret; a restarted pod mounts it (subPath mounts are fixed
        # at start). Then the request is done: drop the annotation.
        for ordinal in sorted(ordinals):
            await self.kube.delete("Pod", ctx.namespace, naming.pod_name(ctx.name, ordinal))
        await self.kube.patch_merge(
            "BoundaryPKIWorker",
            ctx.namespace,
            ctx.name,
            {"metadata": {"annotations": {REREGISTER_ANNOTATION: None}}},
        )
        result.events.append(
            Event(
                "Normal",
                "Reregistered",
                f"restarted {', '.join(naming.pod_name(ctx.name, o) for o in sorted(ordinals))} "
                "with new activation tokens",
            )
        )

    async def _scale_down(
        self,
        ctx: builders.WorkerContext,
        owned: dict[int, Worker],
        pods: dict[str, Manifest],
        result: SyncResult,
    ) -> None:
        """Deregister the workers of removed ordinals, once their pods are gone."""
        for ordinal, worker in sorted(owned.items()):
            if ordinal < ctx.spec.replicas:
                continue
            pod = naming.pod_name(ctx.name, ordinal)
            if pod in pods:
                result.retry_after = 5
                continue
            assert self.boundary is not None
            await self.boundary.workers.delete(worker.id)
            del owned[ordinal]
            result.events.append(
                Event(
                    "Normal",
                    "Deregistered",
                    f"deleted Boundary worker {worker.name} ({worker.id}) after scale down",
                )
            )
        # Drop the removed ordinals' tokens.
        tokens = await self._stored_tokens(ctx)
        keep = {
            p: t
            for p, t in tokens.items()
            if int(p.rsplit("-", 1)[1]) < ctx.spec.replicas or int(p.rsplit("-", 1)[1]) in owned
        }
        if keep != tokens:
            await self.kube.apply(builders.build_token_secret(ctx, keep))

    def _replica_status(
        self,
        ctx: builders.WorkerContext,
        owned: dict[int, Worker],
        pods: dict[str, Manifest],
        result: SyncResult,
    ) -> None:
        now = datetime.datetime.now(datetime.UTC)
        for ordinal in range(ctx.spec.replicas):
            pod = naming.pod_name(ctx.name, ordinal)
            worker = owned.get(ordinal)
            status = ReplicaStatus(ordinal=ordinal, pod=pod)
            status.pod_phase = str(((pods.get(pod) or {}).get("status") or {}).get("phase", ""))
            if worker:
                status.worker_id, status.worker_name = worker.id, worker.name
                status.release_version = worker.release_version
                if worker.last_status_time:
                    status.last_status_time = worker.last_status_time.strftime("%Y-%m-%dT%H:%M:%SZ")
                status.upstream_connection_state = (
                    "READY" if _connected(worker, now) else "NOT_CONNECTED"
                )
            result.replicas.append(status)

    def _summarise(self, ctx: builders.WorkerContext, result: SyncResult) -> None:
        replicas = ctx.spec.replicas
        if ctx.spec.registration.mode == "automatic":
            registered = sum(bool(r.worker_id) for r in result.replicas)
            result.conditions.append(
                Condition(
                    "Registered",
                    registered == replicas,
                    "AllRegistered" if registered == replicas else "Registering",
                    f"{registered}/{replicas} replicas have a Boundary worker",
                )
            )
            connected = result.connected
            ready = connected == replicas
            result.conditions.append(
                Condition(
                    "Ready",
                    ready,
                    "AllConnected" if ready else "WaitingForWorkers",
                    f"{connected}/{replicas} workers report to the controller",
                )
            )
            if not ready:
                result.retry_after = min(result.retry_after or 10, 10)
        else:
            result.conditions.append(
                Condition(
                    "Registered",
                    True,
                    "ManualToken",
                    "workers register themselves with the given activation tokens",
                )
            )
            running = sum(r.pod_phase == "Running" for r in result.replicas)
            result.conditions.append(
                Condition(
                    "Ready",
                    running == replicas,
                    "PodsRunning" if running == replicas else "WaitingForPods",
                    f"{running}/{replicas} pods running",
                )
            )

    # ------------------------------------------------------------------ teardown

    async def finalize(self, body: Manifest) -> str | None:
        """Ordered teardown. Returns None when done, or what it is still waiting for."""
        identity = self.identity(body)
        stateful_set = await self.kube.get("StatefulSet", identity.namespace, identity.name)
        if stateful_set and stateful_set["spec"].get("replicas", 0) != 0:
            await self.kube.patch_merge(
                "StatefulSet", identity.namespace, identity.name, {"spec": {"replicas": 0}}
            )
        selector = ",".join(
            f"{k}={v}"
            for k, v in {
                "app.kubernetes.io/name": "boundary-worker",
                "app.kubernetes.io/instance": identity.name,
            }.items()
        )
        pods = await self.kube.list("Pod", identity.namespace, label_selector=selector)
        if pods:
            return f"waiting for {len(pods)} pod(s) to stop"
        if self.boundary is not None:
            for worker in (await self.owned_workers(identity)).values():
                await self.boundary.workers.delete(worker.id)
                log.info("deleted Boundary worker %s (%s)", worker.name, worker.id)
        return None


class ConfigError(Exception):
    """The resource cannot be acted on as it is; the message names the field."""


def _ordinals(value: str | None) -> set[int]:
    if not value:
        return set()
    return {int(part) for part in value.split(",") if part.strip().isdigit()}


__all__ = ["BoundaryError", "SyncResult", "WorkerService"]
