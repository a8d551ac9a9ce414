"""Hostile upstream resolvers: a fake DNS server on loopback (UDP and TCP) that misbehaves by the
first label of the name asked: truncated answers, a TC answer whose TCP retry is ~64 KiB, a
4 KiB UDP answer to a query without EDNS, answers with another id, garbage, empty datagrams,
a TCP answer cut short, and no answer at all.

Two agents forward to it: one with a well-behaved second upstream (it must fail over there),
one with the hostile server alone (it must answer SERVFAIL, within its request timeout). The
agents must not crash, and their alias answers must keep working, quickly, throughout."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from agent_harness import (
    AliasedTarget,
    a_records,
    agent_pid,
    aliased_target,
    background,
    close_server,
    figures_of,
    open_fds,
    resolve,
    running_agent,
    udp_drops,
    wait_alias,
)
from chaos_profile import pick

from boundary_devstack.agent_process import LocalAgent
from boundary_devstack.net import free_port
from boundary_devstack.stack import StackEnv

HOSTILE_HOST, GOOD_HOST = "127.0.62.54", "127.0.62.55"
HOSTILE_ANSWER, GOOD_ANSWER = "192.0.2.1", "192.0.2.2"
TIMEOUT = 1.0
"""The agents' dns_request_timeout, seconds."""
CLIENT_TIMEOUT = 3 * TIMEOUT + 2
ROUNDS = pick(20, 3)
SILENT_FLOOD = pick(1000, 200)
BIG_TCP_RECORDS = 4000
"""A records in the TCP answer to a `tc` name: 16 octets each, about 64 KiB in all."""


# ---------------------------------------------------------------- the hostile server


class FakeUpstream(asyncio.DatagramProtocol):
    """A DNS server on loopback. Hostile: it misbehaves by the first label of the name asked
    (`ok` answers properly); not hostile: it answers everything properly, with another
    address."""

    def __init__(self, hostile: bool) -> None:
        self.hostile = hostile
        self.address = HOSTILE_ANSWER if hostile else GOOD_ANSWER
        self.asked: collections.Counter[str] = collections.Counter()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # a datagram endpoint's

    def mode(self, query: dns.message.Message, transport: str) -> str:
        mode = query.question[0].name.labels[0].decode() if self.hostile else "ok"
        self.asked[f"{mode}/{transport}"] += 1
        return mode

    def answer(self, query: dns.message.Message, records: int = 1) -> bytes:
        response = dns.message.make_response(query)
        question = query.question[0]
        addresses = [self.address] if records == 1 else [_nth(i) for i in range(records)]
        response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "A", addresses))
        return response.to_wire(max_size=65535)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        wire = self.reply(query, self.mode(query, "udp"), tcp=False)
        if wire is not None and self.transport is not None:
            # asyncio skips empty datagrams: send them on a copy of the socket.
            with socket.socket(
                fileno=os.dup(self.transport.get_extra_info("socket").fileno())
            ) as raw:
                raw.sendto(wire, addr)

    def reply(self, query: dns.message.Message, mode: str, tcp: bool) -> bytes | None:
        """The wire for a mode; None: no answer at all ("silent", and unknown modes on UDP)."""
        if mode == "ok":
            return self.answer(query)
        if mode == "truncated":  # cut mid-record, TC not set
            return self.answer(query)[:-7]
        if mode == "tc":
            return self.answer(query, BIG_TCP_RECORDS) if tcp else _tc_header(query)
        if mode == "bigudp":
            return self.answer(query, 250)
        if mode == "badid":
            return struct.pack("!H", query.id ^ 0x5A5A) + self.answer(query)[2:]
        if mode == "garbage":  # over UDP with the query's id, so only its body is wrong
            return (os.urandom(2) if tcp else query.to_wire()[:2]) + os.urandom(200)
        if mode == "noise":
            return os.urandom(100)
        if mode == "empty":
            return b""
        return self.answer(query) if tcp and mode != "silent" else None

    async def serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                query = dns.message.from_wire(await reader.readexactly(length))
                mode = self.mode(query, "tcp")
                wire = self.reply(query, mode, tcp=True)
                if wire is None:  # silent: hold the connection without a word
                    await asyncio.sleep(30)
                    return
                if mode == "tcptrunc":  # says 64 octets more than it sends, then hangs up
                    writer.write(struct.pack("!H", len(wire) + 64) + wire)
                    await writer.drain()
                    return
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _nth(i: int) -> str:
    return f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"


