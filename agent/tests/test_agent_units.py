"""Pure pieces of the agent: configuration, the session handshake encoding, /proc parsing,
address allocation and DNS answers (with an in-memory lookup, no network)."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rdatatype
import pytest

from boundary_agent.config import AgentConfig, ConfigError, parse_config
from boundary_agent.daemon import AddressPool
from boundary_agent.dns import Resolver
from boundary_agent.peers import _hex_endpoint
from boundary_agent.protocol import (
    COMMAND_CANCEL,
    decode_handshake_result,
    encode_client_handshake,
    new_tofu_token,
)
from boundary_api.authdata import encode_varint, iter_fields


def test_defaults_match_the_official_agent() -> None:
    config = AgentConfig()
    assert config.v4_prefix == "100.64.0.0/10"
    assert config.alias_refresh_interval == 60
    assert config.listen_addresses() == [("0.0.0.0", 53), ("::", 53)]
    assert not config.loopback_mode


def test_durations_and_loopback_mode() -> None:
    config = parse_config('alias_refresh_interval = "2m"\nv4_prefix = "127.77.0.0/16"\n')
    assert config.alias_refresh_interval == 120
    assert config.loopback_mode


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('v4_prefix = "10.0.0.0/20"', "v4_prefix"),
        ('v4_prefix = "fd00::/64"', "v4_prefix"),
        ('dns_request_timeout = "-1s"', "dns_request_timeout"),
        ('override_upstream_dns_servers = ["not-an-ip"]', "override_upstream_dns_servers"),
        ('resolver_mode = "magic"', "resolver_mode"),
        ("no_such_field = 1", "no_such_field"),
    ],
)
def test_invalid_fields_are_named(text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_config(text)


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


def test_proc_net_endpoints() -> None:
    assert _hex_endpoint("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _hex_endpoint("0000000000000000FFFF00000100007F:0035") == ("127.0.0.1", 53)


def test_addresses_are_stable_per_name() -> None:
    pool = AddressPool("127.77.0.0/16")
    first = pool.address("a.test")
    assert pool.address("b.test") != first
    assert pool.address("a.test") == first == "127.77.0.2"


def test_alias_answers_locally_and_other_types_never_leak() -> None:
    resolver = Resolver(lambda name: "127.77.0.9" if name == "db.test" else None, [])

    async def ask(name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        wire = dns.message.make_query(name, rdtype).to_wire()
        answer = await resolver.handle(wire, via_tcp=False)
        assert answer is not None
        return dns.message.from_wire(answer)

    a = asyncio.run(ask("DB.test.", dns.rdatatype.A))
    assert [r.to_text() for r in a.answer[0]] == ["127.77.0.9"]
    aaaa = asyncio.run(ask("db.test", dns.rdatatype.AAAA))
    assert (aaaa.rcode(), aaaa.answer) == (0, [])
    # No upstream configured: a forwarded name gets SERVFAIL, not silence.
    other = asyncio.run(ask("other.test", dns.rdatatype.A))
    assert other.rcode() == 2
    assert resolver.forwarded == 1


def test_garbage_gets_formerr_or_nothing() -> None:
    resolver = Resolver(lambda name: None, [])
    assert asyncio.run(resolver.handle(b"\x12", via_tcp=False)) is None
    reply = asyncio.run(resolver.handle(b"\x12\x34" + b"\x01\x00" + b"\xff" * 12, via_tcp=False))
    assert reply is not None
    assert reply[:2] == b"\x12\x34"
    assert reply[3] & 0x0F == 1  # FORMERR
