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
import base64
import contextlib
import datetime
import functools
import hashlib
import logging
import os
import secrets
import ssl
import string
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from boundary_agent import memory
from boundary_api import SessionAuthorizationData
from boundary_api.authdata import decode_timestamp, encode_varint, int32, iter_fields

log = logging.getLogger("boundary_agent.protocol")
SUBPROTOCOL = "boundary-tcp-proxy-v1"
MAX_MESSAGE = 32 * 1024
COMMAND_NORMAL, COMMAND_CANCEL = 0, 1
# Close codes the worker uses.
CLOSE_TOFU_REFUSED, CLOSE_LIMIT_REACHED, CLOSE_SETUP_ERROR = 1008, 1011, 3000
CLOSE_PROTOCOL_ERROR, CLOSE_NORMAL = 1002, 1000
HANDSHAKE_SETTLE_S = (0.0, 0.05, 0.25, 1.0)
"""One try per entry when the worker misreads our ClientHandshake (see HandshakeMisread): how
long each try waits after the upgrade before sending it. The misread is a race with the
worker's HTTP server handing the connection over, so a later try gives the hand-over time;
the first try does not wait, as the race is rare on an idle worker."""
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
MAX_UPGRADE_RESPONSE = 16 * 1024
RECEIVE_BUFFER = 64 * 1024
"""What one read from the worker's TLS stream may bring at most, once the pump runs."""
HANDSHAKE_BUFFER = MAX_UPGRADE_RESPONSE + 4096
"""The receive buffer until then: the upgrade response and the HandshakeResult."""
MIN_READ = 16 * 1024
"""Room always offered for the next read: a TLS record."""
TRIM_AFTER_S = 1.0
"""Once no proxied connection is left open: how long before freed memory is handed back."""
CLIENT_HIGH_WATER = 1 << 20
"""Bytes waiting for the local client before reading from the worker pauses."""
CLOSE_WAIT_S = 5.0
"""After the client stops sending: how long what the worker still sends is delivered."""


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
    (mask bit and length) then reads as a header with RSV3 set. The byte is the one Go's
    net/http background read took before the hijack: the worker's metrics wrapper
    (internal/daemon/worker/internal/metric/proxy_ws.go) puts it back in front of the hijacked
    reader, and the websocket library's Accept re-points that reader again, dropping it.
    `boundary connect` meets it too. On a loaded machine it can happen on every connection
    made at once; waiting a moment after the upgrade avoids it (HANDSHAKE_SETTLE_S). Trying
    again on the same session is safe."""


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


def _ed25519_key_pem(seed: bytes) -> bytes:
    """An Ed25519 private key as PKCS#8 PEM (RFC 8410): a fixed DER prefix, then the seed."""
    der = bytes.fromhex("302e020100300506032b657004220420") + seed
    body = base64.encodebytes(der).decode().replace("\n", "")
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n".encode()


def tls_context(data: SessionAuthorizationData) -> ssl.SSLContext:
    """Client TLS for one session: its certificate and key, TLS 1.3, ALPN with the session id.
    The worker's certificate is checked by hand (it must be the session certificate), so the
    library's hostname and chain checks are off. Build it once per session: it costs about a
    millisecond."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1", data.session_id])
    key_pem = _ed25519_key_pem(data.private_key.get_secret_value()[:32])
    cert_pem = ssl.DER_cert_to_PEM_cert(data.certificate).encode()
    with _memory_file(cert_pem) as cert_path, _memory_file(key_pem) as key_path:
        context.load_cert_chain(cert_path, key_path)
    return context


def _mask(payload: bytes, key: bytes) -> bytes:
    """RFC 6455 masking, as one big-integer XOR (a C loop, not a Python one)."""
    size = len(payload)
    if not size:
        return payload
    stream = (key * (size // 4 + 1))[:size]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
    return masked.to_bytes(size, "little")


def _frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class ChannelClosed(Exception):
    """The websocket ended; `code` is the close code the worker sent (None: no close frame)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(
            f"received {code} ({reason or 'no reason'})" if code else "no close frame received"
        )
        self.code = code


