"""The agent: ties its parts together. Logged-in users and their aliases (users), the local end
of each alias (addresses), sessions proxied through workers (sessions), the DNS server (dns) and
the control API (control); here are the lifecycle, pause and resume, the alias refresh loop and
the handling of each proxied connection.

Sessions are authorized on the first connection to an alias, not on DNS queries, and reused
until they expire or run out of connections. A connection or control request is served only
for the user who owns the session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path

from boundary_agent import VERSION, protocol
from boundary_agent.addresses import ListenError, Listeners
from boundary_agent.config import AgentConfig
from boundary_agent.control import ControlAPI
from boundary_agent.dns import DNSServer, LocalAddresses, Resolver
from boundary_agent.health import Health
from boundary_agent.kube import CREDENTIAL_KIND, is_kubernetes_target
from boundary_agent.logins import LoginStore
from boundary_agent.peers import peer_uid
from boundary_agent.resolver import ResolverIntegration, forward_upstreams
from boundary_agent.sessions import Sessions
from boundary_agent.users import ClientFactory, Refresh, User, Users, boundary_client
from boundary_api import (
    Alias,
    BoundaryError,
    NotFound,
    PermissionDenied,
    Unavailable,
)

log = logging.getLogger("boundary_agent")


class Agent:
    def __init__(self, config: AgentConfig, *, connect: ClientFactory = boundary_client) -> None:
        """`connect` makes the Boundary client of each login."""
        self.config = config
        self.paused = False
        self.pause_reason = ""
        self.health = Health(config.auto_pause_failures, self._auto_pause)
        store = LoginStore(Path(config.login_store)) if config.login_store else None
        self.users = Users(self.health, connect, store)
        self.sessions = Sessions(self.health)
        self.listeners = Listeners(config, self._serve)
        self.ports: dict[str, int] = {}
        """Alias -> the target's port, once learnt."""
        self.kubernetes: set[str] = set()
        """Aliases learnt to be Kubernetes accesses (boundary_agent.kube), with their port."""
        self._tasks: list[asyncio.Task[None]] = []
        self.resolver = Resolver(self.lookup, forward_upstreams(config), config.dns_request_timeout)
        self.dns = DNSServer(self.resolver, config.listen_addresses())
        self.control = ControlAPI(self)
        self.system_resolver = ResolverIntegration(config)
        """How the system is pointed at the agent (resolver_mode); the caller installs it once
        the agent listens."""

    # ------------------------------------------------------------------ state

    def lookup(self, name: str) -> LocalAddresses | None:
        """The local addresses for an alias name; None to defer to upstream."""
        if self.paused or not self.users:
            return None
        for user in self.users:
            if name in user.aliases:
                addresses = self.listeners.addresses(name)
                if addresses is not None:
                    return addresses
        return None

    def pause(self, reason: str = "paused by request") -> None:
        self.paused, self.pause_reason = True, reason
        self.resolver.forget_answers()
        self.system_resolver.flush_caches()
        self.sessions.drop(lambda s: True)
        self.write_state()

    def _auto_pause(self, reason: str) -> None:
        if not self.paused:
            self.pause(reason)

    def reload(self, fresh: AgentConfig) -> None:
        """SIGHUP: take the fields that can change without dropping sessions from a freshly
        read config (logging is the caller's: logs.configure_logging). Every other field needs
        a restart."""
        reloadable = (
            "alias_refresh_interval",
            "dns_request_timeout",
            "log_file",
            "log_level",
            "log_to_stdout",
            "override_upstream_dns_servers",
            "auto_pause_failures",
        )
        self.config = self.config.model_copy(update={f: getattr(fresh, f) for f in reloadable})
        self.resolver.timeout = fresh.dns_request_timeout
        if fresh.override_upstream_dns_servers:
            self.resolver.upstreams = fresh.upstreams()
        self.health.auto_pause_failures = fresh.auto_pause_failures

    def resume(self) -> None:
        self.paused, self.pause_reason = False, ""
        self.resolver.forget_answers()
        self.system_resolver.flush_caches()
        self.health.controller_answered()
        self.write_state()

    # ------------------------------------------------------------------ users

    async def add_token(self, uid: int, boundary_addr: str, token: str) -> User:
        """Log a local user in with an auth token (from `boundary-agent login` or the official
        CLI's hand-off). A new controller or Boundary user drops that OS user's sessions."""
        previous = self.users.get(uid)
        before = previous.identity if previous else None
        user = await self.users.login(uid, boundary_addr or self.config.boundary_addr, token)
        self.resolver.forget_answers()
        if before is not None and before != user.identity:
            self.sessions.drop(lambda s: s.uid == uid)
        await self.refresh_user(user)
        self.write_state()
        return user

    async def refresh_user(self, user: User) -> None:
        """The user's aliases from the controller. The DNS answers cached from the old ones are
        forgotten when the aliases (or the user) go."""
        before = user.aliases
        outcome = await self.users.refresh(user)
        if outcome is Refresh.LOGGED_OUT:
            self.resolver.forget_answers()
            self.system_resolver.flush_caches()
            self.sessions.drop(lambda s: s.uid == user.uid)
            self.write_state()
        elif outcome is Refresh.UPDATED:
            changed = user.aliases != before
            if changed:
                self.resolver.forget_answers()
            for alias in user.aliases.values():
                await self.ensure_listener(user, alias)
            if changed:
                # Once the new aliases answer: what resolved asked in between went upstream.
                self.system_resolver.flush_caches()

    async def _refresh_forever(self) -> None:
        """Every interval, each user's aliases, for as long as the agent runs. A round that fails
        in a way nobody foresaw is reported (with its traceback in the log) and the next round
        comes all the same: the agent must never stop learning new aliases."""
        while True:
            for user in self.users:
                try:
                    await self.refresh_user(user)
                except Exception as exc:
                    self.health.record_error(
                        f"alias refresh for uid {user.uid} failed: {exc!r}", cause=exc
                    )
            await asyncio.sleep(self.config.alias_refresh_interval)

    # ------------------------------------------------------------------ listeners

    async def _target_port(self, user: User, alias: Alias) -> int | None:
        """The port of the alias's target; None, with the reason recorded, when the controller
        cannot tell now (the next refresh asks again)."""
        if alias.value in self.ports:
            return self.ports[alias.value]
        try:
            target = await user.client.targets.read(alias.destination_id)
            port = target.default_port
            if is_kubernetes_target(target.description):
                self.kubernetes.add(alias.value)
        except (PermissionDenied, NotFound):
            port = await self._port_from_a_session(user, alias)
        except BoundaryError as exc:
            self.health.controller_failed(f"cannot read target of {alias.value}: {exc}")
            return None
        if port:
            self.ports[alias.value] = port
        return port

    async def _port_from_a_session(self, user: User, alias: Alias) -> int | None:
        """No read grant on the target: a session says the port (and serves the first
        connection, so it is not wasted)."""
        try:
            session = await self.sessions.authorize(user, alias.value, "", 0)
        except Unavailable:
            return None  # counted as a controller failure where it happened
        except BoundaryError as exc:
            self.health.record_error(f"cannot learn the port of {alias.value}: {exc}")
            return None
        if any(c.decoded.get("kind") == CREDENTIAL_KIND for c in session.authorization.credentials):
            self.kubernetes.add(alias.value)
        return session.authorization.endpoint_port

    def kubernetes_aliases(self, user: User) -> set[str]:
        """The user's aliases that are Kubernetes accesses, as far as learnt."""
        return {value for value in user.aliases if value in self.kubernetes}

    async def ensure_listener(self, user: User, alias: Alias) -> None:
        if not alias.destination_id:
            return
        port = await self._target_port(user, alias)
        if port is None:
            return
        new = self.listeners.addresses(alias.value) is None
        try:
            await self.listeners.listen(alias.value, port)
        except ListenError as exc:
            self.health.record_error(str(exc))  # the next refresh tries again
            return
        if new:
            # The name went upstream until now, and the resolver remembers that.
            self.resolver.forget_answers()

    # ------------------------------------------------------------------ connections

    async def _serve(
        self, alias: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        sock: socket.socket = writer.get_extra_info("socket")
        local = sock.getsockname()
        try:
            uid = peer_uid(sock)
            user = self.users.get(uid)
            if self.paused or user is None or alias not in user.aliases:
                log.info("refused a connection to %s from uid %s", alias, uid)
                return
            session, channel = await self.sessions.open_channel(user, alias, local[0], local[1])
            session.connections_used += 1
            session.connections_left = channel.result.connections_left
            await protocol.pump(channel, reader, writer)
        except (BoundaryError, protocol.SessionProtocolError) as exc:
            self.health.record_error(f"connection to {alias}: {exc}")
        finally:
            with contextlib.suppress(OSError):
                writer.close()

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
            "users": sorted(u.uid for u in self.users),
            "aliases": len(self.listeners.pool.by_name),
        }
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle)
        tmp.replace(path)

    async def start(self) -> list[tuple[str, int]]:
        """Listen for DNS and control requests and start refreshing aliases, with the logins
        kept from the last run (refreshed first). LoginStoreError, DNSListenError or
        RuntimeError (the control port) when one of them cannot be had."""
        restored = self.users.restore()
        if restored:
            log.info("%d login(s) kept from the last run", restored)
        bound = await self.dns.start()
        port = self.config.control_listen_port
        try:
            await self.control.start(port)
        except OSError as exc:
            await self.dns.stop()
            raise RuntimeError(
                f"control API: cannot listen on control_listen_port {port}: {exc.strerror}"
            ) from exc
        self._tasks.append(asyncio.create_task(self._refresh_forever()))
        self.write_state()
        return bound

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.sessions.close()
        await self.dns.stop()
        await self.control.stop()
        await self.users.close()
        await self.listeners.close()
        Path(self.config.state_file).unlink(missing_ok=True)  # noqa: ASYNC240
