"""The agent's DNS server: answers the user's Boundary aliases with local addresses and forwards
every other query upstream, over UDP and TCP. When it cannot answer (paused, not logged in,
controller unreachable) it defers to upstream, so name resolution never breaks."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boundary_agent import dnswire
from boundary_agent.config import join_host_port

if TYPE_CHECKING:  # dnspython is loaded on first use: most queries never need it
    import dns.message
    import dns.rrset

log = logging.getLogger("boundary_agent.dns")
ALIAS_TTL = 5
"""Short, so pausing the agent takes effect quickly in clients' caches."""
MAX_UDP = 65535
READ_BATCH = 64
"""Datagrams read per wake-up of a DNS socket, at most: then the loop's other work gets a turn."""
ANSWER_CACHE_LIMIT = 4096
"""Alias answers kept as wire, by name and type: aliases x 3 types, bounded all the same."""
KNOWN_QUERIES_LIMIT = 4096
"""Queries whose outcome is kept by their wire (Resolver._known); the whole table is dropped
when it is full, so a client asking ever new names costs a re-parse, never unbounded memory."""
POOL_SOCKETS = 8
"""UDP sockets per upstream, each on its own random port. An upstream on loopback gets one:
the ports are there against off-path forgers, and nothing off the machine can send to
loopback, while eight sockets cost about 10 us more kernel CPU per query than one (measured
once, with as much noise)."""
SWEEP_INTERVAL = 0.05
"""How often queries waiting upstream are checked for their timeout."""
ROTATE_AFTER = 256
"""Queries a pool socket sends before a socket on a fresh random port takes its place (as
dnsmasq keeps moving its source ports): an off-path forger must guess the port and the id."""


Address = tuple[Any, ...]
"""A client's address as recvfrom() gives it."""
Reply = Callable[[bytes, Address], None]
"""reply(answer, to): how an answer goes back to the client at `to`."""


class DNSListenError(Exception):
    pass


@dataclass(frozen=True)
class LocalAddresses:
    """What an alias name resolves to: a local IPv4 address, a local IPv6 one, or both."""

    addresses: tuple[str, ...]

    def of_type(self, rdtype: int) -> list[str]:
        """The addresses a query of this type is answered with (empty: no data, never a
        forward)."""
        if rdtype == dnswire.TYPE_ANY:
            return list(self.addresses)
        if rdtype not in (dnswire.TYPE_A, dnswire.TYPE_AAAA):
            return []
        want_v6 = rdtype == dnswire.TYPE_AAAA
        return [a for a in self.addresses if (":" in a) == want_v6]


