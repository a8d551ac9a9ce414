"""Decoding of a session's `authorization_token`: base58 (Bitcoin alphabet) over the protobuf
message SessionAuthorizationData (controller/api/resources/targets/v1/target.proto).

Only the wire format is needed, so a small reader stands here instead of generated code."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from boundary_api.errors import ProtocolError
from boundary_api.models import SessionAuthorizationData

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

# SessionAuthorizationData field numbers, by kind of value.
_STRING_FIELDS = {10: "session_id", 20: "target_id", 80: "type", 140: "host_id", 141: "endpoint"}
_BYTES_FIELDS = {120: "certificate", 130: "private_key"}
_TIMESTAMP_FIELDS = {40: "created_time", 105: "expiration"}
_UINT_FIELDS = {102: "endpoint_port", 160: "default_client_port"}
_CONNECTION_LIMIT = 90  # int32: -1 means unlimited
_WORKER_INFO = 150  # repeated WorkerInfo
_WORKER_INFO_ADDRESS = 10


def base58_decode(text: str) -> bytes:
    number = 0
    for char in text:
        try:
            number = number * 58 + _INDEX[char]
        except KeyError:
            raise ProtocolError(
                f"authorization token has a non-base58 character {char!r}"
            ) from None
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    leading_zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading_zeros + body


def base58_encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rest = divmod(number, 58)
        out.append(_ALPHABET[rest])
    leading_zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * leading_zeros + "".join(reversed(out))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtocolError("authorization data ends inside a varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtocolError("authorization data has an over-long varint")


def iter_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) for each field of one protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire_type == _LENGTH:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ProtocolError(f"authorization data field {number} runs past the end")
            value, pos = buf[pos : pos + length], pos + length
        elif wire_type == _FIXED64:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire_type == _FIXED32:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ProtocolError(f"authorization data has unknown wire type {wire_type}")
        yield number, value


def encode_varint(value: int) -> bytes:
    """Protobuf varint; negative numbers as 64-bit two's complement, as int32 fields are."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_timestamp(buf: bytes) -> datetime.datetime:
    """A google.protobuf.Timestamp message."""
    seconds = nanos = 0
    for number, value in iter_fields(buf):
        if number == 1 and isinstance(value, int):
            seconds = value
        elif number == 2 and isinstance(value, int):
            nanos = value
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC) + datetime.timedelta(
        microseconds=nanos // 1000
    )


def int32(value: int) -> int:
    # Negative int32 values travel as 64-bit two's complement varints.
    return value - (1 << 64) if value >= 1 << 63 else value


def decode_authorization_token(token: str) -> SessionAuthorizationData:
    raw = base58_decode(token)
    fields: dict[str, Any] = {"worker_addresses": []}
    for number, value in iter_fields(raw):
        if isinstance(value, bytes):
            if number in _STRING_FIELDS:
                fields[_STRING_FIELDS[number]] = value.decode()
            elif number in _BYTES_FIELDS:
                fields[_BYTES_FIELDS[number]] = value
            elif number in _TIMESTAMP_FIELDS:
                fields[_TIMESTAMP_FIELDS[number]] = decode_timestamp(value)
            elif number == _WORKER_INFO:
                for sub_number, sub_value in iter_fields(value):
                    if sub_number == _WORKER_INFO_ADDRESS and isinstance(sub_value, bytes):
                        fields["worker_addresses"].append(sub_value.decode())
        elif number == _CONNECTION_LIMIT:
            fields["connection_limit"] = int32(value)
        elif number in _UINT_FIELDS:
            fields[_UINT_FIELDS[number]] = value
    for required in ("session_id", "certificate", "private_key"):
        if required not in fields:
            raise ProtocolError(f"authorization data lacks {required}")
    return SessionAuthorizationData.model_validate(fields)
