"""Boundary's session proxy protocol, written natively (what `boundary connect` speaks):

1. TLS 1.3 to the worker with the session's certificate and Ed25519 key as client credentials,
   ALPN ["http/1.1", <session id>]; the worker must present the session certificate itself.
2. A WebSocket upgrade on /v1/proxy with subprotocol boundary-tcp-proxy-v1.
3. ClientHandshake{tofu_token, command} -> HandshakeResult{expiration, connection_limit,
   connections_left}, as protobuf in binary messages.
4. Then the TCP stream, as binary messages of at most 32 KiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import secrets
import ssl
import string
from collections.abc import Iterator
from dataclasses import dataclass

import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509 import load_der_x509_certificate

from boundary_api import SessionAuthorizationData
from boundary_api.authdata import decode_timestamp, encode_varint, int32, iter_fields

log = logging.getLogger("boundary_agent.protocol")
SUBPROTOCOL = "boundary-tcp-proxy-v1"
MAX_MESSAGE = 32 * 1024
COMMAND_NORMAL, COMMAND_CANCEL = 0, 1
# Close codes the worker uses.
CLOSE_TOFU_REFUSED, CLOSE_LIMIT_REACHED, CLOSE_SETUP_ERROR = 1008, 1011, 3000
CLOSE_PROTOCOL_ERROR = 1002
HANDSHAKE_ATTEMPTS = 3
"""Tries per channel when the worker misreads our ClientHandshake (see HandshakeMisread)."""


class SessionProtocolError(Exception):
    """The worker refused the connection or spoke out of turn; the message says which."""


class WorkerUnreachable(SessionProtocolError):
    """No connection to the session's worker: it is gone, or refused the session outright."""


class HandshakeMisread(SessionProtocolError):
    """The worker closed with a websocket protocol error (1002) while reading our
    ClientHandshake, so it never acted on it: no TOFU check, no connection counted.

    Boundary v0.21.1 workers do this now and then ("received header with unexpected rsv bits
    set: false:false:true"): they lose the first byte of a frame that arrives while they are
    still taking the connection over from their HTTP server, and the frame's second byte
    (mask bit and length) then reads as a header with RSV3 set. `boundary connect` meets it
    too. Trying again on the same session is safe."""