class _WebSocket(asyncio.BufferedProtocol):
    """The client side of one websocket to a worker, on its TLS stream, written for the proxy:
    frames from the worker are parsed in place in one receive buffer, and once pump() has
    attached the local client, their payload goes straight to the client's transport (no
    message objects, no futures per message). Before that, the first message (the
    HandshakeResult) is handed to `first_message`, and reading pauses until the pump starts.

    Flow control: the worker's stream pauses while the client has CLIENT_HIGH_WATER bytes
    waiting, and writes to the worker wait while its TLS transport says so."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[dict[str, str]] = loop.create_future()
        self.first_message: asyncio.Future[bytes] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self._buffer = bytearray(HANDSHAKE_BUFFER)
        self._view = memoryview(self._buffer)
        self._start = self._end = 0
        self._upgrading = True
        self._message = bytearray()
        self._payload_left = 0
        self._payload_opcode = 0
        self._payload_final = False
        self._sink: asyncio.StreamWriter | None = None
        self._sink_draining = False
        self._write_ready: asyncio.Future[None] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_sent = False
        self._lost = False

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # a TLS stream transport
        _open_connections.opened()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Room for at least `sizehint` octets. asyncio's TLS transport passes what it holds
        undecrypted, and once the worker has hung up it reads only once more before shutting
        down: a smaller buffer would lose the end of the stream."""
        if len(self._buffer) - self._end < max(sizehint, MIN_READ):
            self._compact(max(sizehint, MIN_READ))
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self.transport is not None and self.transport.is_closing():
            return  # we have closed: whatever still comes is not for anyone
        self._end += nbytes
        try:
            self._process()
        except SessionProtocolError as exc:
            log.debug("websocket: %s", exc)
            self._fail(CLOSE_PROTOCOL_ERROR, str(exc))

    def eof_received(self) -> bool | None:
        return False  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        _open_connections.closed()
        log.debug(
            "websocket closed: code %s %r, %s; %d octets unread",
            self.close_code,
            self.close_reason,
            exc,
            self._end - self._start,
        )
        closed = ChannelClosed(self.close_code, self.close_reason)
        for future in (self.upgraded, self.first_message):
            if not future.done():
                future.set_exception(closed)
                future.exception()  # whoever awaits it still gets it; nobody else must
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        if not self._sink_draining:  # else the client gets what is buffered first
            self._finish()

    def pause_writing(self) -> None:
        if self._write_ready is None or self._write_ready.done():
            self._write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    # ---------------------------------------------------------------- sending

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        if self.transport is None or self.transport.is_closing() or self.close_sent:
            raise ChannelClosed(self.close_code, self.close_reason)
        self.transport.write(_frame(opcode, payload))

    async def drain(self) -> None:
        if self._write_ready is not None:
            await self._write_ready

    def close(self, code: int = CLOSE_NORMAL) -> None:
        """Send a close frame (once); the worker answers with its own and hangs up."""
        if not self.close_sent and self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(OP_CLOSE, struct.pack("!H", code)))
            self.close_sent = True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ---------------------------------------------------------------- receiving

    def attach(self, sink: asyncio.StreamWriter) -> None:
        """From now on, data frames go to sink; what arrived meanwhile goes first."""
        self._sink = sink
        sink.transport.set_write_buffer_limits(high=CLIENT_HIGH_WATER)
        self._fresh_buffer(RECEIVE_BUFFER)
        self._process()
        if self.transport is not None and not self._sink_draining:
            self.transport.resume_reading()

    def _fresh_buffer(self, size: int = RECEIVE_BUFFER) -> None:
        rest = self._buffer[self._start : self._end]
        self._buffer = bytearray(max(size, len(self._buffer), len(rest) + MIN_READ))
        self._buffer[: len(rest)] = rest
        self._view = memoryview(self._buffer)
        self._start, self._end = 0, len(rest)

    def _compact(self, room: int) -> None:
        """Move what is unconsumed to the front; grow the buffer if `room` still lacks."""
        remaining = self._end - self._start
        if remaining + room > len(self._buffer):
            self._fresh_buffer(remaining + room)
            return
        if remaining and self._start:
            self._buffer[:remaining] = self._buffer[self._start : self._end]
        self._start, self._end = 0, remaining

    def _process(self) -> None:
        if self._upgrading and not self._read_upgrade():
            return
        while self._start < self._end and not self._sink_draining:
            if self._payload_left:
                self._deliver()
                continue
            if self._sink is None and self.first_message.done():
                # The HandshakeResult is in; what follows waits for the pump.
                if self.transport is not None:
                    self.transport.pause_reading()
                return
            if not self._read_header():
                break
        if self._start == self._end:
            self._start = self._end = 0
        if self._lost and not self._sink_draining:
            self._finish()

    def _read_upgrade(self) -> bool:
        head_end = self._buffer.find(b"\r\n\r\n", 0, self._end)
        if head_end < 0:
            if self._end >= MAX_UPGRADE_RESPONSE:
                raise SessionProtocolError("the worker's upgrade response is too long")
            return False
        head = bytes(self._buffer[:head_end]).decode("latin-1")
        self._start = head_end + 4
        self._upgrading = False
        status, *lines = head.split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        headers[":status"] = status
        if not self.upgraded.done():
            self.upgraded.set_result(headers)
        return True

    def _read_header(self) -> bool:
        """Parse the frame header at _start; False when it is not all here yet."""
        available = self._end - self._start
        if available < 2:
            return False
        first, second = self._buffer[self._start], self._buffer[self._start + 1]
        if first & 0x70:
            raise SessionProtocolError("a frame with reserved bits set")
        if second & 0x80:
            raise SessionProtocolError("a masked frame from the server")
        opcode, length, header = first & 0x0F, second & 0x7F, 2
        if length == 126:
            if available < 4:
                return False
            length = struct.unpack_from("!H", self._buffer, self._start + 2)[0]
            header = 4
        elif length == 127:
            if available < 10:
                return False
            length = struct.unpack_from("!Q", self._buffer, self._start + 2)[0]
            header = 10
        if opcode >= OP_CLOSE:
            if length > 125 or not first & 0x80:
                raise SessionProtocolError("a control frame too long or fragmented")
            if available < header + length:
                return False
            payload = bytes(self._buffer[self._start + header : self._start + header + length])
            self._start += header + length
            self._control(opcode, payload)
            return True
        if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
            raise SessionProtocolError(f"a frame with the unknown opcode {opcode}")
        self._start += header
        self._payload_left, self._payload_opcode = length, opcode
        self._payload_final = bool(first & 0x80)
        if not length:
            self._message_done()
        return True

    def _deliver(self) -> None:
        """Hand on what is here of the current data frame's payload."""
        sink = self._sink
        if sink is not None and sink.transport.is_closing():
            # The client is gone: nothing more to hand on (asyncio would log every write).
            self._start, self._payload_left = self._end, 0
            self._fail(CLOSE_NORMAL, "the client went away")
            return
        take = min(self._payload_left, self._end - self._start)
        chunk = self._view[self._start : self._start + take]
        self._start += take
        self._payload_left -= take
        if sink is not None:
            sink.transport.write(chunk)
            waiting = sink.transport.get_write_buffer_size()
            if waiting:
                # The transport may keep our memory rather than a copy (3.12+ keeps views):
                # read on into a fresh buffer.
                self._fresh_buffer()
            if waiting > CLIENT_HIGH_WATER:
                self._wait_for_sink(sink)
        else:
            self._message += chunk
            if len(self._message) > MAX_MESSAGE + 1024:
                raise SessionProtocolError("the worker's first message is too long")
        if not self._payload_left:
            self._message_done()

    def _message_done(self) -> None:
        if self._sink is None and self._payload_final and not self.first_message.done():
            message, self._message = bytes(self._message), bytearray()
            if self._payload_opcode == OP_TEXT:
                self.first_message.set_exception(
                    SessionProtocolError("the worker's handshake result is not binary")
                )
            else:
                self.first_message.set_result(message)

    def _wait_for_sink(self, sink: asyncio.StreamWriter) -> None:
        if self.transport is None:
            return
        self._sink_draining = True
        self.transport.pause_reading()

        def drained(done: asyncio.Future[None]) -> None:
            self._sink_draining = False
            if done.cancelled() or done.exception() is not None:
                self._fail(CLOSE_NORMAL, "the client went away")
                if self._lost:
                    self._finish()
                return
            if self.transport is not None and not self._lost:
                self.transport.resume_reading()
            self._process()

        asyncio.ensure_future(sink.drain()).add_done_callback(drained)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            with contextlib.suppress(ChannelClosed):
                self.send(payload, OP_PONG)
        elif opcode == OP_CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.close_reason = payload[2:].decode("utf-8", "replace")
            self.close(self.close_code if self.close_code != 1005 else CLOSE_NORMAL)
            if self.transport is not None:
                self.transport.close()

    def _fail(self, code: int, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        self.close(code)
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)
        if self._sink is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._sink.close()


