"""The agent's DNS server: answers the user's Boundary aliases with local addresses and forwards
every other query upstream, over UDP and TCP. When it cannot answer (paused, not logged in,
controller unreachable) it defers to upstream, so name resolution never breaks."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from boundary_agent.config import join_host_port

log = logging.getLogger("boundary_agent.dns")
ALIAS_TTL = 5
"""Short, so pausing the agent takes effect quickly in clients' caches."""
MAX_UDP = 65535


class DNSListenError(Exception):
    pass


@dataclass(frozen=True)
class LocalAddresses:
    """What an alias name resolves to: a local IPv4 address, a local IPv6 one, or both."""

    addresses: tuple[str, ...]

    def of_type(self, rdtype: dns.rdatatype.RdataType) -> list[str]:
        """The addresses a query of this type is answered with (empty: no data, never a
        forward)."""
        want_v6 = rdtype == dns.rdatatype.AAAA
        if rdtype == dns.rdatatype.ANY:
            return list(self.addresses)
        if rdtype not in (dns.rdatatype.A, dns.rdatatype.AAAA):
            return []
        return [a for a in self.addresses if (":" in a) == want_v6]


@dataclass
class Resolver:
    lookup: Callable[[str], LocalAddresses | None]
    """Alias name (lowercase, no trailing dot) -> its local addresses, or None to forward."""
    upstreams: list[tuple[str, int]]
    timeout: float = 10.0
    forwarded: int = field(default=0, init=False)
    answered: int = field(default=0, init=False)

    async def handle(self, wire: bytes, via_tcp: bool) -> bytes | None:
        try:
            query = _from_wire(wire)
        except Exception:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None  # a response, not a query: dropped, never answered nor forwarded
        if len(query.question) == 1:
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            addresses = self.lookup(name)
            if addresses is not None:
                self.answered += 1
                return _alias_answer(query, question, addresses).to_wire()
        self.forwarded += 1
        return await self.forward(wire, via_tcp, query)

    async def forward(self, wire: bytes, via_tcp: bool, query: dns.message.Message) -> bytes:
        for host, port in self.upstreams:
            try:
                if via_tcp:
                    answer = await _tcp_exchange(wire, host, port, self.timeout)
                else:
                    answer = await _udp_exchange(wire, host, port, self.timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.debug("upstream %s:%d failed: %s", host, port, exc)
                continue
            if answer[:2] != wire[:2]:  # a mismatched id: not our answer
                log.debug("upstream %s:%d answered another id", host, port)
                continue
            if not _answers(query, answer):
                log.debug("upstream %s:%d sent a malformed answer", host, port)
                continue
            return answer
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()


RDATA_CACHE_LIMIT = 1024


def _from_wire(wire: bytes, raise_on_truncation: bool = False) -> dns.message.Message:
    """dns.message.from_wire for untrusted packets. dnspython remembers a class for every (class,
    type) pair of records it parses, in a global dict that never shrinks: random pairs would grow
    it (and the agent) without end. Past a bound it is emptied; it refills from loaded modules."""
    try:
        return dns.message.from_wire(wire, raise_on_truncation=raise_on_truncation)
    finally:
        if len(dns.rdata._rdata_classes) > RDATA_CACHE_LIMIT:
            dns.rdata._rdata_classes.clear()


def _answers(query: dns.message.Message, wire: bytes) -> bool:
    """Whether an upstream's wire is a well-formed response to query. One with TC set is passed
    on even if cut mid-record (the client retries over TCP) when its question is ours."""
    try:
        return query.is_response(_from_wire(wire, raise_on_truncation=True))
    except dns.message.Truncated as truncated:
        partial: dns.message.Message = truncated.message()  # type: ignore[no-untyped-call]
        return bool(partial.question) and query.is_response(partial)
    except Exception:
        return False


def _formerr(wire: bytes) -> bytes | None:
    if len(wire) < 12:
        return None  # not even a header: nothing to answer
    flags = struct.unpack("!H", wire[2:4])[0]
    # QR set, same opcode, FORMERR; no sections.
    reply_flags = 0x8000 | (flags & 0x7800) | dns.rcode.FORMERR
    return wire[:2] + struct.pack("!HHHHH", reply_flags, 0, 0, 0, 0)


def _alias_answer(
    query: dns.message.Message, question: dns.rrset.RRset, addresses: LocalAddresses
) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    # Every other type for an alias name is answered here, with no data: never sent upstream.
    for address in addresses.of_type(question.rdtype):
        rdtype = dns.rdatatype.AAAA if ":" in address else dns.rdatatype.A
        response.answer.append(
            dns.rrset.from_text(question.name, ALIAS_TTL, dns.rdataclass.IN, rdtype, address)
        )
    return response


async def _udp_exchange(wire: bytes, host: str, port: int, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, wire)
        return await asyncio.wait_for(loop.sock_recv(sock, MAX_UDP), timeout)


async def _tcp_exchange(wire: bytes, host: str, port: int, timeout: float) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        length = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), timeout))[0]
        return await asyncio.wait_for(reader.readexactly(length), timeout)
    finally:
        writer.close()


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # a datagram endpoint's transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.create_task(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            answer = await self.resolver.handle(data, via_tcp=False)
        except Exception:
            log.exception("DNS query from %s failed", addr[0])
            return
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