def new_tofu_token() -> str:
    """20 random characters, the same for every connection of one session."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


def encode_client_handshake(tofu_token: str, command: int = COMMAND_NORMAL) -> bytes:
    token = tofu_token.encode()
    message = encode_varint(10 << 3 | 2) + encode_varint(len(token)) + token
    if command:
        message += encode_varint(20 << 3) + encode_varint(command)
    return message


@dataclass(frozen=True)
class HandshakeResult:
    expiration: datetime.datetime | None
    connection_limit: int
    connections_left: int


def decode_handshake_result(data: bytes) -> HandshakeResult:
    expiration = None
    limit = left = 0
    for number, value in iter_fields(data):
        if number == 10 and isinstance(value, bytes):
            expiration = decode_timestamp(value)
        elif number == 20 and isinstance(value, int):
            limit = int32(value)
        elif number == 30 and isinstance(value, int):
            left = int32(value)
    return HandshakeResult(expiration, limit, left)


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path to `data` that never touches a disk (memfd), for APIs that only take paths."""
    fd = os.memfd_create("boundary-session", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def tls_context(data: SessionAuthorizationData) -> ssl.SSLContext:
    """Client TLS for one session: its certificate and key, TLS 1.3, ALPN with the session id.
    The worker's certificate is checked by hand (it must be the session certificate), so the
    library's hostname and chain checks are off."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1", data.session_id])
    seed = data.private_key.get_secret_value()[:32]
    key_pem = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = load_der_x509_certificate(data.certificate).public_bytes(serialization.Encoding.PEM)
    with _memory_file(cert_pem) as cert_path, _memory_file(key_pem) as key_path:
        context.load_cert_chain(cert_path, key_path)
    return context


@dataclass
class SessionChannel:
    """One proxied connection of a session, open and handshaken."""

    websocket: websockets.ClientConnection
    result: HandshakeResult


async def open_channel(
    data: SessionAuthorizationData,
    tofu_token: str,
    *,
    command: int = COMMAND_NORMAL,
    worker_index: int = 0,
    timeout: float = 15.0,
) -> SessionChannel:
    """A websocket to the worker, handshaken for this session: up to HANDSHAKE_ATTEMPTS
    connections when the worker misreads the handshake (HandshakeMisread), one otherwise."""
    attempt = 1
    while True:
        try:
            return await _open_channel_once(
                data, tofu_token, command=command, worker_index=worker_index, timeout=timeout
            )
        except HandshakeMisread as exc:
            if attempt == HANDSHAKE_ATTEMPTS:
                raise
            log.info("worker misread the handshake (attempt %d), trying again: %s", attempt, exc)
            attempt += 1


async def _open_channel_once(
    data: SessionAuthorizationData,
    tofu_token: str,
    *,
    command: int,
    worker_index: int,
    timeout: float,
) -> SessionChannel:
    if not data.worker_addresses:
        raise SessionProtocolError("the session offers no worker address")
    address = data.worker_addresses[worker_index]
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        websocket = await asyncio.wait_for(
            websockets.connect(
                f"wss://{address}/v1/proxy",
                ssl=tls_context(data),
                server_hostname=host,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                compression=None,
                origin=None,
                max_size=MAX_MESSAGE + 1024,
                open_timeout=timeout,
                ping_interval=None,
                user_agent_header=None,
            ),
            timeout,
        )
    except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
        raise WorkerUnreachable(f"cannot reach worker {address}: {exc}") from exc
    peer = websocket.transport.get_extra_info("ssl_object")
    if peer is None or peer.getpeercert(binary_form=True) != data.certificate:
        await websocket.close()
        raise SessionProtocolError(f"worker {address} did not present the session certificate")
    if websocket.subprotocol != SUBPROTOCOL:
        await websocket.close()
        raise SessionProtocolError(f"worker {address} negotiated {websocket.subprotocol!r}")
    await websocket.send(encode_client_handshake(tofu_token, command))
    if command == COMMAND_CANCEL:
        return SessionChannel(websocket, HandshakeResult(None, 0, 0))
    try:
        reply = await asyncio.wait_for(websocket.recv(), timeout)
    except TimeoutError:
        await websocket.close()
        raise SessionProtocolError(f"worker {address} sent no handshake result in time") from None
    except websockets.ConnectionClosed as exc:
        if exc.rcvd and exc.rcvd.code == CLOSE_PROTOCOL_ERROR:
            raise HandshakeMisread(f"closed during handshake: {exc}") from exc
        reason = {
            CLOSE_TOFU_REFUSED: "the session is in use by another client (TOFU token refused)",
            CLOSE_LIMIT_REACHED: "the session's connection limit is reached",
            CLOSE_SETUP_ERROR: "the worker could not set up the proxy",
        }.get(exc.rcvd.code if exc.rcvd else 0, f"closed during handshake: {exc}")
        raise SessionProtocolError(reason) from exc
    if not isinstance(reply, bytes):
        raise SessionProtocolError("the worker's handshake result is not binary")
    return SessionChannel(websocket, decode_handshake_result(reply))


async def pump(
    channel: SessionChannel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[int, int]:
    """Copy bytes both ways until either side closes; returns (bytes up, bytes down)."""
    websocket = channel.websocket
    sent = received = 0

    async def upstream() -> None:
        nonlocal sent
        try:
            while chunk := await reader.read(MAX_MESSAGE):
                await websocket.send(chunk)
                sent += len(chunk)
        finally:
            await websocket.close()

    async def downstream() -> None:
        nonlocal received
        try:
            async for message in websocket:
                data = message if isinstance(message, bytes) else message.encode()
                writer.write(data)
                received += len(data)
                await writer.drain()
        except websockets.ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    try:
        # When the client stops sending, the websocket is closed (as `boundary connect` does);
        # what the worker already sent is still delivered before the downstream side ends.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.wait(tasks, timeout=5)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    return sent, received


async def cancel_session(data: SessionAuthorizationData, tofu_token: str) -> None:
    channel = await open_channel(data, tofu_token, command=COMMAND_CANCEL)
    await channel.websocket.close()
