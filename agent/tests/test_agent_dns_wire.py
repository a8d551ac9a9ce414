"""The hand-written DNS fast path (dnswire) against dnspython: every query the fast path takes
is answered byte for byte as the dnspython path answers it; what it does not understand is left
to dnspython; the structural check of upstream answers agrees with dnspython's; and the upstream
pool forwards with fresh ids, fails over and answers SERVFAIL, against loopback upstreams."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import Iterator
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from boundary_agent import dnswire
from boundary_agent.dns import (
    POOL_SOCKETS,
    LocalAddresses,
    Resolver,
    UpstreamPool,
    _alias_answer,
    _answers,
    _from_wire,
)

ALIAS = "db.corp.test"
ADDRESSES = LocalAddresses(("127.77.0.9", "fd12::9"))


def _queries(seed: int, count: int) -> Iterator[bytes]:
    """Queries of the shapes clients send (dig, glibc, resolved, dnsperf), then bit flips,
    truncations and trailing junk of them."""
    rng = random.Random(seed)  # noqa: S311 - seeded, so a failure can be replayed
    names = [ALIAS, ALIAS.upper(), "Db.Corp.Test.", "other.test", "a_b-c.test", "x.y.z.w.test"]
    editions: tuple[dict[str, Any], ...] = (
        {},
        {"use_edns": 0},
        {"use_edns": 0, "payload": 1232, "want_dnssec": True},
        {"use_edns": 0, "options": [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"c" * 8)]},
        {"use_edns": 0, "options": [dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"x")]},
        {"use_edns": 1},
    )
    shapes: list[bytes] = []
    for name in names:
        for rdtype in ("A", "AAAA", "ANY", "MX", "TXT"):
            for edns in editions:
                query = dns.message.make_query(name, rdtype, **edns)
                query.flags = rng.getrandbits(16) & ~(dns.flags.QR | 0x7800)
                shapes.append(query.to_wire())
    yield from shapes
    for _ in range(count):
        packet = bytearray(rng.choice(shapes))
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randint(1, 3)):
                bit = rng.randrange(len(packet) * 8)
                packet[bit // 8] ^= 1 << (bit % 8)
        elif kind == 1:
            del packet[rng.randrange(len(packet)) :]
        else:
            packet += rng.randbytes(rng.randint(1, 8))
        yield bytes(packet)


def _lookup(name: str) -> LocalAddresses | None:
    return ADDRESSES if name == ALIAS else None


def test_the_fast_path_answers_byte_for_byte_as_dnspython_does() -> None:
    taken = 0
    for wire in _queries(11, 30_000):
        simple = dnswire.parse_simple_query(wire)
        if simple is None:
            continue
        taken += 1
        query = _from_wire(wire)  # the fast path only takes what dnspython parses
        assert not query.flags & dns.flags.QR
        assert len(query.question) == 1
        question = query.question[0]
        assert question.rdclass == 1
        assert question.rdtype in (1, 28, 255)
        name = dnswire.alias_name(simple)
        if name is not None:
            assert name == question.name.to_text(omit_final_dot=True).lower()
        addresses = _lookup(name) if name is not None else None
        if addresses is not None:
            fast = dnswire.response(
                wire,
                simple,
                dnswire.address_records(addresses.of_type(simple.qtype), 5),
                flags=dnswire.AA,
            )
            assert fast == _alias_answer(query, question, addresses).to_wire(), wire.hex()
        servfail = dns.message.make_response(query)
        servfail.set_rcode(dns.rcode.SERVFAIL)
        assert dnswire.servfail(wire, simple) == servfail.to_wire(), wire.hex()
    assert taken > 500


def test_the_cached_answer_follows_the_query_id_case_and_edns() -> None:
    resolver = Resolver(_lookup, [])
    for name, edns in ((ALIAS, {}), (ALIAS.upper(), {"use_edns": 0}), (ALIAS, {"use_edns": 0})):
        query = dns.message.make_query(name, "ANY", **edns)  # type: ignore[arg-type]
        wire = query.to_wire()
        simple = dnswire.parse_simple_query(wire)
        assert simple is not None
        answer = resolver.alias_answer(wire, simple)
        assert answer is not None
        reply = dns.message.from_wire(answer)
        assert query.is_response(reply)
        assert reply.question[0].name.to_text() == query.question[0].name.to_text()
        assert [r.to_text() for rrset in reply.answer for r in rrset] == ["127.77.0.9", "fd12::9"]
        assert (reply.edns >= 0) == bool(edns)
    assert len(resolver._answers) == 1
    resolver.forget_answers()
    assert not resolver._answers


def _answer_shapes(seed: int, count: int) -> Iterator[tuple[dns.message.Message, bytes]]:
    rng = random.Random(seed)  # noqa: S311 - seeded, so a failure can be replayed
    for i in range(count):
        query = dns.message.make_query(f"n{i % 7}.upstream.test", rng.choice(["A", "AAAA", "MX"]))
        response = dns.message.make_response(query)
        if query.question[0].rdtype == dns.rdatatype.MX:
            rdata = ["10 mail.upstream.test."]
        elif query.question[0].rdtype == dns.rdatatype.A:
            rdata = ["192.0.2.1", "192.0.2.2"]
        else:
            rdata = ["2001:db8::1"]
        response.answer.append(
            dns.rrset.from_text_list(
                query.question[0].name, 60, "IN", query.question[0].rdtype, rdata
            )
        )
        wire = bytearray(response.to_wire())
        kind = rng.randrange(5)
        if kind == 1:
            # Framing: the header, the question, a record's name, type or length. Record data
            # is not the structural check's (but for A and AAAA, by length): it is passed on
            # as the upstream sent it, as dnsmasq does.
            question_end = len(query.to_wire())
            bit = rng.randrange((question_end + 2) * 8)
            wire[bit // 8] ^= 1 << (bit % 8)
        elif kind == 2:
            del wire[rng.randrange(12, len(wire)) :]
        elif kind == 3:
            wire += b"\0"
        elif kind == 4:
            struct.pack_into("!H", wire, 2, struct.unpack_from("!H", wire, 2)[0] | dnswire.TC)
            del wire[rng.randrange(12, len(wire)) :]
        yield query, bytes(wire)


def test_the_structural_answer_check_agrees_with_dnspython() -> None:
    for query, wire in _answer_shapes(5, 4_000):
        question = query.to_wire()[12:]
        if wire[:2] != query.to_wire()[:2]:
            continue  # the id is the pending table's to check, not the structural check's
        structural = dnswire.answers_question(wire, question)
        if structural:
            # Whatever passes the structural check dnspython takes as an answer too, but a TC
            # answer whose question itself is cut (dnspython may still read its header).
            assert _answers(query, wire), wire.hex()
        elif _answers(query, wire):
            # dnspython is laxer only about a name's case, never about framing.
            pytest.fail(f"dnspython accepts what the structural check refuses: {wire.hex()}")


# ---------------------------------------------------------------- the upstream pool


class _Upstream:
    """A UDP upstream on loopback in a thread-free form: answers through `behave`."""

    def __init__(self, behave: str) -> None:
        self.behave = behave
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.ids: list[int] = []
        self.ports: set[int] = set()

    def readable(self) -> None:
        data, addr = self.sock.recvfrom(65535)
        query = dns.message.from_wire(data)
        self.ids.append(query.id)
        self.ports.add(addr[1])
        response = dns.message.make_response(query)
        response.answer.append(
            dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.7")
        )
        wire = response.to_wire()
        if self.behave == "silent":
            return
        if self.behave == "badid":
            wire = struct.pack("!H", query.id ^ 1) + wire[2:]
        if self.behave == "garbage":
            wire = wire[:2] + b"\xff" * 30
        self.sock.sendto(wire, addr)


async def _forward(
    upstreams: list[_Upstream], queries: int = 1, timeout: float = 0.3
) -> list[dns.message.Message]:
    """`timeout` is short by default, for the failing upstreams; a test that only wants
    answers passes a long one, so a loaded machine cannot turn a slow answer into SERVFAIL."""
    loop = asyncio.get_running_loop()
    for upstream in upstreams:
        loop.add_reader(upstream.sock.fileno(), upstream.readable)
    resolver = Resolver(_lookup, [("127.0.0.1", u.port) for u in upstreams], timeout=timeout)
    try:
        answers = []
        for i in range(queries):
            query = dns.message.make_query(f"q{i}.upstream.test", "A", id=4242)
            wire = query.to_wire()
            answer = await resolver.handle(wire, via_tcp=False)
            assert answer is not None
            answers.append(dns.message.from_wire(answer))
            assert answers[-1].id == 4242
        return answers
    finally:
        resolver.close()
        for upstream in upstreams:
            loop.remove_reader(upstream.sock.fileno())
            upstream.sock.close()


def test_the_pool_sends_fresh_ids_from_several_ports_and_restores_the_client_id() -> None:
    good = _Upstream("ok")
    answers = asyncio.run(_forward([good], queries=300, timeout=10))  # past ROTATE_AFTER
    assert all(a.rcode() == 0 and a.answer for a in answers)
    assert len(set(good.ids)) > 250
    assert len(good.ports) > 1


@pytest.mark.parametrize("behave", ["silent", "badid", "garbage"])
def test_a_bad_upstream_fails_over_then_servfail(behave: str) -> None:
    bad, good = _Upstream(behave), _Upstream("ok")
    (answer,) = asyncio.run(_forward([bad, good]))
    assert [r.to_text() for rrset in answer.answer for r in rrset] == ["192.0.2.7"]
    (alone,) = asyncio.run(_forward([_Upstream(behave)]))
    assert alone.rcode() == dns.rcode.SERVFAIL


def test_only_an_upstream_on_loopback_gets_a_single_socket() -> None:
    async def routes() -> tuple[int, int, int]:
        pool = UpstreamPool(Resolver(_lookup, []), asyncio.get_running_loop())
        try:
            loopback_v4 = len(pool._route("127.0.0.1", 53).sockets)
            loopback_v6 = len(pool._route("::1", 53).sockets)
            # Connecting a UDP socket sends nothing: no packet leaves for this test address.
            try:
                remote = pool._route("192.0.2.1", 53)
            except OSError as exc:
                pytest.skip(f"no route to a documentation address here: {exc}")
            ports = {s.sock.getsockname()[1] for s in remote.sockets}
            return loopback_v4, loopback_v6, len(ports)
        finally:
            pool.close()

    assert asyncio.run(routes()) == (1, 1, POOL_SOCKETS)


def test_an_answer_from_anywhere_but_the_upstream_is_not_taken() -> None:
    """A forger on the machine that learnt the id and the port still cannot answer: the pool's
    socket is connected to the upstream, so the kernel drops what comes from elsewhere."""

    async def forge() -> dns.message.Message:
        loop = asyncio.get_running_loop()
        upstream = _Upstream("silent")
        loop.add_reader(upstream.sock.fileno(), upstream.readable)
        resolver = Resolver(_lookup, [("127.0.0.1", upstream.port)], timeout=0.5)
        forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            query = dns.message.make_query("www.upstream.test", "A", id=4242)
            answering = asyncio.ensure_future(resolver.handle(query.to_wire(), via_tcp=False))
            for _ in range(500):  # until the query is out
                if upstream.ids:
                    break
                await asyncio.sleep(0.01)
            (pending,) = resolver.pool()._waiting
            assert pending.socket is not None
            forged = dns.message.make_response(query)
            forged.id = pending.qid
            forged.answer.append(
                dns.rrset.from_text("www.upstream.test.", 60, "IN", "A", "203.0.113.66")
            )
            forger.sendto(forged.to_wire(), ("127.0.0.1", pending.socket.sock.getsockname()[1]))
            answer = await answering
            assert answer is not None
            return dns.message.from_wire(answer)
        finally:
            forger.close()
            resolver.close()
            loop.remove_reader(upstream.sock.fileno())
            upstream.sock.close()

    answer = asyncio.run(forge())
    assert answer.rcode() == dns.rcode.SERVFAIL  # the upstream stayed silent: nothing taken
    assert not answer.answer


def test_a_query_in_flight_when_a_reload_drops_its_upstream_still_gets_an_answer() -> None:
    async def reload_midway() -> tuple[dns.message.Message, dns.message.Message]:
        loop = asyncio.get_running_loop()
        dropped, kept = _Upstream("silent"), _Upstream("ok")
        for upstream in (dropped, kept):
            loop.add_reader(upstream.sock.fileno(), upstream.readable)
        resolver = Resolver(_lookup, [("127.0.0.1", dropped.port)], timeout=0.3)
        try:
            first = asyncio.ensure_future(
                resolver.handle(dns.message.make_query("a.upstream.test", "A").to_wire(), False)
            )
            for _ in range(500):  # until it is out, to the upstream about to be dropped
                if dropped.ids:
                    break
                await asyncio.sleep(0.01)
            resolver.upstreams = [("127.0.0.1", kept.port)]  # what a reload does
            second = await resolver.handle(
                dns.message.make_query("b.upstream.test", "A").to_wire(), False
            )
            first_answer = await asyncio.wait_for(first, 5)  # hung when its socket was gone
            assert first_answer is not None
            assert second is not None
            return dns.message.from_wire(first_answer), dns.message.from_wire(second)
        finally:
            resolver.close()
            for upstream in (dropped, kept):
                loop.remove_reader(upstream.sock.fileno())
                upstream.sock.close()

    first, second = asyncio.run(reload_midway())
    assert first.rcode() == dns.rcode.SERVFAIL  # its upstream went silent, then away
    assert [r.to_text() for rrset in second.answer for r in rrset] == ["192.0.2.7"]
