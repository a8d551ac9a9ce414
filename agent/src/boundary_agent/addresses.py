"""The local end of each alias: a stable address per name (IPv4, IPv6 or both), put on the
interface when the kernel does not already deliver it, and a TCP listener on the target's port
at each address."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator

from boundary_agent.config import AgentConfig, join_host_port, needs_no_address
from boundary_agent.dns import LocalAddresses

log = logging.getLogger("boundary_agent")

ConnectionHandler = Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""(alias, reader, writer): serves one connection to an alias's local address."""


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


class ListenError(Exception):
    """An alias's local end could not be set up; the message names the alias, the address and
    the cause."""


class Listeners:
    def __init__(self, config: AgentConfig, serve: ConnectionHandler) -> None:
        self.config = config
        self.pool = AddressPool(config.v4_prefix, config.v6_prefix)
        self.servers: dict[tuple[str, int], asyncio.Server] = {}
        self._serve = serve
        self._ready: set[str] = set()
        self._added_addresses: list[str] = []

    def addresses(self, alias: str) -> LocalAddresses | None:
        """The alias's local addresses, once it listens at every one of them."""
        return self.pool.by_name[alias] if alias in self._ready else None

    async def listen(self, alias: str, port: int) -> None:
        """Listen for the alias on `port` at each of its local addresses. Raises ListenError
        when one cannot be had; calling again tries the missing ones again."""
        for address in self.pool.addresses(alias).addresses:
            if (address, port) in self.servers:
                continue
            await self._ensure_address(alias, address)
            try:
                server = await asyncio.start_server(
                    functools.partial(self._serve, alias),
                    address,
                    port,
                    reuse_address=True,
                    backlog=socket.SOMAXCONN,  # asyncio's 100 overflows under a burst
                )
            except OSError as exc:
                cause = os.strerror(exc.errno) if exc.errno else str(exc)
                raise ListenError(
                    f"cannot listen for {alias} on {join_host_port(address, port)}: {cause}"
                ) from exc
            self.servers[(address, port)] = server
            log.info("alias %s -> %s", alias, join_host_port(address, port))
        self._ready.add(alias)

    async def _ensure_address(self, alias: str, address: str) -> None:
        if needs_no_address(address) or address in self._added_addresses:
            return
        argv = ["addr", "add", _host_prefix(address), "dev", self._device]
        if ":" in address:
            argv.append("nodad")  # usable at once, not after duplicate address detection
        try:
            await _ip(*argv)
        except IPCommandError as exc:
            # Already there (left by an agent that did not stop cleanly): ours to use.
            if "File exists" not in str(exc):
                raise ListenError(
                    f"cannot add {address} to {self._device} for {alias}: {exc}"
                ) from exc
        self._added_addresses.append(address)

    @property
    def _device(self) -> str:
        return self.config.interface_to_use or "lo"

    async def close(self) -> None:
        """Stop listening, and take the added addresses off the interface again."""
        for server in self.servers.values():
            server.close()
        for address in self._added_addresses:
            try:
                await _ip("addr", "del", _host_prefix(address), "dev", self._device)
            except IPCommandError as exc:
                log.warning("cannot remove %s from %s: %s", address, self._device, exc)
        self._added_addresses.clear()


class IPCommandError(Exception):
    """`ip` failed; the message is what it said."""


IP_TIMEOUT = 10.0
"""Seconds an `ip` command may take (it is local and quick; this only bounds a hang)."""


async def _ip(*args: str) -> None:
    """Run `ip ARGS` without blocking the event loop; IPCommandError with its message when it
    fails."""
    command = " ".join(["ip", *args])
    try:
        process = await asyncio.create_subprocess_exec(
            "ip", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise IPCommandError(f"cannot run `{command}`: {exc.strerror}") from exc
    try:
        async with asyncio.timeout(IP_TIMEOUT):
            _, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise IPCommandError(f"`{command}` took more than {IP_TIMEOUT:.0f} s") from None
    if process.returncode != 0:
        said = stderr.decode(errors="replace").strip()
        raise IPCommandError(said or f"`{command}` exited with {process.returncode}")


def _host_prefix(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"
