"""Pure pieces of the agent: configuration, the session handshake encoding, /proc parsing,
address allocation and DNS answers (with an in-memory lookup, no network)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest

from boundary_agent.addresses import AddressPool
from boundary_agent.cli import _event_loop_factory, notify_ready
from boundary_agent.config import AgentConfig, ConfigError, parse_config
from boundary_agent.daemon import Agent
from boundary_agent.dns import LocalAddresses, Resolver
from boundary_agent.dnswire import parse_simple_query
from boundary_agent.peers import _hex_endpoint
from boundary_agent.protocol import (
    COMMAND_CANCEL,
    decode_handshake_result,
    encode_client_handshake,
    new_tofu_token,
)
from boundary_agent.resolver import forward_upstreams, resolvectl_server
from boundary_agent.users import User
from boundary_api import Alias
from boundary_api.authdata import encode_varint, iter_fields


def test_defaults_match_the_official_agent() -> None:
    config = AgentConfig()
    assert config.v4_prefix == "100.64.0.0/10"
    assert config.alias_refresh_interval == 60
    assert config.listen_addresses() == [("0.0.0.0", 53), ("::", 53)]
    assert not config.loopback_mode


def test_log_level_in_any_case_as_the_official_documentation_writes_it() -> None:
    assert parse_config('log_level = "DEBUG"').log_level == "debug"
    assert parse_config('log_level = "Warn"').log_level == "warn"


def test_durations_and_loopback_mode() -> None:
    config = parse_config('alias_refresh_interval = "2m"\nv4_prefix = "127.77.0.0/16"\n')
    assert config.alias_refresh_interval == 120
    assert config.loopback_mode


@pytest.mark.parametrize(
    ("text", "loopback_mode"),
    [
        ('v6_prefix = "fd12:3456:789a::/64"', False),
        ('v4_prefix = ""\nv6_prefix = "fc00::/7"', False),
        ('v4_prefix = "127.77.0.0/16"\nv6_prefix = "fd00:1::/120"', False),
    ],
)
def test_valid_v6_prefixes(text: str, loopback_mode: bool) -> None:
    assert parse_config(text).loopback_mode is loopback_mode


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('v4_prefix = "10.0.0.0/20"', "v4_prefix"),
        ('v4_prefix = "fd00::/64"', "v4_prefix"),
        ('v6_prefix = "2001:db8::/64"', "v6_prefix"),
        ('v6_prefix = "fd00:1::/124"', "v6_prefix"),
        ('v6_prefix = "10.0.0.0/8"', "v6_prefix"),
        ('v4_prefix = ""', "v4_prefix and v6_prefix are both empty"),
        ('resolver_mode = "resolved"', "interface_to_use"),
        ('resolver_mode = "resolved"\ninterface_to_use = "lo"', "interface_to_use"),
        ('dns_request_timeout = "-1s"', "dns_request_timeout"),
        ('override_upstream_dns_servers = ["not-an-ip"]', "override_upstream_dns_servers"),
        ('resolver_mode = "magic"', "resolver_mode"),
        ("no_such_field = 1", "no_such_field"),
        ("log_to_stdout = false", "log_to_stdout is false and log_file is empty"),
        ('log_level = "verbose"', "log_level"),
        ("control_listen_port = 0", "control_listen_port"),
        ("control_listen_port = 65536", "control_listen_port"),
        ('event_loop = "trio"', "event_loop"),
    ],
)
def test_invalid_fields_are_named(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_config(text)


@pytest.mark.parametrize(("name", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_the_agent_runs_on_the_event_loop_its_config_names(name: str, module: str) -> None:
    assert parse_config(f'event_loop = "{name}"').event_loop == name
    loop = _event_loop_factory(name)()
    try:
        assert type(loop).__module__.split(".")[0] == module
    finally:
        loop.close()


def test_uvloop_missing_is_a_config_error_naming_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert AgentConfig().event_loop == "uvloop"
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop: ImportError
    with pytest.raises(ConfigError, match='set event_loop = "asyncio"'):
        _event_loop_factory("uvloop")


def test_handshake_encoding() -> None:
    token = new_tofu_token()
    assert len(token) == 20
    fields = dict(iter_fields(encode_client_handshake(token, COMMAND_CANCEL)))
    assert fields == {10: token.encode(), 20: 1}
    assert dict(iter_fields(encode_client_handshake(token))) == {10: token.encode()}


def test_handshake_result_with_unlimited_connections() -> None:
    minus_one = (1 << 64) - 1
    raw = bytes([0x52, 0x06, 0x08, 0x80, 0xE4, 0x97, 0xD0, 0x12])  # expiration{seconds}
    raw += (
        bytes([0xA0, 0x01])
        + encode_varint(minus_one)
        + bytes([0xF0, 0x01])
        + encode_varint(minus_one)
    )
    result = decode_handshake_result(raw)
    assert (result.connection_limit, result.connections_left) == (-1, -1)
    assert result.expiration is not None


@pytest.mark.parametrize(
    ("host", "port", "server"),
    [
        ("100.64.0.1", 53, "100.64.0.1"),
        ("100.64.0.1", 5353, "100.64.0.1:5353"),
        ("fd00:1::1", 53, "fd00:1::1"),
        ("fd00:1::1", 5353, "[fd00:1::1]:5353"),
    ],
)
def test_resolvectl_server_keeps_the_port(host: str, port: int, server: str) -> None:
    assert resolvectl_server(host, port) == server


def test_resolved_mode_forwards_to_resolveds_upstreams_not_back_through_its_stub(
    tmp_path: Path,
) -> None:
    """/etc/resolv.conf names resolved's stub, which routes the alias domains to the agent: a
    name there that is no alias, forwarded to it, came back to the agent until resolved gave
    up (30 s, measured in the systemd container of tests/kind/laptop.py)."""
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    upstreams = tmp_path / "resolved-resolv.conf"
    upstreams.write_text("nameserver 192.0.2.53\nnameserver 100.64.0.1\nsearch .\n")
    resolved = parse_config(
        'resolver_mode = "resolved"\ninterface_to_use = "boundary0"\n'
        'dns_listen_addresses = ["100.64.0.1:53"]\n'
    )
    assert forward_upstreams(resolved, stub, upstreams) == [("192.0.2.53", 53)]
    assert forward_upstreams(AgentConfig(), stub, upstreams) == [("127.0.0.53", 53)]
    overridden = resolved.model_copy(update={"override_upstream_dns_servers": ["192.0.2.1:5353"]})
    assert forward_upstreams(overridden, stub, upstreams) == [("192.0.2.1", 5353)]


def test_resolved_mode_flushes_resolveds_cache_when_the_answers_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resolved keeps a forwarded NXDOMAIN for its SOA's TTL: a name asked while paused (or
    before a login) would stay unresolved after the resume. A resolvectl on PATH that records
    its arguments stands in for the real one (tests/kind/laptop.py sees the real flush)."""
    calls = tmp_path / "calls"
    resolvectl = tmp_path / "bin" / "resolvectl"
    resolvectl.parent.mkdir()
    resolvectl.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    resolvectl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{resolvectl.parent}:/usr/bin:/bin")
    state = f'state_file = "{tmp_path}/state.json"\n'
    agent = Agent(
        parse_config(state + 'resolver_mode = "resolved"\ninterface_to_use = "boundary0"\n')
    )
    agent.pause()
    agent.resume()
    assert calls.read_text().splitlines() == ["flush-caches", "flush-caches"]
    calls.unlink()
    other = Agent(parse_config(state + 'v4_prefix = "127.77.0.0/16"\n'))
    other.pause()
    other.resume()
    assert not calls.exists()