@dataclass
class Resolver:
    lookup: Callable[[str], LocalAddresses | None]
    """Alias name (lowercase, no trailing dot) -> its local addresses, or None to forward."""
    upstreams: list[tuple[str, int]]
    timeout: float = 10.0
    forwarded: int = field(default=0, init=False)
    answered: int = field(default=0, init=False)
    _answers: dict[bytes, tuple[int, bytes]] = field(default_factory=dict, init=False)
    _known: dict[bytes, tuple[bytes | None, bytes]] = field(default_factory=dict, init=False)
    """What the fast path made of a simple query before, by its wire after the id: its alias
    answer after the id (None: it goes upstream), and its question section. A query asked
    again (most are) then costs one lookup, not a parse and an alias lookup."""
    _pool: UpstreamPool | None = field(default=None, init=False)

    def forget_answers(self) -> None:
        """Drop the cached alias answers and outcomes. Call it whenever lookup() may answer a
        name differently: the agent's aliases, users, listeners or pause state changed."""
        self._answers.clear()
        self._known.clear()

    def pool(self) -> UpstreamPool:
        return self.pool_for(asyncio.get_running_loop())

    def pool_for(self, loop: asyncio.AbstractEventLoop) -> UpstreamPool:
        """The pool of `loop`, which must be the running loop. Callers that know it say so:
        asyncio.get_running_loop() costs a getpid() system call."""
        if self._pool is None or self._pool.loop is not loop:
            self._pool = UpstreamPool(self, loop)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def alias_answer(self, wire: bytes, query: dnswire.SimpleQuery) -> bytes | None:
        """The answer to a simple query for an alias, from cached wire; None: not an alias."""
        answer = self._alias_answer(wire, query)
        if answer is not None:
            self.answered += 1
        return answer

    def _alias_answer(self, wire: bytes, query: dnswire.SimpleQuery) -> bytes | None:
        records = self._answers.get(query.key)
        if records is None:
            name = dnswire.alias_name(query)
            addresses = self.lookup(name) if name is not None else None
            if addresses is None:
                return None
            records = dnswire.address_records(addresses.of_type(query.qtype), ALIAS_TTL)
            if len(self._answers) < ANSWER_CACHE_LIMIT:
                self._answers[query.key] = records
        return dnswire.response(wire, query, records, flags=dnswire.AA)

    def _learn(self, wire: bytes) -> bool:
        """Work out and remember what the fast path makes of a query (see _known); False: not
        a simple query, dnspython's to judge."""
        query = dnswire.parse_simple_query(wire)
        if query is None:
            return False
        answer = self._alias_answer(wire, query)
        if len(self._known) >= KNOWN_QUERIES_LIMIT:
            self._known.clear()
        self._known[wire[2:]] = (
            None if answer is None else answer[2:],
            wire[12 : query.question_end],
        )
        return True

    def _respond_known(self, wire: bytes, reply: Reply, to: Address, pool: UpstreamPool) -> bool:
        """Answer, or forward through `pool`, a query seen before; False: not seen before."""
        outcome = self._known.get(wire[2:])
        if outcome is None:
            return False
        answer, question = outcome
        if answer is not None:
            self.answered += 1
            reply(wire[:2] + answer, to)
        else:
            self.forwarded += 1
            # SERVFAIL when no upstream answers: parsed again then, as that is rare.
            pool.send(wire, question, reply, to, _simple_servfail)
        return True

    def respond(
        self, wire: bytes, reply: Reply, to: Address, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Answer a query that came over UDP from `to` on `loop` (the running one): reply()
        gets the answer, now or once an upstream has answered, or is never called (nothing to
        answer). Nothing waits in a task, and a query forwarded holds only its wire while it
        waits."""
        pool = self.pool_for(loop)
        if self._respond_known(wire, reply, to, pool):
            return
        if self._learn(wire) and self._respond_known(wire, reply, to, pool):
            return
        answer, forward = self._answer_or_forward(wire)
        if answer is not None:
            reply(answer, to)
        elif forward:
            self.forwarded += 1
            pool.send(wire, None, reply, to, _servfail)

    async def handle(self, wire: bytes, via_tcp: bool) -> bytes | None:
        """The answer to a query (None: nothing to answer), over either transport."""
        simple = dnswire.parse_simple_query(wire)
        if simple is not None and (answer := self.alias_answer(wire, simple)) is not None:
            return answer
        answer, forward = self._answer_or_forward(wire)
        if not forward:
            return answer
        self.forwarded += 1
        upstream_answer = await (self._forward_tcp(wire) if via_tcp else self._forward_udp(wire))
        return upstream_answer if upstream_answer is not None else _servfail(wire)

    def _answer_or_forward(self, wire: bytes) -> tuple[bytes | None, bool]:
        """What dnspython makes of a query the fast path did not take: (an answer of ours, or
        None; whether to forward it)."""
        import dns.flags

        try:
            query = _from_wire(wire)
        except Exception:
            return _formerr(wire), False
        if query.flags & dns.flags.QR:
            return None, False  # a response, not a query: dropped, never answered nor forwarded
        if len(query.question) == 1:
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            addresses = self.lookup(name)
            if addresses is not None:
                self.answered += 1
                return _alias_answer(query, question, addresses).to_wire(), False
        return None, True

    async def _forward_udp(self, wire: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()

        def done(answer: bytes, _to: Address) -> None:
            if not future.done():
                future.set_result(answer)

        self.pool_for(loop).send(wire, None, done, (), _servfail)
        return await future

    async def _forward_tcp(self, wire: bytes) -> bytes | None:
        for host, port in self.upstreams:
            try:
                answer = await _tcp_exchange(wire, host, port, self.timeout)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                log.debug("upstream %s:%d failed: %s", host, port, exc)
                continue
            if answer[:2] != wire[:2]:  # a mismatched id: not our answer
                log.debug("upstream %s:%d answered another id", host, port)
                continue
            if not _answers_query_wire(wire, answer):
                log.debug("upstream %s:%d sent a malformed answer", host, port)
                continue
            return answer
        return None


@dataclass(slots=True, eq=False)
class _Pending:
    """A query on its way upstream: sent as `wire` with the id `qid` on `socket`."""

    wire: bytes
    question: bytes | None
    """Its question section, for the fast structural check of an answer; None: a query only
    dnspython parses, whose answers it checks."""
    reply: Reply
    to: Address
    """reply(answer, to) gets the answer, or servfail(wire) once no upstream gave an acceptable
    one."""
    servfail: Callable[[bytes], bytes]
    index: int = 0
    """Which upstream it is at."""
    socket: _PoolSocket | None = None
    qid: int = 0
    deadline: float = 0.0


class _RandomNumbers:
    """Unpredictable 16-bit numbers from the system's CSPRNG, fetched 2,048 at a time (one
    getrandom call, not one per query)."""

    def __init__(self) -> None:
        self._numbers: list[int] = []

    def next(self) -> int:
        if not self._numbers:
            self._numbers = list(memoryview(os.urandom(4096)).cast("H"))
        return self._numbers.pop()


class _PoolSocket:
    """One UDP socket on a random port, connected to one upstream, read straight from the
    selector. Being connected, the kernel drops datagrams from anywhere else; answers are matched
    by id against the queries it sent."""

    def __init__(self, route: _Route) -> None:
        self.route = route
        self.pool = pool = route.pool
        self.sock = socket.socket(route.family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect(route.address)
        except OSError:
            self.sock.close()
            raise
        self.pending: dict[int, _Pending] = {}
        self.sent = 0
        self.retired = False
        pool.loop.add_reader(self.sock.fileno(), self._readable)

    def new_id(self) -> int:
        while True:
            qid = self.pool.random.next()
            if qid not in self.pending:
                return qid

    def _readable(self) -> None:
        recv_into, pending_for = self.sock.recv_into, self.pending.get
        buffer, view, answered = self.pool.buffer, self.pool.view, self.pool.answered
        for _ in range(READ_BATCH):
            try:
                size = recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error (connection refused): read on
                if self.sock.fileno() < 0:
                    return  # closed by what an earlier answer led to
                log.debug("upstream %s: %s", self.route.name, exc)
                continue
            if size < 12:
                continue
            pending = pending_for(buffer[0] << 8 | buffer[1])
            if pending is None:
                continue  # late, or a guess: not an answer to anything waiting
            wire = pending.wire
            buffer[0], buffer[1] = wire[0], wire[1]  # the client's id back
            answered(pending, bytes(view[:size]))
            if not self.pending:
                # Nothing else is awaited here, so no read that would only say EAGAIN; a
                # datagram that came meanwhile wakes the loop again (epoll is level-triggered).
                return

    def close_when_idle(self) -> None:
        """A retired socket closes once nothing it sent is waiting any more."""
        if self.retired and not self.pending and self.sock.fileno() >= 0:
            self.pool.loop.remove_reader(self.sock.fileno())
            self.sock.close()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Route:
    """The way to one upstream: POOL_SOCKETS sockets connected to it (one on loopback), each
    from a random port, each replaced by a fresh one after ROTATE_AFTER queries."""

    def __init__(self, pool: UpstreamPool, host: str, port: int) -> None:
        self.pool = pool
        self.name = join_host_port(host, port)
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.address = (host, port)
        self.sockets: list[_PoolSocket] = []
        try:
            for _ in range(1 if _is_loopback(host) else POOL_SOCKETS):
                self.sockets.append(_PoolSocket(self))
        except OSError:
            self.close()
            raise

    def socket(self) -> _PoolSocket:
        """A socket at random; one that has sent its share is swapped for a fresh one."""
        sockets = self.sockets
        slot = self.pool.random.next() % len(sockets) if len(sockets) > 1 else 0
        chosen = sockets[slot]
        chosen.sent += 1
        if chosen.sent >= ROTATE_AFTER:
            chosen.retired = True
            sockets[slot] = _PoolSocket(self)
            self.pool.loop.call_soon(chosen.close_when_idle)
        return chosen

    def close(self) -> None:
        for sock in self.sockets:
            sock.retired = True
            sock.pending.clear()
            sock.close_when_idle()
        self.sockets.clear()


class UpstreamPool:
    """Forwards UDP queries to the upstreams, each through a few connected sockets on random
    ports (rotated), with a pending table by id: each query leaves with a fresh random id, and
    its answer must come back from the upstream it went to with that id, and pass the caller's
    check, or the next upstream is tried; after the last, the caller gets servfail. Timeouts are
    found by a sweep every SWEEP_INTERVAL over the queries in the order they were sent, not by a
    timer each."""

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop) -> None:
        self.resolver = resolver
        self.loop = loop
        self.random = _RandomNumbers()
        self.buffer = bytearray(MAX_UDP)
        self.view = memoryview(self.buffer)
        self._routes: dict[tuple[str, int], _Route] = {}
        self._waiting: dict[_Pending, None] = {}
        """Every query waiting for an answer, oldest first (deadlines grow as they are sent)."""
        self._sweep: asyncio.TimerHandle | None = None

    def prepare(self) -> None:
        """Open the sockets for every upstream now, not on the first query."""
        for host, port in self.resolver.upstreams:
            with contextlib.suppress(OSError):  # unreachable here: found out per query
                self._route(host, port)

    def _route(self, host: str, port: int) -> _Route:
        route = self._routes.get((host, port))
        if route is None:
            # A new upstream: the list changed (a reload), so routes to dropped ones go.
            for upstream in [u for u in self._routes if u not in self.resolver.upstreams]:
                self._routes.pop(upstream).close()
            route = self._routes[host, port] = _Route(self, host, port)
        return route

    def send(
        self,
        wire: bytes,
        question: bytes | None,
        reply: Reply,
        to: Address,
        servfail: Callable[[bytes], bytes],
    ) -> None:
        """Forward `wire` (see _Pending for the rest)."""
        self._try(_Pending(wire, question, reply, to, servfail), 0)

    def _try(self, pending: _Pending, index: int) -> None:
        upstreams = self.resolver.upstreams
        while index < len(upstreams):
            upstream = upstreams[index]
            try:
                route = self._routes.get(upstream) or self._route(*upstream)
                sock = route.socket()
            except OSError as exc:
                log.debug("upstream %s failed: %s", join_host_port(*upstream), exc)
                index += 1
                continue
            qid = sock.new_id()
            # The books first, the send last: after it, the loop goes straight back to
            # waiting, for the answer among the rest.
            pending.index, pending.socket, pending.qid = index, sock, qid
            pending.deadline = time.monotonic() + self.resolver.timeout
            sock.pending[qid] = pending
            self._waiting[pending] = None
            if self._sweep is None:
                self._sweep = self.loop.call_later(SWEEP_INTERVAL, self._swept)
            try:
                sock.sock.send(qid.to_bytes(2, "big") + pending.wire[2:])
            except OSError as exc:
                self._forget(pending)
                log.debug("upstream %s failed: %s", route.name, exc)
                index += 1
                continue
            return
        pending.reply(pending.servfail(pending.wire), pending.to)

    def _forget(self, pending: _Pending) -> None:
        # pop, not del: a route dropped by a reload has already let go of its queries.
        self._waiting.pop(pending, None)
        sock = pending.socket
        assert sock is not None
        sock.pending.pop(pending.qid, None)
        if sock.retired:
            self.loop.call_soon(sock.close_when_idle)

    def answered(self, pending: _Pending, answer: bytes) -> None:
        """An answer from where `pending` went, with its id, the client's id put back."""
        question = pending.question
        self._forget(pending)  # first: the reply is the last thing done (see _try)
        if (
            dnswire.answers_question(answer, question)
            if question is not None
            else _answers_query_wire(pending.wire, answer)
        ):
            pending.reply(answer, pending.to)
            return
        assert pending.socket is not None
        log.debug("upstream %s sent a malformed answer", pending.socket.route.name)
        self._try(pending, pending.index + 1)

    def _swept(self) -> None:
        self._sweep = None
        now = time.monotonic()
        expired = []
        for pending in self._waiting:
            if pending.deadline > now:
                break
            expired.append(pending)
        for pending in expired:
            self._forget(pending)
            assert pending.socket is not None
            log.debug("upstream %s did not answer in time", pending.socket.route.name)
            self._try(pending, pending.index + 1)
        if self._waiting and self._sweep is None:
            self._sweep = self.loop.call_later(SWEEP_INTERVAL, self._swept)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
        self._waiting.clear()
        for route in self._routes.values():
            route.close()
        self._routes.clear()