def _tc_header(query: dns.message.Message) -> bytes:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.TC
    return response.to_wire()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[tuple[str, FakeUpstream], tuple[str, FakeUpstream]]]:
    """(address, server) of the hostile and the well-behaved upstream."""
    started: list[tuple[str, FakeUpstream, asyncio.Server]] = []
    for host, hostile in ((HOSTILE_HOST, True), (GOOD_HOST, False)):

        async def start(host: str = host, hostile: bool = hostile) -> tuple[Any, asyncio.Server]:
            loop = asyncio.get_running_loop()
            port = free_port(host)
            _, protocol = await loop.create_datagram_endpoint(
                lambda: FakeUpstream(hostile), local_addr=(host, port)
            )
            server = await asyncio.start_server(protocol.serve_tcp, host, port)
            return protocol, server

        protocol, server = background().run(start())
        port = server.sockets[0].getsockname()[1]
        started.append((f"{host}:{port}", protocol, server))
    yield (started[0][0], started[0][1]), (started[1][0], started[1][1])
    for _, protocol, server in started:
        if protocol.transport is not None:
            background().loop.call_soon_threadsafe(protocol.transport.close)
        close_server(server)


@pytest.fixture(scope="module")
def target(stack_env: StackEnv) -> Iterator[AliasedTarget]:
    with aliased_target(stack_env, "upstreams", free_port()) as made:
        yield made


@pytest.fixture(scope="module")
def agents(
    stack_env: StackEnv,
    upstreams: tuple[tuple[str, FakeUpstream], tuple[str, FakeUpstream]],
    target: AliasedTarget,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[LocalAgent, str]]]:
    """ "failover": hostile then good upstream; "alone": the hostile upstream only. Each with
    its alias address."""
    (hostile, _), (good, _) = upstreams
    settings = f'dns_request_timeout = "{TIMEOUT}s"\n'
    with (
        running_agent(
            tmp_path_factory.mktemp("failover"),
            stack_env,
            dns_host="127.0.62.1",
            prefix="127.63.0.0/16",
            upstreams=[hostile, good],
            settings=settings,
        ) as failover,
        running_agent(
            tmp_path_factory.mktemp("alone"),
            stack_env,
            dns_host="127.0.62.2",
            prefix="127.64.0.0/16",
            upstreams=[hostile],
            settings=settings,
        ) as alone,
    ):
        yield {
            "failover": (
                failover,
                wait_alias(failover, target.alias, "127.63.0.0/16", target.port),
            ),
            "alone": (alone, wait_alias(alone, target.alias, "127.64.0.0/16", target.port)),
        }


class AliasWatch:
    """Asks an agent for the alias every 50 ms in a thread; keeps failures and latencies."""

    def __init__(self, agent: LocalAgent, alias: str, address: str) -> None:
        self.agent, self.alias, self.address = agent, alias, address
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            started = time.monotonic()
            got = resolve(self.agent, self.alias, timeout=2)
            self.latencies.append(time.monotonic() - started)
            if got != self.address:
                self.failures.append(got)

    def __enter__(self) -> AliasWatch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def outcome(agent: LocalAgent, name: str, tcp: bool) -> tuple[str, float]:
    """What a client gets for name: an address, an rcode name, or the client-side error."""
    started = time.monotonic()
    message = dns.message.make_query(name, "A")
    try:
        if tcp:
            answer = dns.query.tcp(
                message, agent.dns_host, port=agent.dns_port, timeout=CLIENT_TIMEOUT
            )
        else:
            answer = dns.query.udp(
                message, agent.dns_host, port=agent.dns_port, timeout=CLIENT_TIMEOUT
            )
    except dns.exception.Timeout:
        return "client timeout", time.monotonic() - started
    except (dns.exception.DNSException, OSError) as exc:
        return f"client error: {type(exc).__name__}", time.monotonic() - started
    records = a_records(answer)
    if answer.rcode() != dns.rcode.NOERROR or not records:
        return dns.rcode.to_text(answer.rcode()), time.monotonic() - started
    return records[0], time.monotonic() - started


