"""DNS fuzzing of the running agent: a seeded mutator blasts generated and mutated packets (bit
flips, truncation, random bytes, wild qtypes/classes/flags/EDNS, compression loops, huge
counts, responses, trailing junk, giant messages) over UDP, and some over TCP with length
prefixes; hypothesis generates structured queries whose answers are checked one by one.

The agent must stay up, its RSS flat after a warm-up, its descriptors back to where they were,
its log free of unhandled exceptions, and an alias and a forwarded name must still resolve.
Sizes: 1,000,000 mutated packets under `make test-chaos`, 20,000 under `make test`."""

from __future__ import annotations

import collections
import random
import socket
import statistics
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from agent_harness import (
    AliasedTarget,
    agent_pid,
    aliased_target,
    ask,
    dnsmasq,
    figures_of,
    open_fds,
    proc_status_kib,
    resolve,
    running_agent,
    udp_drops,
    wait_alias,
)
from chaos_profile import pick
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boundary_devstack.agent_process import LocalAgent
from boundary_devstack.net import free_port
from boundary_devstack.stack import StackEnv

PACKETS = pick(1_000_000, 20_000)
WARM_UP = pick(50_000, 4_000)
STRUCTURED = pick(3_000, 300)
FLAG_VALUES = 1 << 16
RANDOM_RECORDS = pick(200_000, 25_000)
RANDOM_RECORDS_GROWTH_LIMIT_KIB = 8 * 1024
"""Unbounded, the rdata class cache took ~800 octets a packet: 20 MiB for the short run."""
TCP_SHARE = 0.05
"""About this share of the mutated packets goes over TCP, 16 length-prefixed per connection."""
BATCH = (8, 48, 256)
"""UDP packets between two liveness probes (least, first, most): the probe's answer paces the
blast, and a probe lost in a full socket buffer halves the batch, so the agent's buffer seldom
overflows (the kernel's drop counter is reported)."""
RSS_GROWTH_LIMIT_KIB = 20 * 1024
DNS_HOST, UPSTREAM_HOST = "127.0.61.53", "127.0.61.54"
PREFIX = "127.61.0.0/16"
FORWARDED, FORWARDED_ADDRESS = "upstream.example", "192.0.2.7"
HEADER = struct.Struct("!HHHHHH")
CLASSES = (1, 3, 4, 254, 255)
QTYPES = (1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 43, 48, 64, 65, 250, 251, 252, 255, 256, 65535)


@pytest.fixture(scope="module")
def agent(
    stack_env: StackEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalAgent, AliasedTarget, str]]:
    """The agent, forwarding to a dnsmasq that knows upstream.example, and an alias target no
    connection is ever made to: (agent, target, alias address)."""
    directory = tmp_path_factory.mktemp("fuzz-agent")
    with (
        aliased_target(stack_env, "fuzz", free_port()) as target,
        dnsmasq(directory, UPSTREAM_HOST, {FORWARDED: FORWARDED_ADDRESS}) as upstream_port,
        running_agent(
            directory,
            stack_env,
            dns_host=DNS_HOST,
            prefix=PREFIX,
            upstreams=[f"{UPSTREAM_HOST}:{upstream_port}"],
            settings='dns_request_timeout = "2s"\n',
        ) as local,
    ):
        yield local, target, wait_alias(local, target.alias, PREFIX, target.port)


# ---------------------------------------------------------------- the seeded mutator


def _query_wire(name: str, rdtype: int, **edns: Any) -> bytes:
    message = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), **edns)
    return message.to_wire()


def _name_wire(name: str) -> bytes:
    wire = dns.name.from_text(name).to_wire()
    assert wire is not None
    return wire


