"""Sessions, per (OS user, alias): authorized lazily on a first connection, reused by that user's
later connections until they expire or run out of connections, and cancelled at the worker when
dropped."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import os
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from boundary_agent import protocol
from boundary_agent.health import Health
from boundary_agent.users import User
from boundary_api import SessionAuthorization, Unavailable

log = logging.getLogger("boundary_agent")


@dataclass
class ActiveSession:
    uid: int
    alias: str
    authorization: SessionAuthorization = field(repr=False)
    tofu_token: str = field(repr=False)
    local_address: str
    local_port: int
    connections_used: int = 0
    connections_left: int = -1
    activated: bool = False
    """A worker has accepted a handshake: the session is active with our TOFU token."""
    activation: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    """The session's client TLS context, built on its first connection, for all of them."""

    @property
    def expired(self) -> bool:
        expiry = self.authorization.data.expiration
        return bool(expiry and expiry <= datetime.datetime.now(datetime.UTC))

    @property
    def exhausted(self) -> bool:
        return self.connections_left == 0


class Sessions:
    def __init__(self, health: Health) -> None:
        self.health = health
        self.active: dict[tuple[int, str], ActiveSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        """Cancellations under way; each leaves the set when done."""
        self._session_locks: collections.defaultdict[tuple[int, str], asyncio.Lock] = (
            collections.defaultdict(asyncio.Lock)
        )
        self.replaced: list[ActiveSession] = []
        """Sessions a fresh one took over from (kube-credential): no longer handed to new
        connections, left to finish what they carry, and cancelled with the others."""

    def of_user(self, uid: int | None) -> list[ActiveSession]:
        return [s for s in self.active.values() if s.uid == uid]

    def drop(self, which: Callable[[ActiveSession], bool]) -> None:
        dropped = [s for s in self.replaced if which(s)]
        self.replaced = [s for s in self.replaced if not which(s) and not s.expired]
        for key, session in list(self.active.items()):
            if which(session):
                del self.active[key]
                dropped.append(session)
        for session in dropped:
            task = asyncio.create_task(self._cancel(session))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _cancel(session: ActiveSession) -> None:
        try:
            await protocol.cancel_session(session.authorization.data, session.tofu_token)
        except Exception as exc:  # the session may already be gone
            log.debug("cancelling %s: %s", session.authorization.session_id, exc)

    async def close(self) -> None:
        """Cancel every session at its worker (the agent is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        sessions = [*self.active.values(), *(s for s in self.replaced if not s.expired)]
        await asyncio.gather(*(self._cancel(s) for s in sessions), return_exceptions=True)
        self.active.clear()
        self.replaced.clear()

    async def authorize(
        self, user: User, alias: str, address: str, port: int, *, fresh: bool = False
    ) -> ActiveSession:
        """The user's session to the alias: the current one while it lasts, or (always, when
        `fresh`) a new one, which later connections then use."""
        key = (user.uid, alias)
        async with self._session_locks[key]:
            current = self.active.get(key)
            if current and not current.expired and not current.exhausted and not fresh:
                return current
            host_id = user.aliases[alias].host_id if alias in user.aliases else ""
            try:
                authorization = await user.client.sessions.authorize(alias, host_id=host_id)
            except Unavailable as exc:
                self.health.controller_failed(f"cannot authorize a session for {alias}: {exc}")
                raise
            self.health.controller_answered()
            session = ActiveSession(
                uid=user.uid,
                alias=alias,
                authorization=authorization,
                tofu_token=protocol.new_tofu_token(),
                local_address=address,
                local_port=port,
                connections_left=authorization.connection_limit,
            )
            if current is not None and not current.expired:
                self.replaced = [*(s for s in self.replaced if not s.expired), current]
            self.active[key] = session
            if authorization.credentials:
                _notify(
                    f"Boundary session to {alias} brought "
                    f"{len(authorization.credentials)} credential(s); "
                    "see `boundary-agent sessions`"
                )
            return session

    async def open_channel(
        self, user: User, alias: str, address: str, port: int
    ) -> tuple[ActiveSession, protocol.SessionChannel]:
        """A channel through one of the session's workers, tried in the controller's order.
        When none answers, the session is forgotten and one new session is tried the same way
        (the controller may pick a live worker). The client has sent nothing upstream yet, so
        retrying is invisible to it."""
        unreachable = protocol.WorkerUnreachable(f"no worker answered for {alias}")
        for _ in range(2):
            session = await self.authorize(user, alias, address, port)
            data = session.authorization.data
            for index in range(max(len(data.worker_addresses), 1)):
                try:
                    channel = await self.handshake(session, index)
                except protocol.WorkerUnreachable as exc:
                    log.info("session %s for %s: %s", session.authorization.session_id, alias, exc)
                    unreachable = exc
                    continue
                return session, channel
            if self.active.get((user.uid, alias)) is session:
                del self.active[(user.uid, alias)]
        raise unreachable

    @staticmethod
    async def handshake(session: ActiveSession, worker_index: int) -> protocol.SessionChannel:
        """The first handshake of a session activates it at the worker; connections racing it
        lose with "session is not in a pending state" (1011). So until one handshake has
        succeeded, handshakes of the session go one at a time; after that, all at once."""
        data, token = session.authorization.data, session.tofu_token
        session.tls = session.tls or protocol.tls_context(data)
        if not session.activated:
            async with session.activation:
                if not session.activated:
                    channel = await protocol.open_channel(
                        data, token, worker_index=worker_index, context=session.tls
                    )
                    session.activated = True
                    return channel
        return await protocol.open_channel(
            data, token, worker_index=worker_index, context=session.tls
        )


def _notify(message: str) -> None:
    log.info("%s", message)
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        with contextlib.suppress(OSError):
            subprocess.Popen(
                ["notify-send", "boundary-agent", message],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
