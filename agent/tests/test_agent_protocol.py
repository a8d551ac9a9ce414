"""The session proxy's websocket, fed by hand (no network): frames split at any boundary reach
the client intact, the first message is the handshake result, pings are answered, a close
code is reported; client frames are masked as RFC 6455 says. And the session's TLS key is the
PEM that `cryptography` writes, without importing it at run time."""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import struct
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from boundary_agent import protocol
from boundary_api import SessionAuthorizationData


class _Transport(asyncio.Transport):
    """What the websocket writes and how it is asked to read, with no socket behind."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.paused = False
        self.buffered = 0

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


class _Sink:
    """The client's StreamWriter, as far as the websocket uses it."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    async def drain(self) -> None:
        pass


def _server_frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    size = len(payload)
    first = (0x80 if final else 0) | opcode
    if size < 126:
        return struct.pack("!BB", first, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


def _feed(websocket: protocol._WebSocket, data: bytes, pieces: int, rng: random.Random) -> None:
    cuts = sorted(rng.sample(range(1, len(data)), min(pieces, len(data) - 1)))
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        chunk = data[start:end]
        while chunk:
            buffer = websocket.get_buffer(len(chunk))
            take = min(len(buffer), len(chunk))
            buffer[:take] = chunk[:take]
            websocket.buffer_updated(take)
            chunk = chunk[take:]


def _unmask_client_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames, offset = [], 0
    while offset < len(data):
        first, second = data[offset], data[offset + 1]
        assert second & 0x80, "a client frame must be masked"
        size, offset = second & 0x7F, offset + 2
        if size == 126:
            size, offset = struct.unpack_from("!H", data, offset)[0], offset + 2
        elif size == 127:
            size, offset = struct.unpack_from("!Q", data, offset)[0], offset + 8
        key, offset = data[offset : offset + 4], offset + 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(data[offset : offset + size]))
        frames.append((first & 0x0F, payload))
        offset += size
    return frames