class Mutator:
    """Seeded, fast DNS packet generator: each call picks a kind (weighted) and builds one
    packet from scratch or from a corpus of valid queries."""

    def __init__(self, seed: int, names: Sequence[str]) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - seeded, so a failure can be replayed
        self.names = [_name_wire(n) for n in names]
        self.corpus = [
            _query_wire(name, rdtype, **edns)
            for name in names
            for rdtype in (1, 28, 255, 16, 65)
            for edns in (
                {},
                {"use_edns": 0, "payload": 4096, "want_dnssec": True},
                {
                    "use_edns": 0,
                    "payload": 512,
                    "options": [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"c" * 8)],
                },
            )
        ]
        weighted: list[tuple[Callable[[], bytes], int]] = [
            (self.random_bytes, 3),
            (self.bit_flips, 5),
            (self.truncated, 3),
            (self.spliced, 2),
            (self.random_header, 2),
            (self.wild_query, 6),
            (self.compression, 2),
            (self.huge_counts, 2),
            (self.bad_labels, 2),
            (self.questions, 1),
            (self.response, 1),
            (self.trailing, 1),
            (self.odd_records, 2),
        ]
        self.kinds = [make for make, weight in weighted for _ in range(weight)]
        self.produced: collections.Counter[str] = collections.Counter()
        self.flags_walked = 0

    def packet(self) -> bytes:
        if self.rng.random() < 0.0005:
            make: Callable[[], bytes] = self.giant
        else:
            make = self.rng.choice(self.kinds)
        self.produced[make.__name__] += 1
        return make()

    # -- building blocks
    def seed(self) -> bytearray:
        return bytearray(self.rng.choice(self.corpus))

    def random_name(self) -> bytes:
        labels = [
            self.rng.randbytes(self.rng.randint(1, 20)) for _ in range(self.rng.randint(1, 4))
        ]
        return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"

    def header(self, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0) -> bytes:
        return HEADER.pack(self.rng.getrandbits(16), flags, qd, an, ns, ar)

    def question(self) -> bytes:
        rng = self.rng
        name = rng.choice(self.names) if rng.random() < 0.7 else self.random_name()
        qtype = rng.choice(QTYPES) if rng.random() < 0.7 else rng.getrandbits(16)
        qclass = rng.choice(CLASSES) if rng.random() < 0.7 else rng.getrandbits(16)
        return name + struct.pack("!HH", qtype, qclass)

    # -- the kinds
    def every_flags(self) -> bytes:
        """A corpus query with the next of the 65,536 values of the header's flags field."""
        packet = self.seed()
        struct.pack_into("!H", packet, 2, self.flags_walked & 0xFFFF)
        self.flags_walked += 1
        return bytes(packet)

    def random_bytes(self) -> bytes:
        size = self.rng.choice((0, 1, 2, 11, 12, 13, 17, 31, 64, 300, 512, 1232, 1500))
        return self.rng.randbytes(size)

    def bit_flips(self) -> bytes:
        packet = self.seed()
        for _ in range(self.rng.randint(1, 8)):
            bit = self.rng.randrange(len(packet) * 8)
            packet[bit // 8] ^= 1 << (bit % 8)
        return bytes(packet)

    def truncated(self) -> bytes:
        packet = self.seed()
        return bytes(packet[: self.rng.randrange(len(packet))])

    def spliced(self) -> bytes:
        packet = self.seed()
        start = self.rng.randrange(len(packet))
        end = min(len(packet), start + self.rng.randint(0, 16))
        packet[start:end] = self.rng.randbytes(self.rng.randint(0, 16))
        return bytes(packet)

    def random_header(self) -> bytes:
        return self.rng.randbytes(12) + bytes(self.seed()[12:])

    def wild_query(self) -> bytes:
        """A well-formed query with any flags (QR included), opcode, qtype and class, and often
        an OPT record with any payload size, version, flags and options."""
        rng = self.rng
        body = self.question()
        additional = 0
        if rng.random() < 0.5:
            options = b"".join(
                struct.pack("!HH", rng.getrandbits(16), len(data)) + data
                for data in (rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(0, 3)))
            )
            body += b"\0" + struct.pack("!HHIH", 41, rng.getrandbits(16), rng.getrandbits(32), 0)
            body = body[:-2] + struct.pack("!H", len(options)) + options
            additional = rng.choice((1, 1, 1, 2))  # two OPT records is a FORMERR
            if additional == 2:
                body += body[-(11 + len(options)) :]
        return self.header(ar=additional, flags=rng.getrandbits(16)) + body

    def compression(self) -> bytes:
        """Names that point at themselves, at each other, past the end, or down long chains."""
        rng = self.rng
        variants = [
            b"\xc0\x0c",  # points at itself
            b"\x03abc\xc0\x0c",  # a label, then back to it
            b"\xc0\x0e\xc0\x0c",  # two pointers at each other
            b"\xc0" + bytes([rng.getrandbits(8)]),  # anywhere, often past the end
            b"\x01a" * rng.randint(1, 60) + b"\xc0\x0c",
            b"\0" + b"".join(struct.pack("!H", 0xC000 | (12 + 2 * i)) for i in range(200)),
            bytes([0xC0 | rng.getrandbits(6), rng.getrandbits(8)]),
        ]
        name = rng.choice(variants)
        return self.header() + name + struct.pack("!HH", 1, 1)

    def huge_counts(self) -> bytes:
        packet = self.seed()
        counts = [self.count() for _ in range(3)]
        struct.pack_into("!HHHH", packet, 4, self.rng.choice((0, 2, 0xFFFF)), *counts)
        return bytes(packet)

    def count(self) -> int:
        return self.rng.choice((0, 1, 7, 0xFFFF, self.rng.getrandbits(16)))

    def bad_labels(self) -> bytes:
        rng = self.rng
        variants = [
            bytes([rng.choice((0x40, 0x41, 0x7F, 0x80, 0xBF))]) + rng.randbytes(8) + b"\0",
            (b"\x3f" + b"x" * 63) * 5 + b"\0",  # a name over 255 octets
            b"\x40" + b"y" * 64 + b"\0",  # a 64-octet label
            b"\x03abc\0\x03def\0",  # a name that ends early
            b"\x05ab",  # a label past the end
            bytes([rng.randint(1, 63)]) + rng.randbytes(63) + b"\0",
        ]
        return self.header() + rng.choice(variants) + struct.pack("!HH", 1, 1)

    def questions(self) -> bytes:
        count = self.rng.randint(2, 8)
        return self.header(qd=count) + b"".join(self.question() for _ in range(count))

    def response(self) -> bytes:
        """A well-formed answer (QR set) sent as if it were a query."""
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + self.rng.randbytes(4)
        return self.header(an=1, flags=0x8180) + self.question() + answer

    def trailing(self) -> bytes:
        return bytes(self.seed()) + self.rng.randbytes(self.rng.randint(1, 64))

    def odd_records(self) -> bytes:
        """A query carrying one record of a random class and type, in any section."""
        rng = self.rng
        record = b"\xc0\x0c" + struct.pack("!HHIH", rng.getrandbits(16), rng.getrandbits(16), 0, 1)
        section = rng.choice(("an", "ns", "ar"))
        return self.header(**{section: 1}) + self.question() + record + b"x"

    def giant(self) -> bytes:
        """A valid query padded by a big EDNS option, or random bytes, up to the UDP limit."""
        size = self.rng.randint(4_000, 60_000)
        if self.rng.random() < 0.5:
            return self.rng.randbytes(size)
        option = struct.pack("!HH", 65001, size) + self.rng.randbytes(size)
        opt = b"\0" + struct.pack("!HHIH", 41, 4096, 0, len(option)) + option
        return self.header(ar=1) + self.question() + opt


