"""What the handlers share for the operator's lifetime: settings, the Kubernetes client, a
lazily logged-in Boundary client, the Service publisher, and one lock per resource so a timer and
an update handler never reconcile the same object at once.

It is kopf's `memo`: `kopf.operator(memo=runtime)` hands it to every handler, so a handler can be
called in a test with a Runtime built on fakes. kopf copies the memo for each resource object; a
Runtime's copy is itself, so every handler sees the one login and the one set of views."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from boundary_api import PermissionDenied, Unauthenticated
from boundary_api.ports import BoundaryPort
from boundary_operator.boundary_session import connect
from boundary_operator.kube import Credentials, KubePort
from boundary_operator.services.desired import SyncSettings
from boundary_operator.services.publisher import ServicePublisher
from boundary_operator.services.sync import ServiceSync
from boundary_operator.settings import OperatorSettings
from boundary_operator.workers.reloading import ReloadWatch

log = logging.getLogger("boundary_operator")

Connect = Callable[[OperatorSettings], Awaitable[BoundaryPort]]


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: KubePort
    connect: Connect = connect
    """Logs in to the controller (a fake's in tests)."""
    kube_credentials: Callable[[], Awaitable[Credentials]] | None = None
    """The live Kubernetes credentials kopf's own client logs in with."""
    _boundary: BoundaryPort | None = None
    _login_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _publisher: ServicePublisher | None = None
    resync_task: asyncio.Task[None] | None = None
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    reloads: ReloadWatch = field(default_factory=ReloadWatch)
    """Which workers have not loaded their new configuration yet, across reconciles."""
    pod_states: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    """Worker pods by uid: (stopping, ready) as last handled, so the pod watch acts on changes
    of these only."""

    def __copy__(self) -> Runtime:
        return self

    async def boundary(self) -> BoundaryPort | None:
        """The logged-in client, or None when the operator has no controller credentials.
        Login errors propagate so the caller can report them and back off."""
        if not self.settings.has_controller_credentials:
            return None
        async with self._login_lock:
            if self._boundary is None:
                self._boundary = await self.connect(self.settings)
                log.info("logged in to the Boundary controller at %s", self.settings.boundary_addr)
                if self._publisher is not None:
                    # The views describe the controller, not the login: they carry over.
                    self._publisher.sync.boundary = self._boundary
            return self._boundary

    async def publisher(self) -> ServicePublisher | None:
        """The Service publisher; it and its views live as long as the operator, across logins
        (a fresh one per login saw every alias as a stranger's until its first refresh)."""
        boundary = await self.boundary()
        if boundary is None:
            return None
        if self._publisher is None:
            s = self.settings
            self._publisher = ServicePublisher(
                kube=self.kube,
                sync=ServiceSync(boundary, s.cluster_name),
                settings=SyncSettings(
                    cluster_name=s.cluster_name,
                    default_scope=s.default_scope,
                    alias_template=s.alias_template,
                    cluster_domain=s.cluster_domain,
                    address_mode=s.target_address,
                ),
                namespaces=list(s.namespaces),
            )
        return self._publisher

    async def forget_login(self, error: BaseException) -> None:
        """After a refusal that may mean the login ended (the controller answers an expired or
        revoked token with 403, like a missing grant), log in afresh next time, once the
        token itself is found dead: a real missing grant does not make it log in again."""
        boundary = self._boundary
        if boundary is None or not isinstance(error, Unauthenticated | PermissionDenied):
            return
        if isinstance(error, PermissionDenied) and await boundary.login_alive():
            return
        async with self._login_lock:
            if self._boundary is boundary:
                await boundary.aclose()
                self._boundary = None
                log.info("the Boundary login ended (%s); logging in again", error.message)

    async def aclose(self) -> None:
        if self._boundary is not None:
            await self._boundary.aclose()
        await self.kube.aclose()
