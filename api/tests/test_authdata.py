"""Decoding of session authorization tokens (base58 over protobuf), from hand-built messages."""

from __future__ import annotations

import datetime

import pytest

from boundary_api.authdata import (
    base58_decode,
    base58_encode,
    decode_authorization_token,
    encode_varint,
)
from boundary_api.errors import ProtocolError


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return encode_varint(number << 3) + encode_varint(value)
    return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00abc", bytes(range(256))])
def test_base58_round_trip(data: bytes) -> None:
    assert base58_decode(base58_encode(data)) == data


def test_base58_known_vector() -> None:
    assert base58_encode(b"hello world") == "StV1DL6CwTryKyV"


def test_decodes_every_field_including_negative_limit_and_workers() -> None:
    expiration = _field(1, 1_900_000_000) + _field(2, 500_000_000)
    message = b"".join(
        [
            _field(10, b"s_abc"),
            _field(20, b"ttcp_1"),
            _field(80, b"tcp"),
            _field(90, -1),
            _field(102, 5432),
            _field(105, expiration),
            _field(120, b"DER"),
            _field(130, b"k" * 64),
            _field(140, b"hst_1"),
            _field(141, b"tcp://db:5432"),
            _field(150, _field(10, b"10.0.0.1:9202")),
            _field(150, _field(10, b"10.0.0.2:9202")),
            _field(160, 15432),
            _field(999, b"unknown fields are skipped"),
        ]
    )
    data = decode_authorization_token(base58_encode(message))
    assert data.session_id == "s_abc"
    assert data.connection_limit == -1
    assert data.endpoint_port == 5432
    assert data.worker_addresses == ["10.0.0.1:9202", "10.0.0.2:9202"]
    assert data.expiration == datetime.datetime(2030, 3, 17, 17, 46, 40, 500000, datetime.UTC)
    assert data.private_key.get_secret_value() == b"k" * 64
    assert "kkkk" not in repr(data)
    assert data.default_client_port == 15432


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("0OIl", "non-base58"),
        (base58_encode(_field(10, b"s_1")), "lacks certificate"),
        (base58_encode(b"\x52\x10abc"), "runs past the end"),
        (base58_encode(b"\x0b"), "unknown wire type"),
    ],
)
def test_malformed_tokens_raise_protocol_error(token: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_authorization_token(token)