RDATA_CACHE_LIMIT = 1024


def _from_wire(wire: bytes, raise_on_truncation: bool = False) -> dns.message.Message:
    """dns.message.from_wire for untrusted packets. dnspython remembers a class for every (class,
    type) pair of records it parses, in a global dict that never shrinks: random pairs would grow
    it (and the agent) without end. Past a bound it is emptied; it refills from loaded modules."""
    import dns.message
    import dns.rdata

    try:
        return dns.message.from_wire(wire, raise_on_truncation=raise_on_truncation)
    finally:
        if len(dns.rdata._rdata_classes) > RDATA_CACHE_LIMIT:
            dns.rdata._rdata_classes.clear()


def _answers(query: dns.message.Message, wire: bytes) -> bool:
    """Whether an upstream's wire is a well-formed response to query. One with TC set is passed
    on even if cut mid-record (the client retries over TCP) when its question is ours."""
    import dns.message

    try:
        return query.is_response(_from_wire(wire, raise_on_truncation=True))
    except dns.message.Truncated as truncated:
        partial: dns.message.Message = truncated.message()  # type: ignore[no-untyped-call]
        return bool(partial.question) and query.is_response(partial)
    except Exception:
        return False


def _answers_query_wire(query_wire: bytes, wire: bytes) -> bool:
    """_answers() for a query kept as its wire (it parsed once already)."""
    return _answers(_from_wire(query_wire), wire)