class _OpenConnections:
    """How many websockets are open; when the last closes, memory.release() a little later."""

    def __init__(self) -> None:
        self.count = 0
        self._trim: asyncio.TimerHandle | None = None

    def opened(self) -> None:
        self.count += 1
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None

    def closed(self) -> None:
        self.count -= 1
        if not self.count:
            self._trim = asyncio.get_running_loop().call_later(TRIM_AFTER_S, self._trimmed)

    def _trimmed(self) -> None:
        self._trim = None
        log.debug("no proxied connection left open: handing freed memory back")
        memory.release()


_open_connections = _OpenConnections()


@dataclass
class SessionChannel:
    """One proxied connection of a session, open and handshaken."""

    websocket: _WebSocket
    result: HandshakeResult

    async def close(self) -> None:
        self.websocket.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await asyncio.shield(self.websocket.finished)
        self.websocket.abort()


async def open_channel(
    data: SessionAuthorizationData,
    tofu_token: str,
    *,
    command: int = COMMAND_NORMAL,
    worker_index: int = 0,
    timeout: float = 15.0,
    context: ssl.SSLContext | None = None,
) -> SessionChannel:
    """A websocket to the worker, handshaken for this session. While the worker misreads the
    handshake (HandshakeMisread), one more connection per HANDSHAKE_SETTLE_S entry, each
    waiting longer before it sends the handshake; one connection otherwise.
    `context`: the session's tls_context(), built once for all its connections."""
    once = functools.partial(
        _open_channel_once,
        data,
        tofu_token,
        command=command,
        worker_index=worker_index,
        timeout=timeout,
        context=context or tls_context(data),
    )
    *retried, final = HANDSHAKE_SETTLE_S
    for attempt, settle in enumerate(retried, 1):
        try:
            return await once(settle=settle)
        except HandshakeMisread as exc:
            log.info("worker misread the handshake (attempt %d), trying again: %s", attempt, exc)
    return await once(settle=final)