# (mode, transport) -> what a client must get (with the good second upstream, alone)
EXPECTED = {
    ("ok", "udp"): (HOSTILE_ANSWER, HOSTILE_ANSWER),
    ("ok", "tcp"): (HOSTILE_ANSWER, HOSTILE_ANSWER),
    ("truncated", "udp"): (GOOD_ANSWER, "SERVFAIL"),
    ("truncated", "tcp"): (GOOD_ANSWER, "SERVFAIL"),
    ("badid", "udp"): (GOOD_ANSWER, "SERVFAIL"),
    ("badid", "tcp"): (GOOD_ANSWER, "SERVFAIL"),
    ("garbage", "udp"): (GOOD_ANSWER, "SERVFAIL"),
    ("garbage", "tcp"): (GOOD_ANSWER, "SERVFAIL"),
    ("noise", "udp"): (GOOD_ANSWER, "SERVFAIL"),
    ("empty", "udp"): (GOOD_ANSWER, "SERVFAIL"),
    ("silent", "udp"): (GOOD_ANSWER, "SERVFAIL"),
    ("silent", "tcp"): (GOOD_ANSWER, "SERVFAIL"),
    ("tcptrunc", "tcp"): (GOOD_ANSWER, "SERVFAIL"),
}


def test_hostile_answers_fail_over_or_servfail_within_the_timeout(
    agents: dict[str, tuple[LocalAgent, str]],
    upstreams: tuple[tuple[str, FakeUpstream], tuple[str, FakeUpstream]],
    target: AliasedTarget,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    (_, hostile), (_, good) = upstreams
    observed: dict[str, Any] = {}
    with figures_of(record_property, tmp_path, "hostile-upstreams") as figures:
        for kind, (agent, address) in agents.items():
            with AliasWatch(agent, target.alias, address) as watch:
                for round_number in range(ROUNDS):
                    for mode, transport in EXPECTED:
                        name = f"{mode}.r{round_number}.hostile.test"
                        got, seconds = outcome(agent, name, transport == "tcp")
                        key = f"{kind}/{mode}/{transport}"
                        observed.setdefault(key, {"got": collections.Counter(), "max_s": 0.0})
                        observed[key]["got"][got] += 1
                        observed[key]["max_s"] = round(max(observed[key]["max_s"], seconds), 2)
            figures[f"{kind}_alias_queries"] = len(watch.latencies)
            figures[f"{kind}_alias_failures"] = len(watch.failures)
            figures[f"{kind}_alias_max_ms"] = round(max(watch.latencies) * 1000, 1)
            assert not watch.failures, (kind, watch.failures[:10])
            assert max(watch.latencies) < 0.5, kind
            assert agent.process.running(), agent.process.log_tail(40)
        figures["observed"] = {k: {**v, "got": dict(v["got"])} for k, v in observed.items()}
        figures["hostile_asked"] = dict(hostile.asked)
        figures["good_asked"] = dict(good.asked)
    for (mode, transport), (with_failover, alone) in EXPECTED.items():
        for kind, wanted in (("failover", with_failover), ("alone", alone)):
            seen = observed[f"{kind}/{mode}/{transport}"]
            assert dict(seen["got"]) == {wanted: ROUNDS}, (kind, mode, transport, seen)
            # Bounded: the hostile upstream costs at most one request timeout.
            assert seen["max_s"] < TIMEOUT + 1.0, (kind, mode, transport, seen)


def test_truncated_udp_answer_is_retried_over_tcp_for_the_64_kib_answer(
    agents: dict[str, tuple[LocalAgent, str]],
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    """A TC answer is passed on as it is; the client's TCP retry brings the whole ~64 KiB answer
    through the agent. A 4 KiB UDP answer to a query without EDNS is passed on as it is too (the
    agent does not re-truncate what the upstream sent)."""
    with figures_of(record_property, tmp_path, "big-answers") as figures:
        for kind, (agent, _) in agents.items():
            query = dns.message.make_query("tc.big.hostile.test", "A")
            udp = dns.query.udp(query, agent.dns_host, port=agent.dns_port, timeout=CLIENT_TIMEOUT)
            assert udp.flags & dns.flags.TC
            assert not udp.answer
            answer, used_tcp = dns.query.udp_with_fallback(
                query, agent.dns_host, port=agent.dns_port, timeout=CLIENT_TIMEOUT
            )
            records = a_records(answer)
            assert used_tcp
            assert len(records) == BIG_TCP_RECORDS, (kind, len(records))
            assert set(records) == {_nth(i) for i in range(BIG_TCP_RECORDS)}
            figures[f"{kind}_tcp_answer_bytes"] = len(answer.to_wire())
            plain = dns.message.make_query("bigudp.big.hostile.test", "A", use_edns=False)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(CLIENT_TIMEOUT)
                sock.sendto(plain.to_wire(), (agent.dns_host, agent.dns_port))
                wire = sock.recv(65535)
            big = dns.message.from_wire(wire)
            assert len(wire) > 512
            assert not big.flags & dns.flags.TC
            assert len(a_records(big)) == 250
            figures[f"{kind}_udp_answer_to_non_edns_query_bytes"] = len(wire)
            assert agent.process.running()


def test_silent_upstream_flood_does_not_stall_alias_answers(
    agents: dict[str, tuple[LocalAgent, str]],
    target: AliasedTarget,
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    """Hundreds of queries waiting on a silent upstream at once: the alias is still answered at
    once, every waiting client gets its SERVFAIL within the timeout bound, and the agent's
    descriptors come back down."""
    agent, address = agents["alone"]
    pid = agent_pid(agent)
    fds_before = open_fds(pid)
    queries = {
        i: dns.message.make_query(f"silent.f{i}.hostile.test", "A", id=i)
        for i in range(SILENT_FLOOD)
    }
    results: collections.Counter[str] = collections.Counter()
    with (
        figures_of(record_property, tmp_path, "silent-flood") as figures,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        drops_before = udp_drops(agent.dns_port)
        started = time.monotonic()
        for i, query in enumerate(queries.values()):
            sock.sendto(query.to_wire(), (agent.dns_host, agent.dns_port))
            if i % 50 == 49:
                time.sleep(0.02)  # bursts of 50, so the agent's socket buffer keeps up
        figures["sent_in_s"] = round(time.monotonic() - started, 2)
        time.sleep(0.1)
        figures["agent_fds_while_waiting"] = open_fds(pid)
        alias_started = time.monotonic()
        assert resolve(agent, target.alias) == address
        figures["alias_ms_during_flood"] = round((time.monotonic() - alias_started) * 1000, 1)
        sock.settimeout(TIMEOUT + 2)
        last_answer = started
        with contextlib.suppress(TimeoutError):
            while sum(results.values()) < len(queries):
                answer = dns.message.from_wire(sock.recv(65535))
                assert queries[answer.id].is_response(answer)
                results[dns.rcode.to_text(answer.rcode())] += 1
                last_answer = time.monotonic()
        figures.update(
            silent_queries=SILENT_FLOOD,
            results=dict(results),
            all_answered_after_s=round(last_answer - started, 2),
            kernel_udp_drops=udp_drops(agent.dns_port) - drops_before,
        )
        # Every query the agent got is answered SERVFAIL; the kernel's drops (its socket
        # buffer full) never reached it, and must stay few.
        assert set(results) == {"SERVFAIL"}, results
        assert results["SERVFAIL"] + figures["kernel_udp_drops"] == SILENT_FLOOD, figures
        assert figures["kernel_udp_drops"] < SILENT_FLOOD // 20, figures
        assert figures["alias_ms_during_flood"] < 500
        assert figures["all_answered_after_s"] < figures["sent_in_s"] + TIMEOUT + 1
        time.sleep(0.5)
        figures["agent_fds_before"], figures["agent_fds_after"] = fds_before, open_fds(pid)
        assert figures["agent_fds_after"] <= fds_before + 2
        assert agent.process.running()