# ---------------------------------------------------------------- the blast


class Blaster:
    def __init__(self, local: LocalAgent, alias: str, address: str, mutator: Mutator) -> None:
        self.local, self.alias, self.address, self.mutator = local, alias, address, mutator
        self.target = (local.dns_host, local.dns_port)
        self.sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
        for sock in self.sockets:
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        self.probe_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = {"udp": 0, "tcp": 0}
        self.answers: collections.Counter[str] = collections.Counter()
        self.probe_ms: list[float] = []
        self.batch = BATCH[1]

    def close(self) -> None:
        for sock in [*self.sockets, self.probe_socket]:
            sock.close()

    def run(self, count: int) -> None:
        rng = self.mutator.rng
        done = 0
        while done < count:
            for _ in range(min(self.batch, count - done)):
                packet = self.mutator.packet()
                done += 1
                if rng.random() < TCP_SHARE / 16:
                    self.tcp_connection(packet)
                    done += 15
                    continue
                try:
                    rng.choice(self.sockets).sendto(packet, self.target)
                except BlockingIOError:
                    continue  # our own send buffer is full: not sent, not counted
                self.sent["udp"] += 1
            self.drain()
            self.probe()

    def tcp_connection(self, first: bytes) -> None:
        """16 length-prefixed packets on one connection; some prefixes lie about the length."""
        frames = []
        for packet in [first, *(self.mutator.packet() for _ in range(15))]:
            length = len(packet)
            if self.mutator.rng.random() < 0.05:
                length = self.mutator.rng.getrandbits(16)
            frames.append(struct.pack("!H", length) + packet)
        with socket.create_connection(self.target, timeout=5) as sock:
            sock.sendall(b"".join(frames))
        self.sent["tcp"] += len(frames)

    def drain(self) -> None:
        for sock in self.sockets:
            while True:
                try:
                    answer = sock.recv(65535)
                except BlockingIOError:
                    break
                if len(answer) < 12 or not answer[2] & 0x80:
                    self.answers["not a response"] += 1
                else:
                    self.answers[dns.rcode.to_text(dns.rcode.Rcode.make(answer[3] & 0xF))] += 1

    def probe(self) -> None:
        """The alias must keep resolving; the answer also paces the blast."""
        wire = dns.message.make_query(self.alias, "A").to_wire()
        started = time.monotonic()
        least, _, most = BATCH
        for attempt in range(6):
            self.probe_socket.settimeout(0.3 * 2**attempt)
            self.probe_socket.sendto(wire, self.target)
            try:
                while (answer := self.probe_socket.recv(65535))[:2] != wire[:2]:
                    pass  # a late answer to an earlier, lost-then-retried probe
            except TimeoutError:
                self.batch = max(least, self.batch // 2)
                continue
            records = dns.message.from_wire(answer).answer
            assert [rr.to_text() for rrset in records for rr in rrset] == [self.address]
            self.probe_ms.append((time.monotonic() - started) * 1000)
            if not attempt:
                self.batch = min(most, self.batch + 8)
            return
        pytest.fail(
            f"the agent stopped answering after {sum(self.sent.values())} packets:\n"
            f"{self.local.process.log_tail(30)}"
        )


def _settled_rss(pid: int, seconds: float = 4) -> int:
    """RSS once the forwarded queries still waiting for an upstream have timed out (2 s)."""
    time.sleep(seconds)
    return proc_status_kib(pid)


def test_mutated_packet_flood_leaves_the_agent_healthy(
    agent: tuple[LocalAgent, AliasedTarget, str],
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    local, target, address = agent
    pid = agent_pid(local)
    log_before = local.process.log_path.stat().st_size
    mutator = Mutator(20240611, [target.alias, target.alias.upper(), FORWARDED, "nx.c0.test", "."])
    blaster = Blaster(local, target.alias, address, mutator)
    with figures_of(record_property, tmp_path, "dns-fuzz") as figures:
        figures.update(profile="full" if PACKETS >= 1_000_000 else "short", seed=20240611)
        started = time.monotonic()
        figures["rss_start_kib"] = proc_status_kib(pid)
        # Python's enum caches an object per distinct value of the header's flags (dnspython
        # parses them as an enum.Flag): at most 65,536, ~27 MiB. Bounded, so walked through
        # once here, its cost reported on its own; growth past it would be a leak.
        walk = Mutator(1, [target.alias, FORWARDED])
        walk.kinds = [walk.every_flags]
        walker = Blaster(local, target.alias, address, walk)
        walker.run(FLAG_VALUES)
        walker.close()
        figures["rss_after_flag_walk_kib"] = _settled_rss(pid, 1)
        blaster.run(WARM_UP)
        figures["rss_after_warm_up_kib"] = rss_before = _settled_rss(pid)
        fds_before, drops_before = open_fds(pid), udp_drops(local.dns_port)
        blaster.sent = {"udp": 0, "tcp": 0}
        flood_started = time.monotonic()
        blaster.run(PACKETS)
        flood_seconds = time.monotonic() - flood_started
        figures["rss_peak_kib"] = proc_status_kib(pid, "VmHWM")
        figures["rss_end_kib"] = rss_after = _settled_rss(pid)
        blaster.close()
        log_text = local.process.log_path.read_text(errors="replace")[log_before:]
        figures.update(
            packets_fuzzed=sum(blaster.sent.values()),
            packets_udp=blaster.sent["udp"],
            packets_tcp=blaster.sent["tcp"],
            warm_up_packets=WARM_UP,
            flag_walk_packets=FLAG_VALUES,
            kinds=dict(mutator.produced),
            udp_answers=dict(blaster.answers),
            kernel_udp_drops=udp_drops(local.dns_port) - drops_before,
            rss_growth_kib=rss_after - rss_before,
            fds_after_warm_up=fds_before,
            fds_end=open_fds(pid),
            flood_seconds=round(flood_seconds, 1),
            packets_per_second=round(sum(blaster.sent.values()) / flood_seconds),
            probes=len(blaster.probe_ms),
            probe_ms_median=round(statistics.median(blaster.probe_ms), 2),
            probe_ms_max=round(max(blaster.probe_ms), 2),
            agent_log_bytes=len(log_text),
            tracebacks_logged=log_text.count("Traceback"),
            total_seconds=round(time.monotonic() - started, 1),
        )
        assert local.process.running(), local.process.log_tail(40)
        assert figures["packets_fuzzed"] >= PACKETS * 0.95
        assert rss_after - rss_before < RSS_GROWTH_LIMIT_KIB, figures
        assert figures["fds_end"] <= fds_before + 5, figures
        assert "not a response" not in blaster.answers
        assert figures["tracebacks_logged"] == 0, log_text[log_text.find("Traceback") :][:3000]
        # Valid queries still work, over both transports.
        for tcp in (False, True):
            assert resolve(local, target.alias, tcp=tcp) == address
            assert resolve(local, FORWARDED, tcp=tcp) == FORWARDED_ADDRESS


def test_records_of_random_class_and_type_do_not_grow_the_agent(
    agent: tuple[LocalAgent, AliasedTarget, str],
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    """dnspython caches a class per (class, type) pair it parses; every packet here brings a new
    pair. Unbounded, that cache grew the agent by ~800 octets a packet."""
    local, target, address = agent
    pid = agent_pid(local)
    mutator = Mutator(7, [target.alias, FORWARDED])
    mutator.kinds = [mutator.odd_records]
    blaster = Blaster(local, target.alias, address, mutator)
    with figures_of(record_property, tmp_path, "dns-random-records") as figures:
        blaster.run(2_000)
        rss_before = _settled_rss(pid, 1)
        blaster.sent = {"udp": 0, "tcp": 0}
        blaster.run(RANDOM_RECORDS)
        blaster.close()
        figures.update(
            packets=sum(blaster.sent.values()),
            rss_before_kib=rss_before,
            rss_after_kib=_settled_rss(pid, 1),
        )
        figures["rss_growth_kib"] = figures["rss_after_kib"] - rss_before
        assert figures["rss_growth_kib"] < RANDOM_RECORDS_GROWTH_LIMIT_KIB, figures
        assert local.process.running()


# ---------------------------------------------------------------- structured, with hypothesis

_label = st.binary(min_size=1, max_size=20)
_random_name = st.lists(_label, min_size=1, max_size=4).map(
    lambda labels: dns.name.Name([*labels, b""])
)


@st.composite
def structured_queries(draw: st.DrawFn, alias: str) -> dns.message.Message:
    """A well-formed query (QR clear): any name (the alias in any case, a forwarded name,
    random binary labels), qtype, class, opcode and flag bits, with or without EDNS (any version,
    payload, flags, options)."""
    name = draw(
        st.one_of(
            st.sampled_from([alias, FORWARDED, "nx.c0.test"]).map(dns.name.from_text),
            st.just(alias).map(lambda a: "".join(c.upper() if c in "aeiou" else c for c in a)),
            _random_name,
        )
    )
    rdtype = draw(st.sampled_from(QTYPES) | st.integers(0, 65535))
    rdclass = draw(st.sampled_from(CLASSES) | st.integers(0, 65535))
    query = dns.message.make_query(
        name, dns.rdatatype.RdataType.make(rdtype), dns.rdataclass.RdataClass.make(rdclass)
    )
    query.flags = draw(st.integers(0, 0xFFFF)) & ~(dns.flags.QR | 0x7800 | 0xF)
    query.set_opcode(dns.opcode.Opcode.make(draw(st.sampled_from([0, 0, 0, 0, 1, 2, 4, 5, 6, 15]))))
    if draw(st.booleans()):
        options: list[dns.edns.Option] = draw(
            st.lists(
                st.builds(
                    dns.edns.GenericOption,
                    st.integers(0, 65535)
                    .filter(lambda code: code not in (8, 10, 11, 12, 15))
                    .map(dns.edns.OptionType.make),
                    st.binary(max_size=40),
                ),
                max_size=3,
            )
        )
        query.use_edns(
            draw(st.integers(0, 255)),
            draw(st.integers(0, 0xFFFF)),
            draw(st.integers(0, 65535)),
            options=options,
        )
    return query


def test_structured_queries_get_well_formed_answers(
    agent: tuple[LocalAgent, AliasedTarget, str],
    record_property: Callable[[str, object], None],
    tmp_path: Path,
) -> None:
    """Every well-formed query gets a well-formed answer with its id; the alias (any case, class
    IN, opcode QUERY) is answered here, with an A record only for A and ANY."""
    local, target, address = agent
    seen: collections.Counter[str] = collections.Counter()

    @settings(
        max_examples=STRUCTURED,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(query=structured_queries(target.alias))
    def check(query: dns.message.Message) -> None:
        answer = dns.query.udp(query, local.dns_host, port=local.dns_port, timeout=6)
        seen[dns.rcode.to_text(answer.rcode())] += 1
        assert answer.id == query.id
        assert answer.flags & dns.flags.QR
        question = query.question[0]
        is_alias = question.name == dns.name.from_text(target.alias)
        if is_alias and query.opcode() == dns.opcode.QUERY and question.rdclass == 1:
            assert answer.rcode() == dns.rcode.NOERROR
            records = [rr.to_text() for rrset in answer.answer for rr in rrset]
            wants_a = question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY)
            assert records == ([address] if wants_a else [])

    with figures_of(record_property, tmp_path, "dns-structured") as figures:
        started = time.monotonic()
        check()
        figures.update(
            structured_queries=sum(seen.values()),
            rcodes=dict(seen),
            seconds=round(time.monotonic() - started, 1),
        )
    assert local.process.running()
    assert ask(local, target.alias).answer