def _simple_servfail(query_wire: bytes) -> bytes:
    """SERVFAIL for a query the fast path parsed."""
    query = dnswire.parse_simple_query(query_wire)
    assert query is not None  # it parsed when it was sent
    return dnswire.servfail(query_wire, query)


def _servfail(query_wire: bytes) -> bytes:
    import dns.message
    import dns.rcode

    response = dns.message.make_response(_from_wire(query_wire))
    response.set_rcode(dns.rcode.SERVFAIL)
    return response.to_wire()


def _formerr(wire: bytes) -> bytes | None:
    if len(wire) < 12:
        return None  # not even a header: nothing to answer
    flags = struct.unpack("!H", wire[2:4])[0]
    # QR set, same opcode, FORMERR; no sections.
    reply_flags = 0x8000 | (flags & 0x7800) | 1
    return wire[:2] + struct.pack("!HHHHH", reply_flags, 0, 0, 0, 0)


def _alias_answer(
    query: dns.message.Message, question: dns.rrset.RRset, addresses: LocalAddresses
) -> dns.message.Message:
    import dns.flags
    import dns.message
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset

    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    # Every other type for an alias name is answered here, with no data: never sent upstream.
    for address in addresses.of_type(question.rdtype):
        rdtype = dns.rdatatype.AAAA if ":" in address else dns.rdatatype.A
        response.answer.append(
            dns.rrset.from_text(question.name, ALIAS_TTL, dns.rdataclass.IN, rdtype, address)
        )
    return response