async def _connect(
    address: str, context: ssl.SSLContext, timeout: float
) -> tuple[_WebSocket, dict[str, str]]:
    """TLS to the worker and the websocket upgrade on /v1/proxy: the socket and the response
    headers. Raises OSError, TimeoutError or WorkerUnreachable."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    key = base64.b64encode(os.urandom(16)).decode()
    loop = asyncio.get_running_loop()
    transport, websocket = await loop.create_connection(
        lambda: _WebSocket(key), host, int(port), ssl=context, server_hostname=host
    )
    try:
        transport.write(
            (
                f"GET /v1/proxy HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(timeout):
            headers = await asyncio.shield(websocket.upgraded)
        accept = base64.b64encode(
            hashlib.sha1((key + WEBSOCKET_GUID).encode(), usedforsecurity=False).digest()
        ).decode()
        status = headers[":status"].split(" ", 2)
        if (
            len(status) < 2
            or status[1] != "101"
            or headers.get("upgrade", "").lower() != "websocket"
            or headers.get("sec-websocket-accept") != accept
        ):
            raise WorkerUnreachable(
                f"worker {address} refused the websocket upgrade: {headers[':status']}"
            )
        if headers.get("sec-websocket-extensions"):
            raise WorkerUnreachable(f"worker {address} imposed extensions we did not offer")
    except BaseException:
        transport.abort()
        raise
    return websocket, headers


async def _open_channel_once(
    data: SessionAuthorizationData,
    tofu_token: str,
    *,
    command: int,
    worker_index: int,
    timeout: float,
    context: ssl.SSLContext,
    settle: float = 0.0,
) -> SessionChannel:
    if not data.worker_addresses:
        raise SessionProtocolError("the session offers no worker address")
    address = data.worker_addresses[worker_index]
    try:
        async with asyncio.timeout(timeout):
            websocket, headers = await _connect(address, context, timeout)
    except (OSError, TimeoutError, ChannelClosed, ssl.SSLError) as exc:
        raise WorkerUnreachable(f"cannot reach worker {address}: {exc}") from exc
    assert websocket.transport is not None
    peer = websocket.transport.get_extra_info("ssl_object")
    if peer is None or peer.getpeercert(binary_form=True) != data.certificate:
        websocket.abort()
        raise SessionProtocolError(f"worker {address} did not present the session certificate")
    negotiated = headers.get("sec-websocket-protocol")
    if negotiated != SUBPROTOCOL:
        websocket.abort()
        raise SessionProtocolError(f"worker {address} negotiated {negotiated!r}")
    if settle:
        await asyncio.sleep(settle)
    websocket.send(encode_client_handshake(tofu_token, command))
    if command == COMMAND_CANCEL:
        return SessionChannel(websocket, HandshakeResult(None, 0, 0))
    try:
        async with asyncio.timeout(timeout):
            reply = await asyncio.shield(websocket.first_message)
    except TimeoutError:
        websocket.abort()
        raise SessionProtocolError(f"worker {address} sent no handshake result in time") from None
    except ChannelClosed as exc:
        if exc.code == CLOSE_PROTOCOL_ERROR:
            raise HandshakeMisread(f"closed during handshake: {exc}") from exc
        reason = {
            CLOSE_TOFU_REFUSED: "the session is in use by another client (TOFU token refused)",
            CLOSE_LIMIT_REACHED: "the session's connection limit is reached",
            CLOSE_SETUP_ERROR: "the worker could not set up the proxy",
        }.get(exc.code or 0, f"closed during handshake: {exc}")
        raise SessionProtocolError(reason) from exc
    return SessionChannel(websocket, decode_handshake_result(reply))


async def pump(
    channel: SessionChannel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Copy bytes both ways until either side closes. The worker's data frames go straight to
    the client's transport (_WebSocket.attach); the client's bytes go up as binary messages
    of at most MAX_MESSAGE. When the client stops sending, the websocket is closed (as
    `boundary connect` does); what the worker already sent is still delivered, for up to
    CLOSE_WAIT_S, before the connection ends."""
    websocket = channel.websocket
    websocket.attach(writer)

    async def upstream() -> None:
        try:
            while chunk := await reader.read(MAX_MESSAGE):
                websocket.send(chunk)
                await websocket.drain()
        except (ChannelClosed, ConnectionError):
            return
        websocket.close()

    sending = asyncio.create_task(upstream())
    try:
        await asyncio.wait([sending, websocket.finished], return_when=asyncio.FIRST_COMPLETED)
        if not websocket.finished.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT_S):
                    await asyncio.shield(websocket.finished)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sending
        websocket.abort()


async def cancel_session(data: SessionAuthorizationData, tofu_token: str) -> None:
    channel = await open_channel(data, tofu_token, command=COMMAND_CANCEL)
    await channel.close()
