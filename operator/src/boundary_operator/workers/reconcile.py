"""The BoundaryPKIWorker service layer: gets every replica a token (registering workers with the
controller), applies the built manifests, scales down and tears down in order. It knows nothing
of kopf: the handlers call it and turn its results into status, Events and retries.

It compares before it writes, as the refresh timer runs it every 10 s for every resource: a
manifest is applied only when the live object lacks what we would send (a change, or drift), a
token Secret only when its tokens change, and Boundary only when a worker is missing or gone.

Round trips that do not depend on each other go together: the reads of a reconcile are one
concurrent round (a resource just created has nothing to read, so it skips them), and so are
the manifests the StatefulSet refers to, applied before it (a pod started or rolled by a new
StatefulSet must find its new ConfigMap and tokens)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging

from pydantic import ValidationError

from boundary_api import Worker
from boundary_api.ports import BoundaryPort
from boundary_operator import naming
from boundary_operator.conditions import Condition
from boundary_operator.kube import KubePort
from boundary_operator.manifest import Manifest, covers
from boundary_operator.settings import OperatorSettings
from boundary_operator.workers import builders, draining
from boundary_operator.workers.reloading import RELOAD_GRACE_SECONDS, ReloadWatch, reported_revision
from boundary_operator.workers.spec import WorkerSpec
from boundary_operator.workers.status import (
    Event,
    SyncResult,
    connected,
    replica_status,
    summarise,
)
from boundary_operator.workers.tokens import (
    ConfigError,
    Identity,
    Registrar,
    Registration,
    WorkerNotOurs,
    plain_text_tokens,
    secret_data,
    secret_ref_tokens,
)

log = logging.getLogger("boundary_operator.workers")

REREGISTER_ANNOTATION = f"{naming.GROUP}/reregister"
"""Ordinals (comma-separated) whose Boundary worker is replaced with a fresh registration: for a
replica whose auth storage was lost after its single-use token was spent."""
APPLIED_ANNOTATION = f"{naming.GROUP}/applied"
"""On each object the operator applies: a digest of what it applied, so a manifest that lost a
field (which the live object still has) is seen as changed."""

Live = dict[tuple[str, str], Manifest | None]


def stamped(manifest: Manifest) -> Manifest:
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    meta = manifest["metadata"]
    return {
        **manifest,
        "metadata": {
            **meta,
            "annotations": {**meta.get("annotations", {}), APPLIED_ANNOTATION: digest},
        },
    }


def _ordinals(value: str | None) -> set[int]:
    if not value:
        return set()
    return {int(part) for part in value.split(",") if part.strip().isdigit()}


class WorkerService:
    def __init__(
        self,
        kube: KubePort,
        boundary: BoundaryPort | None,
        settings: OperatorSettings,
        reloads: ReloadWatch | None = None,
    ) -> None:
        self.kube = kube
        self.boundary = boundary
        self.settings = settings
        self.reloads = reloads or ReloadWatch()

    @staticmethod
    def spec(body: Manifest) -> WorkerSpec:
        """The resource's spec. Raises pydantic's ValidationError."""
        return WorkerSpec.model_validate(body.get("spec") or {})

    def identity(self, body: Manifest) -> Identity:
        meta = body["metadata"]
        return Identity(self.settings.cluster_name, meta["namespace"], meta["name"], meta["uid"])

    def registrar(self, identity: Identity) -> Registrar | None:
        return Registrar(self.boundary, identity) if self.boundary is not None else None

    async def _read(
        self, identity: Identity, user_secret: str | None
    ) -> tuple[Live, dict[str, Manifest]]:
        """In one concurrent round: the objects the operator applies for this resource (and
        the user's token Secret, if the spec names one), as they are now, and its pods."""
        name, namespace = identity.name, identity.namespace
        wanted = [
            ("ConfigMap", naming.config_map_name(name)),
            ("Secret", naming.token_secret_name(name)),
            ("Service", naming.headless_service_name(name)),
            ("Service", naming.proxy_service_name(name)),
            ("StatefulSet", name),
            ("PodDisruptionBudget", naming.disruption_budget_name(name)),
        ]
        if user_secret is not None:
            wanted.append(("Secret", user_secret))
        found, pods = await asyncio.gather(
            asyncio.gather(*(self.kube.get(kind, namespace, n) for kind, n in wanted)),
            self._pods(identity),
        )
        return dict(zip(wanted, found, strict=True)), pods

    async def _apply(self, manifest: Manifest, live: Live) -> None:
        desired = stamped(manifest)
        key = (manifest["kind"], manifest["metadata"]["name"])
        current = live.get(key)
        if current is not None and covers(current, desired):
            return
        live[key] = await self.kube.apply(desired)

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, body: Manifest, *, created: bool = False) -> SyncResult:
        """Bring the resource's workers and objects to what it asks for. `created`: the
        resource was just created, so none of its Boundary workers or objects can exist yet;
        they are registered and applied without a look first."""
        result = SyncResult()
        identity = self.identity(body)
        try:
            spec = self.spec(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            result.conditions.append(Condition("ConfigValid", False, "InvalidSpec", problems))
            result.events.append(Event("Warning", "InvalidSpec", problems))
            return result
        plain_text = spec.registration.controller_generated_activation_token
        ref = spec.registration.activation_token_secret_ref
        automatic = not plain_text and ref is None
        registrar = self.registrar(identity)
        reregister = _ordinals(body["metadata"].get("annotations", {}).get(REREGISTER_ANNOTATION))
        fresh = automatic and spec.replicas > 0 and not reregister
        early: Registration | None = None
        pods: dict[str, Manifest] | None = None
        try:
            if created and fresh and registrar is not None:
                # Just created: there is nothing of ours to compare with yet, so registering
                # is the only round before the first apply; the pods are read after it.
                live: Live = {}
                early = await registrar.register_all(spec.replicas, result)
            else:
                live, pods = await self._read(identity, ref.name if ref is not None else None)
            token_secret = live.get(("Secret", naming.token_secret_name(identity.name)))
            if early is None and fresh and registrar is not None and token_secret is None:
                # No token Secret yet (a first reconcile, usually): register before listing.
                early = await registrar.register_all(spec.replicas, result)
            ctx = builders.WorkerContext(
                name=identity.name,
                namespace=identity.namespace,
                uid=identity.uid,
                spec=spec,
                default_image=self.settings.worker_image,
                cluster_domain=self.settings.cluster_domain,
                load_balancer_address=_load_balancer_address(
                    live.get(("Service", naming.proxy_service_name(identity.name)))
                ),
                generation=int(body["metadata"].get("generation", 0)),
            )
            owned: dict[int, Worker] = {}
            if plain_text:
                tokens = plain_text_tokens(ctx, plain_text, result)
            elif ref is not None:
                tokens = secret_ref_tokens(ctx, ref.name, ref.key, live[("Secret", ref.name)])
            elif registrar is not None:
                tokens, owned = await registrar.tokens(
                    ctx, secret_data(token_secret), reregister, result, early
                )
            else:
                raise ConfigError(
                    "automatic registration needs controller credentials "
                    "(BOUNDARY_ADDR and a login or token) in the operator; "
                    "or give spec.registration.activationTokenSecretRef"
                )
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
        if plain_text:
            result.conditions.append(
                Condition(
                    "PlainTextToken",
                    True,
                    "Discouraged",
                    "the activation token is given in plain text in the resource; move it to a "
                    "Secret and use spec.registration.activationTokenSecretRef",
                )
            )
        for manifests in builders.apply_rounds(builders.build_all(ctx, tokens)):
            await asyncio.gather(*(self._apply(manifest, live) for manifest in manifests))
        if pods is None:
            pods = await self._pods(identity)
        if reregister:
            await self._finish_reregistration(ctx, reregister, result)

        if registrar is not None:
            await self._scale_down(ctx, registrar, owned, pods, tokens, live, result)
            result.events += await draining.sync_marks(
                registrar.boundary.workers, ctx.name, spec.replicas, owned, pods
            )
            stateful_set = live[("StatefulSet", ctx.name)]
            await self._restart_unreloaded(ctx, owned, pods, stateful_set, result)
        result.replicas = replica_status(ctx.name, spec.replicas, owned, pods)
        summarise(automatic=automatic, result=result)
        return result

    async def _pods(self, identity: Identity) -> dict[str, Manifest]:
        selector = naming.label_selector(naming.worker_selector_labels(identity.name))
        return {
            p["metadata"]["name"]: p
            for p in await self.kube.list("Pod", identity.namespace, label_selector=selector)
        }

    async def follow_pods(self, body: Manifest) -> list[Event]:
        """What a worker pod's change asks at once (a pod watch calls this): the draining marks
        of the resource's Boundary workers. The rest waits for the next reconcile."""
        identity = self.identity(body)
        registrar = self.registrar(identity)
        try:
            spec = self.spec(body)
        except ValidationError:
            return []
        if registrar is None or spec.registration.mode != "automatic":
            return []
        owned = await registrar.owned()
        pods = await self._pods(identity)
        return await draining.sync_marks(
            registrar.boundary.workers, identity.name, spec.replicas, owned, pods
        )

    async def _restart_unreloaded(
        self,
        ctx: builders.WorkerContext,
        owned: dict[int, Worker],
        pods: dict[str, Manifest],
        stateful_set: Manifest | None,
        result: SyncResult,
    ) -> None:
        """Restart (with a drain) a worker that has not loaded the rendered configuration
        revision RELOAD_GRACE_SECONDS after the operator first saw it differ: its image
        cannot reload in place. One pod at a time, and never during a rollout."""
        wanted = builders.config_revision(ctx)
        now = datetime.datetime.now(datetime.UTC)
        overdue = []
        for ordinal in range(ctx.spec.replicas):
            worker, pod = owned.get(ordinal), pods.get(naming.pod_name(ctx.name, ordinal))
            if pod is None or draining.is_stopping(pod) or not connected(worker, now):
                continue
            assert worker is not None
            replica = (ctx.uid, ordinal)
            if reported_revision(worker) == wanted:
                self.reloads.settled(replica)
            elif self.reloads.waited(replica, wanted) >= RELOAD_GRACE_SECONDS:
                overdue.append(ordinal)
            else:
                result.retry_after = min(result.retry_after or 30.0, 30.0)
        serving = len(pods) == ctx.spec.replicas and all(
            draining.is_ready(p) and not draining.is_stopping(p) for p in pods.values()
        )
        if not overdue or not serving or not _rolled_out(stateful_set):
            return
        ordinal = max(overdue)
        worker, stale = owned[ordinal], naming.pod_name(ctx.name, ordinal)
        await self.kube.delete("Pod", ctx.namespace, stale)
        self.reloads.settled((ctx.uid, ordinal))
        result.events.append(
            Event(
                "Warning",
                "NotReloaded",
                f"the worker of {stale} still reports configuration revision "
                f"{reported_revision(worker) or '(none)'}, not {wanted}, "
                f"{RELOAD_GRACE_SECONDS:.0f} s after the change: its image does not reload "
                "in place (no boundary-worker-supervisor); restarting the pod, with a drain",
            )
        )

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
        registrar: Registrar,
        owned: dict[int, Worker],
        pods: dict[str, Manifest],
        tokens: dict[str, str],
        live: Live,
        result: SyncResult,
    ) -> None:
        """Deregister the workers of removed ordinals once their pods are gone, then drop
        their tokens."""
        for ordinal, worker in sorted(owned.items()):
            if ordinal < ctx.spec.replicas:
                continue
            if naming.pod_name(ctx.name, ordinal) in pods:
                result.retry_after = 5
                continue
            await registrar.deregister(worker)
            del owned[ordinal]
            result.events.append(
                Event(
                    "Normal",
                    "Deregistered",
                    f"deleted Boundary worker {worker.name} ({worker.id}) after scale down",
                )
            )
        keep = {
            pod: token
            for pod, token in tokens.items()
            if (ordinal := int(pod.rsplit("-", 1)[1])) < ctx.spec.replicas or ordinal in owned
        }
        await self._apply(builders.build_token_secret(ctx, keep), live)

    # ------------------------------------------------------------------ teardown

    async def finalize(self, body: Manifest) -> str | None:
        """Ordered teardown. Returns None when done, or what it is still waiting for."""
        identity = self.identity(body)
        stateful_set = await self.kube.get("StatefulSet", identity.namespace, identity.name)
        if stateful_set and stateful_set["spec"].get("replicas", 0) != 0:
            await self.kube.patch_merge(
                "StatefulSet", identity.namespace, identity.name, {"spec": {"replicas": 0}}
            )
        selector = naming.label_selector(naming.worker_selector_labels(identity.name))
        pods = await self.kube.list("Pod", identity.namespace, label_selector=selector)
        if pods:
            return f"waiting for {len(pods)} pod(s) to stop"
        registrar = self.registrar(identity)
        if registrar is not None:
            for worker in (await registrar.owned()).values():
                await registrar.deregister(worker)
                log.info("deleted Boundary worker %s (%s)", worker.name, worker.id)
        return None


def _rolled_out(stateful_set: Manifest | None) -> bool:
    """Whether the StatefulSet controller has finished rolling its pods to the template."""
    if stateful_set is None:
        return False
    status = stateful_set.get("status") or {}
    generation = stateful_set["metadata"].get("generation")
    return status.get("observedGeneration") == generation and status.get(
        "currentRevision"
    ) == status.get("updateRevision")


def _load_balancer_address(service: Manifest | None) -> str | None:
    ingress = ((service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress")
    if not ingress:
        return None
    first: dict[str, str] = ingress[0]
    return first.get("hostname") or first.get("ip")