async def _tcp_client(
    resolver: Resolver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            length = struct.unpack("!H", await reader.readexactly(2))[0]
            answer = await resolver.handle(await reader.readexactly(length), via_tcp=True)
            if answer is None:
                break
            writer.write(struct.pack("!H", len(answer)) + answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _who_listens(port: int, udp: bool) -> str:
    """The process holding a port, from /proc (best effort; empty when not found)."""
    inodes = set()
    for table in ("udp", "udp6") if udp else ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    name = (proc / "comm").read_text().strip()
                    return f"{name} (pid {proc.name})"
    return ""


@dataclass
class DNSServer:
    resolver: Resolver
    addresses: list[tuple[str, int]]
    _udp: list[asyncio.DatagramTransport] = field(default_factory=list)
    _tcp: list[asyncio.Server] = field(default_factory=list)

    async def start(self) -> list[tuple[str, int]]:
        """Bind every address; returns the (host, port) pairs it listens on. An address whose
        IP family the machine lacks is skipped; one already in use is an error naming it."""
        loop = asyncio.get_running_loop()
        bound = []
        for host, port in self.addresses:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _UDPProtocol(self.resolver),
                    local_addr=(host, port),
                    family=family,
                    reuse_port=False,
                )
                self._udp.append(transport)
                server = await asyncio.start_server(
                    lambda r, w: _tcp_client(self.resolver, r, w),
                    host,
                    port,
                    family=family,
                    reuse_address=True,
                )
                self._tcp.append(server)
            except OSError as exc:
                if (
                    exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL)
                    and family == socket.AF_INET6
                ):
                    log.warning("no IPv6 here: not listening on %s", join_host_port(host, port))
                    continue
                await self.stop()
                holder = _who_listens(port, udp=True) or _who_listens(port, udp=False)
                detail = f" (held by {holder})" if holder else ""
                raise DNSListenError(
                    "failed to listen for DNS on either IPv4 or IPv6: "
                    f"{join_host_port(host, port)}: "
                    f"{exc.strerror}{detail}"
                ) from exc
            bound.append((host, port))
        if not bound:
            raise DNSListenError(
                "failed to listen for DNS on either IPv4 or IPv6: no address could be bound"
            )
        return bound

    async def stop(self) -> None:
        for transport in self._udp:
            transport.close()
        for server in self._tcp:
            server.close()
            await server.wait_closed()
        self._udp.clear()
        self._tcp.clear()


def system_upstreams(
    resolv_conf: Path = Path("/etc/resolv.conf"), exclude: set[str] | None = None
) -> list[tuple[str, int]]:
    """The resolvers the system had, from resolv.conf, without the agent's own addresses."""
    servers = []
    with contextlib.suppress(OSError):
        for line in resolv_conf.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] not in (exclude or set()):
                servers.append((parts[1], 53))
    return servers