def test_ready_is_told_to_systemd_through_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unit is Type=notify: `systemctl start` returns once the agent serves."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        notify_ready()
        assert systemd.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    notify_ready()  # not under systemd: nothing to tell


def test_proc_net_endpoints() -> None:
    assert _hex_endpoint("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _hex_endpoint("0000000000000000FFFF00000100007F:0035") == ("127.0.0.1", 53)


def test_addresses_are_stable_per_name() -> None:
    pool = AddressPool("127.77.0.0/16")
    first = pool.addresses("a.test")
    assert pool.addresses("b.test") != first
    assert pool.addresses("a.test") == first == LocalAddresses(("127.77.0.2",))


def test_dual_stack_and_v6_only_pools() -> None:
    dual = AddressPool("127.77.0.0/16", "fd12:3456:789a::/64")
    dual.addresses("a.test")
    assert dual.addresses("b.test").addresses == ("127.77.0.3", "fd12:3456:789a::3")
    assert AddressPool("", "fd00:1::/120").addresses("c.test").addresses == ("fd00:1::2",)


def _ask(resolver: Resolver, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
    wire = dns.message.make_query(name, rdtype).to_wire()
    answer = asyncio.run(resolver.handle(wire, via_tcp=False))
    assert answer is not None
    return dns.message.from_wire(answer)


def test_alias_answers_locally_and_other_types_never_leak() -> None:
    local = LocalAddresses(("127.77.0.9",))
    resolver = Resolver(lambda name: local if name == "db.test" else None, [])
    a = _ask(resolver, "DB.test.", dns.rdatatype.A)
    assert [r.to_text() for r in a.answer[0]] == ["127.77.0.9"]
    aaaa = _ask(resolver, "db.test", dns.rdatatype.AAAA)
    assert (aaaa.rcode(), aaaa.answer) == (0, [])
    # No upstream configured: a forwarded name gets SERVFAIL, not silence.
    other = _ask(resolver, "other.test", dns.rdatatype.A)
    assert other.rcode() == 2
    assert resolver.forwarded == 1


@pytest.mark.parametrize(
    ("rdtype", "expected"),
    [
        (dns.rdatatype.A, ["A 127.77.0.9"]),
        (dns.rdatatype.AAAA, ["AAAA fd12::9"]),
        (dns.rdatatype.ANY, ["A 127.77.0.9", "AAAA fd12::9"]),
        (dns.rdatatype.MX, []),
        (dns.rdatatype.TXT, []),
    ],
)
def test_dual_stack_alias_answers_each_type(
    rdtype: dns.rdatatype.RdataType, expected: list[str]
) -> None:
    local = LocalAddresses(("127.77.0.9", "fd12::9"))
    resolver = Resolver(lambda name: local if name == "db.test" else None, [])
    reply = _ask(resolver, "db.test", rdtype)
    assert reply.rcode() == 0
    got = [
        f"{dns.rdatatype.to_text(rrset.rdtype)} {record.to_text()}"
        for rrset in reply.answer
        for record in rrset
    ]
    assert got == expected
    assert resolver.forwarded == 0


def test_garbage_gets_formerr_or_nothing() -> None:
    resolver = Resolver(lambda name: None, [])
    assert asyncio.run(resolver.handle(b"\x12", via_tcp=False)) is None
    reply = asyncio.run(resolver.handle(b"\x12\x34" + b"\x01\x00" + b"\xff" * 12, via_tcp=False))
    assert reply is not None
    assert reply[:2] == b"\x12\x34"
    assert reply[3] & 0x0F == 1  # FORMERR


def test_cached_alias_answers_end_with_pause_and_come_back_with_resume(tmp_path: Path) -> None:
    """The fast path answers aliases from cached wire: pausing must reach it at once."""
    config = parse_config(
        f'state_file = "{tmp_path}/state.json"\nv4_prefix = "127.77.0.0/16"\n'
        'override_upstream_dns_servers = ["127.0.0.1:9"]\n'
    )
    agent = Agent(config)
    user = User(1, "", None, "at_1", "u_1", None)  # type: ignore[arg-type] # no client needed
    user.aliases = {"db.test": Alias(id="alt_1", value="db.test", destination_id="ttcp_1")}
    agent.users.by_uid[1] = user
    address = agent.listeners.pool.addresses("db.test").addresses[0]
    agent.listeners._ready.add("db.test")  # as once its listener is up
    wire = dns.message.make_query("db.test", "A").to_wire()
    simple = parse_simple_query(wire)
    assert simple is not None

    def answered() -> list[str]:
        answer = agent.resolver.alias_answer(wire, simple)
        reply = dns.message.from_wire(answer) if answer is not None else None
        return [r.to_text() for rrset in reply.answer for r in rrset] if reply else []

    assert answered() == [address]
    assert answered() == [address]  # now from the cache
    agent.pause()
    assert answered() == []  # not ours while paused: the query goes upstream
    agent.resume()
    assert answered() == [address]


def test_a_query_asked_again_is_answered_from_its_remembered_outcome_with_its_own_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The alias lookup runs once per query wire, for aliases and for names that go upstream
    alike, until the remembered outcomes fill up and are dropped whole."""
    monkeypatch.setattr("boundary_agent.dns.KNOWN_QUERIES_LIMIT", 2)
    local = LocalAddresses(("127.77.0.9",))
    asked: list[str] = []

    def lookup(name: str) -> LocalAddresses | None:
        asked.append(name)
        return local if name == "db.test" else None

    resolver = Resolver(lookup, [])  # no upstream: what goes there gets SERVFAIL at once
    replies: list[dns.message.Message] = []
    loop = asyncio.new_event_loop()

    def ask(name: str, query_id: int) -> None:
        query = dns.message.make_query(name, "A")
        query.id = query_id
        resolver.respond(
            query.to_wire(), lambda r, _: replies.append(dns.message.from_wire(r)), (), loop
        )

    try:
        for query_id in (1, 2):
            ask("db.test", query_id)
            ask("other.test", query_id)
        assert [(r.id, r.rcode()) for r in replies] == [(1, 0), (1, 2), (2, 0), (2, 2)]
        assert replies[0].answer == replies[2].answer
        assert asked == ["db.test", "other.test"], "each the second time from what the first left"
        ask("third.test", 3)  # a third query: the two remembered are dropped
        ask("other.test", 4)
        assert asked == ["db.test", "other.test", "third.test", "other.test"]
        assert (resolver.answered, resolver.forwarded) == (2, 4)
    finally:
        resolver.close()
        loop.close()
