"""Where each replica's activation token comes from: registered by the operator with the
controller (automatic), or given by the user (a Secret, or the seed's plain-text field), and
which Boundary workers of the controller are this resource's own."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field

from boundary_api import Conflict, Worker
from boundary_api.ports import BoundaryPort
from boundary_operator import naming
from boundary_operator.manifest import Manifest
from boundary_operator.workers.builders import WorkerContext
from boundary_operator.workers.status import Event, SyncResult


class ConfigError(Exception):
    """The resource cannot be acted on as it is; the message names the field."""


class WorkerNotOurs(Exception):
    """A Boundary worker with the name we want exists and was not created by us."""


@dataclass(frozen=True)
class Identity:
    """A BoundaryPKIWorker as its Boundary workers' ownership markers name it."""

    cluster: str
    namespace: str
    name: str
    uid: str

    def worker_name(self, ordinal: int) -> str:
        return naming.boundary_worker_name(self.cluster, self.namespace, self.name, ordinal)

    def description(self, ordinal: int) -> str:
        return naming.owner_marker(
            cluster=self.cluster,
            namespace=self.namespace,
            worker=self.name,
            uid=self.uid,
            ordinal=ordinal,
        )

    def owned_ordinal(self, worker: Worker) -> int | None:
        """The ordinal of a worker we created for this resource, or None if not ours."""
        owner = naming.parse_owner_marker(
            worker.description, "cluster", "namespace", "worker", "uid", "ordinal"
        )
        if owner is None or (
            owner["cluster"],
            owner["namespace"],
            owner["worker"],
            owner["uid"],
        ) != (self.cluster, self.namespace, self.name, self.uid):
            return None
        return int(owner["ordinal"]) if owner["ordinal"].isdigit() else None


def secret_data(secret: Manifest | None) -> dict[str, str]:
    data: dict[str, str] = (secret or {}).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


@dataclass
class Registration:
    """Workers registered at once, before any listing."""

    tokens: dict[str, str] = field(default_factory=dict)
    owned: dict[int, Worker] = field(default_factory=dict)
    taken: bool = False
    """Some name was taken already."""


@dataclass(frozen=True)
class Registrar:
    """Registers and deregisters this resource's workers with the controller; never touches a
    worker whose ownership marker is not this resource's."""

    boundary: BoundaryPort
    identity: Identity

    async def owned(self) -> dict[int, Worker]:
        """Our Boundary workers for this resource, by ordinal."""
        prefix = self.identity.worker_name(0).rsplit("-", 1)[0]
        candidates = await self.boundary.workers.list(
            filter=f'"/item/name" matches "^{prefix}-[0-9]+$"'
        )
        owned: dict[int, Worker] = {}
        for worker in candidates:
            ordinal = self.identity.owned_ordinal(worker)
            if ordinal is not None:
                owned[ordinal] = worker
        return owned

    async def register(self, ordinal: int) -> tuple[Worker, str]:
        try:
            created = await self.boundary.workers.create_controller_led(
                self.identity.worker_name(ordinal), description=self.identity.description(ordinal)
            )
        except Conflict:
            raise WorkerNotOurs(self.identity.worker_name(ordinal)) from None
        return created, created.controller_generated_activation_token.get_secret_value()

    async def deregister(self, worker: Worker) -> None:
        await self.boundary.workers.delete(worker.id)

    async def register_all(self, replicas: int, result: SyncResult) -> Registration:
        """Register every replica at once, before any listing: right when none of this
        resource's workers can exist yet (a name turns out taken otherwise)."""
        outcomes = await asyncio.gather(
            *(self.register(ordinal) for ordinal in range(replicas)), return_exceptions=True
        )
        registration = Registration()
        for ordinal, outcome in enumerate(outcomes):
            if isinstance(outcome, WorkerNotOurs):
                registration.taken = True
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                pod = naming.pod_name(self.identity.name, ordinal)
                registration.owned[ordinal], registration.tokens[pod] = outcome
                result.events.append(_registered_event(outcome[0], pod))
        return registration

    async def tokens(
        self,
        ctx: WorkerContext,
        stored: dict[str, str],
        reregister: set[int],
        result: SyncResult,
        registration: Registration | None = None,
    ) -> tuple[dict[str, str], dict[int, Worker]]:
        """A token for every replica (registering the missing ones), and our workers.

        `registration`: what register_all made already; when no name was taken, that is all
        there is, and the controller's workers are not listed."""
        if registration is not None:
            if not registration.taken:
                return registration.tokens, registration.owned
            # A name was taken: the listing finds out whose (ours, with the token Secret lost
            # by hand; or a stranger's), and finds those just made ours, their tokens held.
            stored = {**stored, **registration.tokens}
        owned = await self.owned()
        tokens: dict[str, str] = {}
        for ordinal in range(ctx.spec.replicas):
            pod = naming.pod_name(ctx.name, ordinal)
            worker = owned.get(ordinal)
            activated = bool(worker and worker.release_version)
            # A worker whose token we no longer hold and that never activated can never
            # activate: replace it. An activated one keeps its credentials in its storage.
            stale = worker is not None and pod not in stored and not activated
            if worker is not None and (ordinal in reregister or stale):
                await self.deregister(worker)
                result.events.append(
                    Event(
                        "Normal",
                        "Reregistering",
                        f"replaced Boundary worker {worker.name} ({worker.id}) of {pod}",
                    )
                )
                worker = None
            if worker is None:
                worker, tokens[pod] = await self.register(ordinal)
                owned[ordinal] = worker
                result.events.append(_registered_event(worker, pod))
            elif pod in stored:
                tokens[pod] = stored[pod]
        # Ordinals past the replica count keep their token until their worker is deleted.
        for ordinal in owned:
            pod = naming.pod_name(ctx.name, ordinal)
            if ordinal >= ctx.spec.replicas and pod in stored:
                tokens[pod] = stored[pod]
        return tokens, owned


def _registered_event(worker: Worker, pod: str) -> Event:
    return Event(
        "Normal", "Registered", f"registered Boundary worker {worker.name} ({worker.id}) for {pod}"
    )


PLAIN_TEXT_WARNING = Event(
    "Warning",
    "PlainTextToken",
    "spec.registration.controllerGeneratedActivationToken holds a token in plain text; it was "
    "copied into the operator's Secret. Use activationTokenSecretRef.",
)


def plain_text_tokens(ctx: WorkerContext, token: str, result: SyncResult) -> dict[str, str]:
    result.events.append(PLAIN_TEXT_WARNING)
    return {naming.pod_name(ctx.name, 0): token} if ctx.spec.replicas else {}


def secret_ref_tokens(
    ctx: WorkerContext, name: str, key: str | None, secret: Manifest | None
) -> dict[str, str]:
    """The user's tokens from their Secret: one key for a single replica, else a key per pod."""
    where = "spec.registration.activationTokenSecretRef"
    if secret is None:
        raise ConfigError(f"{where}: Secret {name!r} does not exist")
    data = secret_data(secret)
    pods = [naming.pod_name(ctx.name, i) for i in range(ctx.spec.replicas)]
    if key:
        if key not in data:
            raise ConfigError(f"{where}: Secret {name!r} has no key {key!r}")
        return {pods[0]: data[key]} if pods else {}
    missing = [p for p in pods if p not in data]
    if missing:
        raise ConfigError(
            f"{where}: Secret {name!r} lacks a key for each pod: missing {', '.join(missing)}"
        )
    return {p: data[p] for p in pods}
