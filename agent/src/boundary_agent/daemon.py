"""The agent: per-user Boundary logins, the resolvable-alias directory, local addresses and
listeners, lazily authorized sessions proxied through workers, and the control API.

Sessions are authorized on the first connection to an alias, not on DNS queries, and reused
until they expire or run out of connections. Auth tokens are held in memory, per OS user; a
connection or control request is served only for the user who owns the session."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import functools
import ipaddress
import json
import logging
import os
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from boundary_agent import protocol
from boundary_agent.config import AgentConfig, join_host_port, needs_no_address
from boundary_agent.dns import DNSServer, LocalAddresses, Resolver, system_upstreams
from boundary_agent.peers import peer_uid
from boundary_api import (
    Alias,
    BoundaryClient,
    BoundaryError,
    NotFound,
    PermissionDenied,
    SessionAuthorization,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("boundary_agent")
VERSION = "boundary-agent 0.1.0"


@dataclass
class User:
    uid: int
    boundary_addr: str
    client: BoundaryClient = field(repr=False)
    token_id: str
    user_id: str
    expiration: datetime.datetime | None
    alias_view: dict[str, Alias] = field(default_factory=dict)
    """Resolvable aliases by id, as listings update them."""
    aliases: dict[str, Alias] = field(default_factory=dict)
    """The same, by alias value."""
    list_token: str | None = None


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


class AddressPool:
    """Stable name -> local addresses (one per configured prefix: IPv4, IPv6 or both) while
    the agent runs."""

    def __init__(self, v4_prefix: str, v6_prefix: str = "") -> None:
        self._hosts = [_hosts_after_first(p) for p in (v4_prefix, v6_prefix) if p]
        self.by_name: dict[str, LocalAddresses] = {}

    def addresses(self, name: str) -> LocalAddresses:
        if name not in self.by_name:
            self.by_name[name] = LocalAddresses(tuple(str(next(h)) for h in self._hosts))
        return self.by_name[name]


def _hosts_after_first(prefix: str) -> Iterator[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    hosts = ipaddress.ip_network(prefix).hosts()
    next(hosts)  # keep the first address (the .1 of 127/8 is the loopback host)
    return hosts


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.users: dict[int, User] = {}
        self.pool = AddressPool(config.v4_prefix, config.v6_prefix)
        self.paused = False
        self.pause_reason = ""
        self.errors: collections.deque[str] = collections.deque(maxlen=20)
        self.sessions: dict[tuple[int, str], ActiveSession] = {}
        self.listeners: dict[tuple[str, int], asyncio.Server] = {}
        self.ports: dict[str, int] = {}
        self._failures = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._session_locks: collections.defaultdict[tuple[int, str], asyncio.Lock] = (
            collections.defaultdict(asyncio.Lock)
        )
        self._added_addresses: list[str] = []
        listen_hosts = {h for h, _ in config.listen_addresses()}
        upstreams = config.upstreams() or system_upstreams(exclude=listen_hosts)
        self.resolver = Resolver(self.lookup, upstreams, config.dns_request_timeout)
        self.dns = DNSServer(self.resolver, config.listen_addresses())
        self._control: web.AppRunner | None = None

    # ------------------------------------------------------------------ state

    def record_error(self, message: str) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
        self.errors.appendleft(f"{stamp} {message}")
        log.warning("%s", message)

    def _controller_failed(self, message: str) -> None:
        self.record_error(message)
        self._failures += 1
        if self._failures >= self.config.auto_pause_failures and not self.paused:
            self.pause(f"paused after {self._failures} failures to reach the controller")

    def lookup(self, name: str) -> LocalAddresses | None:
        """The local addresses for an alias name; None to defer to upstream."""
        if self.paused or not self.users:
            return None
        for user in self.users.values():
            if name in user.aliases and name in self.pool.by_name:
                return self.pool.by_name[name]
        return None

    def pause(self, reason: str = "paused by request") -> None:
        self.paused, self.pause_reason = True, reason
        self.resolver.forget_answers()
        self._drop_sessions(lambda s: True)
        self.write_state()

    def resume(self) -> None:
        self.paused, self.pause_reason, self._failures = False, "", 0
        self.resolver.forget_answers()
        self.write_state()

    def _drop_sessions(self, which: Callable[[ActiveSession], bool]) -> None:
        for key, session in list(self.sessions.items()):
            if which(session):
                del self.sessions[key]
                task = asyncio.create_task(self._cancel(session))
                self._tasks.append(task)

    async def _cancel(self, session: ActiveSession) -> None:
        try:
            await protocol.cancel_session(session.authorization.data, session.tofu_token)
        except Exception as exc:  # the session may already be gone
            log.debug("cancelling %s: %s", session.authorization.session_id, exc)

    # ------------------------------------------------------------------ users

    async def add_token(self, uid: int, boundary_addr: str, token: str) -> User:
        """Log a local user in with an auth token (from `boundary-agent login` or the official
        CLI's hand-off). A new controller or Boundary user drops that OS user's sessions."""
        token_id = "_".join(token.split("_")[:2])
        client = BoundaryClient(boundary_addr or self.config.boundary_addr, token=token)
        try:
            info = await client.auth_tokens.read(token_id)
        except BaseException:
            await client.aclose()
            raise
        user = User(
            uid=uid,
            boundary_addr=client.addr,
            client=client,
            token_id=token_id,
            user_id=info.user_id,
            expiration=info.expiration_time,
        )
        old = self.users.get(uid)
        if old is not None:
            if (old.boundary_addr, old.user_id) != (user.boundary_addr, user.user_id):
                self._drop_sessions(lambda s: s.uid == uid)
            await old.client.aclose()
        self.users[uid] = user
        self.resolver.forget_answers()
        await self.refresh_user(user)
        self.write_state()
        return user

    async def refresh_user(self, user: User) -> None:
        if user.expiration and user.expiration <= datetime.datetime.now(datetime.UTC):
            self.record_error(f"auth token {user.token_id} expired; log in again")
            self._drop_sessions(lambda s: s.uid == user.uid)
            self.users.pop(user.uid, None)
            self.resolver.forget_answers()
            await user.client.aclose()
            return
        try:
            listing = await user.client.users.list_resolvable_aliases(
                user.user_id, list_token=user.list_token
            )
        except Unauthenticated:
            self.record_error(f"failed to refresh alias cache: token {user.token_id} rejected")
            self._drop_sessions(lambda s: s.uid == user.uid)
            self.users.pop(user.uid, None)
            self.resolver.forget_answers()
            await user.client.aclose()
            return
        except BoundaryError as exc:
            self._controller_failed(f"failed to refresh alias cache: {exc}")
            return
        self._failures = 0
        listing.apply_to(user.alias_view)
        user.list_token = listing.list_token
        aliases = {a.value: a for a in user.alias_view.values()}
        if aliases != user.aliases:
            user.aliases = aliases
            self.resolver.forget_answers()
        for alias in user.aliases.values():
            await self._ensure_listener(user, alias)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.alias_refresh_interval)
            for user in list(self.users.values()):
                await self.refresh_user(user)

    # ------------------------------------------------------------------ listeners

    async def _target_port(self, user: User, alias: Alias) -> int | None:
        if alias.value in self.ports:
            return self.ports[alias.value]
        try:
            target = await user.client.targets.read(alias.destination_id)
            port = target.default_port
        except (PermissionDenied, NotFound):
            # No read grant on the target: a session says the port (and serves the first
            # connection, so it is not wasted).
            session = await self._authorize(user, alias.value, "", 0)
            port = session.authorization.endpoint_port
        except BoundaryError as exc:
            self._controller_failed(f"cannot read target of {alias.value}: {exc}")
            return None
        if port:
            self.ports[alias.value] = port
        return port

    async def _ensure_listener(self, user: User, alias: Alias) -> None:
        if not alias.destination_id:
            return
        port = await self._target_port(user, alias)
        if port is None:
            return
        for address in self.pool.addresses(alias.value).addresses:
            if (address, port) in self.listeners:
                continue
            self._ensure_address(address)
            server = await asyncio.start_server(
                functools.partial(self._serve, alias.value),
                address,
                port,
                reuse_address=True,
                backlog=socket.SOMAXCONN,  # asyncio's 100 overflows under a burst of connections
            )
            self.listeners[(address, port)] = server
            log.info("alias %s -> %s", alias.value, join_host_port(address, port))

    def _ensure_address(self, address: str) -> None:
        if needs_no_address(address) or address in self._added_addresses:
            return
        argv = ["ip", "addr", "add", _host_prefix(address), "dev", self._device]
        if ":" in address:
            argv.append("nodad")  # usable at once, not after duplicate address detection
        subprocess.run(argv, check=False, capture_output=True)
        self._added_addresses.append(address)

    @property
    def _device(self) -> str:
        return self.config.interface_to_use or "lo"

    # ------------------------------------------------------------------ sessions

    async def _authorize(self, user: User, alias: str, address: str, port: int) -> ActiveSession:
        key = (user.uid, alias)
        async with self._session_locks[key]:
            current = self.sessions.get(key)
            if current and not current.expired and not current.exhausted:
                return current
            host_id = user.aliases[alias].host_id if alias in user.aliases else ""
            try:
                authorization = await user.client.sessions.authorize(alias, host_id=host_id)
            except Unavailable as exc:
                self._controller_failed(f"cannot authorize a session for {alias}: {exc}")
                raise
            self._failures = 0
            session = ActiveSession(
                uid=user.uid,
                alias=alias,
                authorization=authorization,
                tofu_token=protocol.new_tofu_token(),
                local_address=address,
                local_port=port,
                connections_left=authorization.connection_limit,
            )
            self.sessions[key] = session
            if authorization.credentials:
                _notify(
                    f"Boundary session to {alias} brought "
                    f"{len(authorization.credentials)} credential(s); "
                    "see `boundary-agent sessions`"
                )
            return session

    async def _open_channel(
        self, user: User, alias: str, address: str, port: int
    ) -> tuple[ActiveSession, protocol.SessionChannel]:
        """A channel through one of the session's workers, tried in the controller's order.
        When none answers, the session is forgotten and one new session is tried the same way
        (the controller may pick a live worker). The client has sent nothing upstream yet, so
        retrying is invisible to it."""
        unreachable = protocol.WorkerUnreachable(f"no worker answered for {alias}")
        for _ in range(2):
            session = await self._authorize(user, alias, address, port)
            data = session.authorization.data
            for index in range(max(len(data.worker_addresses), 1)):
                try:
                    channel = await self._handshake(session, index)
                except protocol.WorkerUnreachable as exc:
                    log.info("session %s for %s: %s", session.authorization.session_id, alias, exc)
                    unreachable = exc
                    continue
                return session, channel
            if self.sessions.get((user.uid, alias)) is session:
                del self.sessions[(user.uid, alias)]
        raise unreachable

    @staticmethod
    async def _handshake(session: ActiveSession, worker_index: int) -> protocol.SessionChannel:
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

    async def _serve(
        self, alias: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sock: socket.socket = writer.get_extra_info("socket")
        local = sock.getsockname()
        try:
            uid = peer_uid(sock)
            user = self.users.get(uid) if uid is not None else None
            if self.paused or user is None or alias not in user.aliases:
                log.info("refused a connection to %s from uid %s", alias, uid)
                return
            session, channel = await self._open_channel(user, alias, local[0], local[1])
            session.connections_used += 1
            session.connections_left = channel.result.connections_left
            await protocol.pump(channel, reader, writer)
        except (BoundaryError, protocol.SessionProtocolError) as exc:
            self.record_error(f"connection to {alias}: {exc}")
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    # ------------------------------------------------------------------ control API

    def _request_uid(self, request: web.Request) -> int | None:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        return peer_uid(sock) if sock is not None else None

    async def _status(self, request: web.Request) -> web.Response:
        uid = self._request_uid(request)
        user = self.users.get(uid) if uid is not None else None
        body = {
            "boundary_addr": user.boundary_addr if user else self.config.boundary_addr,
            "auth_token_id": user.token_id if user else "",
            "auth_token_expiry": user.expiration.isoformat() if user and user.expiration else None,
            "version": VERSION,
            "status": "paused" if self.paused else "running",
            "errors": list(self.errors),
            "warnings": [self.pause_reason] if self.pause_reason else [],
        }
        return web.json_response(body)

    async def _sessions(self, request: web.Request) -> web.Response:
        uid = self._request_uid(request)
        items = []
        for session in self.sessions.values():
            if session.uid != uid:
                continue  # another user's session is not theirs to see
            auth = session.authorization
            items.append(
                {
                    "alias": session.alias,
                    "target_id": auth.target_id,
                    "local_address": join_host_port(session.local_address, session.local_port),
                    "expiration": auth.expiration.isoformat() if auth.expiration else None,
                    "connections_used": session.connections_used,
                    "connections_left": session.connections_left,
                    "session_authorization": {
                        "session_id": auth.session_id,
                        "created_time": (
                            auth.data.created_time or datetime.datetime.now(datetime.UTC)
                        ).isoformat(),
                        "credentials": [c.model_dump(mode="json") for c in auth.credentials],
                    },
                }
            )
        return web.json_response({"items": items})

    def _may_pause(self, request: web.Request) -> bool:
        """Pausing drops every user's sessions, so only root and the user the agent runs as may
        pause or resume it; another local user could otherwise cancel someone else's sessions."""
        uid = self._request_uid(request)
        return uid is not None and uid in (0, os.getuid())

    async def _pause(self, request: web.Request) -> web.Response:
        if not self._may_pause(request):
            return _denied("only root or the agent's own user may pause it")
        self.pause()
        return web.json_response({})

    async def _resume(self, request: web.Request) -> web.Response:
        if not self._may_pause(request):
            return _denied("only root or the agent's own user may resume it")
        self.resume()
        return web.json_response({})

    async def _tokens(self, request: web.Request) -> web.Response:
        uid = self._request_uid(request)
        if uid is None:
            return _denied("cannot tell which user is asking")
        body = await request.json()
        try:
            await self.add_token(uid, str(body.get("boundary_addr", "")), str(body["token"]))
        except (KeyError, BoundaryError) as exc:
            return web.json_response(
                {"kind": "InvalidArgument", "message": f"token not accepted: {exc}"}, status=400
            )
        return web.json_response({})

    async def start_control(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/v1/status", self._status),
                web.get("/v1/sessions", self._sessions),
                web.post("/v1/pause", self._pause),
                web.post("/v1/resume", self._resume),
                web.post("/v1/tokens", self._tokens),
            ]
        )
        self._control = web.AppRunner(app, access_log=None)
        await self._control.setup()
        port = int(
            os.environ.get("BOUNDARY_CLIENT_AGENT_LISTENING_PORT", self.config.control_listen_port)
        )
        await web.TCPSite(self._control, "127.0.0.1", port).start()
        with contextlib.suppress(OSError):  # the official CLI dials "localhost"
            await web.TCPSite(self._control, "::1", port).start()

    # ------------------------------------------------------------------ lifecycle

    def write_state(self) -> None:
        path = Path(self.config.state_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "pid": os.getpid(),
            "version": VERSION,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "dns": [f"{h}:{p}" for h, p in self.config.listen_addresses()],
            "users": sorted(self.users),
            "aliases": len(self.pool.by_name),
        }
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle)
        tmp.replace(path)

    async def start(self) -> list[tuple[str, int]]:
        bound = await self.dns.start()
        try:
            await self.start_control()
        except OSError as exc:
            await self.dns.stop()
            raise RuntimeError(
                f"control API: cannot listen on port "
                f"{self.config.control_listen_port}: {exc.strerror}"
            ) from exc
        self._tasks.append(asyncio.create_task(self._refresh_forever()))
        self.write_state()
        return bound

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(
            *(self._cancel(s) for s in self.sessions.values()), return_exceptions=True
        )
        self.sessions.clear()
        for server in self.listeners.values():
            server.close()
        await self.dns.stop()
        if self._control is not None:
            await self._control.cleanup()
        for user in self.users.values():
            await user.client.aclose()
        # Shutdown: nothing else runs on the loop any more, blocking calls are fine here.
        for address in self._added_addresses:
            subprocess.run(  # noqa: ASYNC221
                ["ip", "addr", "del", _host_prefix(address), "dev", self._device],
                check=False,
                capture_output=True,
            )
        Path(self.config.state_file).unlink(missing_ok=True)  # noqa: ASYNC240


def _host_prefix(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def _notify(message: str) -> None:
    log.info("%s", message)
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        with contextlib.suppress(OSError):
            subprocess.Popen(
                ["notify-send", "boundary-agent", message],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )


def _denied(message: str) -> web.Response:
    return web.json_response({"kind": "PermissionDenied", "message": message}, status=403)