@pytest.mark.parametrize("seed", range(5))
def test_frames_split_anywhere_reach_the_client_intact(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - seeded, so a failure can be replayed

    async def run() -> tuple[bytes, bytes, bytes]:
        websocket = protocol._WebSocket("key")
        transport = _Transport()
        websocket.connection_made(transport)
        payloads = [
            os.urandom(rng.choice((0, 1, 125, 126, 65535, 65536, 300_000))) for _ in range(6)
        ]
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        head += _server_frame(protocol.OP_BINARY, b"\x08\x01", final=False)
        head += _server_frame(protocol.OP_CONTINUATION, b"result")
        early = _server_frame(protocol.OP_PING, b"hi") + _server_frame(protocol.OP_BINARY, b"early")
        _feed(websocket, head + early, 10, rng)
        first = await websocket.first_message
        paused_before_the_pump = transport.paused
        sink = _Sink()
        websocket.attach(sink)  # type: ignore[arg-type]
        assert paused_before_the_pump, "reading waits for the pump once the result is in"
        assert not transport.paused
        stream = b"".join(_server_frame(protocol.OP_BINARY, payload) for payload in payloads)
        _feed(websocket, stream, 40, rng)
        _feed(websocket, _server_frame(protocol.OP_CLOSE, struct.pack("!H", 1000)), 2, rng)
        assert transport.closed
        assert _unmask_client_frames(bytes(transport.written)) == [
            (protocol.OP_PONG, b"hi"),
            (protocol.OP_CLOSE, struct.pack("!H", 1000)),
        ]
        return first, bytes(sink.transport.written), b"early" + b"".join(payloads)

    first, delivered, expected = asyncio.run(run())
    assert first == b"\x08\x01result"
    assert delivered == expected


async def _pumping() -> tuple[protocol._WebSocket, _Transport, _Sink]:
    """A websocket past its upgrade and handshake result, its pump attached to a client."""
    websocket = protocol._WebSocket("key")
    transport = _Transport()
    websocket.connection_made(transport)
    head = b"HTTP/1.1 101 OK\r\n\r\n" + _server_frame(protocol.OP_BINARY, b"result")
    _feed(websocket, head, 1, random.Random(3))  # noqa: S311
    assert await websocket.first_message == b"result"
    sink = _Sink()
    websocket.attach(sink)  # type: ignore[arg-type]
    return websocket, transport, sink


def test_what_waits_for_a_slow_client_is_still_delivered_after_the_worker_hangs_up() -> None:
    async def run() -> tuple[bool, bool, bytes, bytes]:
        websocket, _, sink = await _pumping()
        sink.transport.buffered = protocol.CLIENT_HIGH_WATER + 1  # the client is slow
        payloads = [os.urandom(40_000) for _ in range(4)]
        stream = b"".join(_server_frame(protocol.OP_BINARY, p) for p in payloads)
        _feed(websocket, stream, 1, random.Random(4))  # noqa: S311
        websocket.connection_lost(None)
        closed_while_waiting = sink.closed
        sink.transport.buffered = 0
        await asyncio.sleep(0.01)
        return closed_while_waiting, sink.closed, bytes(sink.transport.written), b"".join(payloads)

    closed_while_waiting, closed, delivered, sent = asyncio.run(run())
    assert not closed_while_waiting
    assert delivered == sent
    assert closed


def test_a_client_gone_closes_the_websocket_instead_of_writing_on() -> None:
    async def run() -> tuple[bytes, list[tuple[int, bytes]]]:
        websocket, transport, sink = await _pumping()
        _feed(websocket, _server_frame(protocol.OP_BINARY, b"a"), 1, random.Random(6))  # noqa: S311
        sink.transport.closed = True  # the client hung up
        _feed(websocket, _server_frame(protocol.OP_BINARY, b"b" * 5000), 3, random.Random(7))  # noqa: S311
        return bytes(sink.transport.written), _unmask_client_frames(bytes(transport.written))

    written, frames = asyncio.run(run())
    assert written == b"a"
    assert frames == [(protocol.OP_CLOSE, struct.pack("!H", 1000))]


def test_ping_is_answered_and_a_close_code_is_reported() -> None:
    async def run() -> tuple[int | None, list[tuple[int, bytes]]]:
        websocket = protocol._WebSocket("key")
        transport = _Transport()
        websocket.connection_made(transport)
        websocket.buffer_updated(0)
        stream = b"HTTP/1.1 101 OK\r\n\r\n" + _server_frame(protocol.OP_PING, b"p")
        stream += _server_frame(protocol.OP_CLOSE, struct.pack("!H", 1011) + b"limit")
        _feed(websocket, stream, 3, random.Random(1))  # noqa: S311
        websocket.connection_lost(None)
        with pytest.raises(protocol.ChannelClosed) as closed:
            await websocket.first_message
        return closed.value.code, _unmask_client_frames(bytes(transport.written))

    code, frames = asyncio.run(run())
    assert code == 1011
    assert frames == [(protocol.OP_PONG, b"p"), (protocol.OP_CLOSE, struct.pack("!H", 1011))]


def test_client_frames_are_masked_with_their_length_encoded() -> None:
    for size in (0, 5, 125, 126, 65535, 65536, 70_000):
        payload = os.urandom(size)
        assert _unmask_client_frames(protocol._frame(protocol.OP_BINARY, payload)) == [
            (protocol.OP_BINARY, payload)
        ]


def test_reserved_bits_close_the_websocket_as_a_protocol_error() -> None:
    async def run() -> list[tuple[int, bytes]]:
        websocket = protocol._WebSocket("key")
        transport = _Transport()
        websocket.connection_made(transport)
        _feed(websocket, b"HTTP/1.1 101 OK\r\n\r\n\xc2\x00", 1, random.Random(2))  # noqa: S311
        assert transport.closed
        return _unmask_client_frames(bytes(transport.written))

    assert asyncio.run(run()) == [(protocol.OP_CLOSE, struct.pack("!H", 1002))]


def test_the_session_key_pem_is_what_cryptography_writes() -> None:
    seed = os.urandom(32)
    expected = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert protocol._ed25519_key_pem(seed) == expected


def test_a_misread_handshake_is_tried_again_each_time_after_a_longer_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []

    opened = cast(protocol.SessionChannel, object())

    async def misread_twice(
        *_args: object, settle: float, **_kwargs: object
    ) -> protocol.SessionChannel:
        pauses.append(settle)
        if len(pauses) < 3:
            raise protocol.HandshakeMisread("closed during handshake: received 1002")
        return opened

    monkeypatch.setattr(protocol, "_open_channel_once", misread_twice)
    data = cast(SessionAuthorizationData, object())
    channel = asyncio.run(
        protocol.open_channel(data, "t" * 20, context=ssl.create_default_context())
    )
    assert channel is opened
    assert pauses == list(protocol.HANDSHAKE_SETTLE_S[:3])
    assert pauses == sorted(pauses)
    assert pauses[0] == 0.0


def test_a_worker_that_always_misreads_fails_after_every_try(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tries = 0

    async def misread(*_args: object, **_kwargs: object) -> None:
        nonlocal tries
        tries += 1
        raise protocol.HandshakeMisread("closed during handshake: received 1002")

    monkeypatch.setattr(protocol, "_open_channel_once", misread)
    monkeypatch.setattr(protocol, "HANDSHAKE_SETTLE_S", (0.0, 0.0, 0.0))
    data = cast(SessionAuthorizationData, object())
    with pytest.raises(protocol.HandshakeMisread):
        asyncio.run(protocol.open_channel(data, "t" * 20, context=ssl.create_default_context()))
    assert tries == 3