async def _tcp_exchange(wire: bytes, host: str, port: int, timeout: float) -> bytes:
    """One query over TCP, all of it within `timeout`."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            length = struct.unpack("!H", await reader.readexactly(2))[0]
            return await reader.readexactly(length)
        finally:
            writer.close()


class _UDPListener:
    """One DNS socket, read straight from the selector, up to READ_BATCH datagrams per wake-up
    (asyncio's datagram transport takes one per turn of the loop); each is answered or sent
    upstream right here (Resolver.respond), with no task."""

    def __init__(self, resolver: Resolver, sock: socket.socket) -> None:
        self.resolver = resolver
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self._buffer = bytearray(MAX_UDP)
        self._view = memoryview(self._buffer)
        self.loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _readable(self) -> None:
        # Per datagram, only what it needs: the names are looked up once per wake-up.
        recvfrom_into, buffer, view = self.sock.recvfrom_into, self._buffer, self._view
        respond, send, loop = self.resolver.respond, self._send, self.loop
        for _ in range(READ_BATCH):
            try:
                size, addr = recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for an earlier answer: read on
                log.debug("DNS socket: %s", exc)
                continue
            try:
                respond(bytes(view[:size]), send, addr, loop)
            except Exception:
                log.exception("DNS query from %s failed", addr[0])

    def _send(self, answer: bytes, addr: Address) -> None:
        try:
            self.sock.sendto(answer, addr)
        except (BlockingIOError, InterruptedError):
            log.debug("DNS answer to %s dropped: the socket's buffer is full", addr[0])
        except OSError as exc:  # closed, or the client is unreachable
            log.debug("DNS answer to %s not sent: %s", addr[0], exc)


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
    _udp: list[_UDPListener] = field(default_factory=list)
    _tcp: list[asyncio.Server] = field(default_factory=list)

    async def start(self) -> list[tuple[str, int]]:
        """Bind every address; returns the (host, port) pairs it listens on. An address whose
        IP family the machine lacks is skipped; one already in use is an error naming it."""
        bound = []
        for host, port in self.addresses:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.setblocking(False)
                    sock.bind((host, port))
                except OSError:
                    sock.close()
                    raise
                self._udp.append(_UDPListener(self.resolver, sock))
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
            await self.stop()
            raise DNSListenError(
                "failed to listen for DNS on either IPv4 or IPv6: no address could be bound"
            )
        self.resolver.pool().prepare()
        return bound

    async def stop(self) -> None:
        for listener in self._udp:
            listener.close()
        for server in self._tcp:
            server.close()
            await server.wait_closed()
        self._udp.clear()
        self._tcp.clear()
        self.resolver.close()


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
