"""The control API on 127.0.0.1 and [::1]: the official client agent's endpoints and JSON shapes,
so that both `boundary-agent` and the official `boundary client-agent` commands work against it.
Each request is answered for the OS user on the other end of its connection.

Anything listening on loopback can be reached by every web page the user opens, and the browser
runs as that same user, so the uid check cannot tell a page from the CLI. Before any handler
runs, `refusal` turns away:
- a Host other than 127.0.0.1, localhost or [::1] with our port: a DNS-rebound name, whose
  page would otherwise read our answers as its own origin's;
- an Origin other than this API's own: browsers send Origin on every POST and on cross-origin
  reads, while the CLIs send none. Other loopback origins are refused too: another local
  program's page may show anything;
- a Sec-Fetch-Site other than same-origin or none: a request another site caused (a link, an
  image, a form), even where the browser sends no Origin;
- a POST body that is not declared application/json: a page can send text/plain, form or
  multipart bodies anywhere without asking, but a JSON one to another origin only after a CORS
  preflight, which this API never grants.

The server is a small HTTP/1.1 one on asyncio streams, parsing with h11 (already here, under
httpx): aiohttp.web cost about 11 MiB of resident memory for five endpoints. One request per
connection, bounded in size and time."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h11

from boundary_agent import VERSION, kube
from boundary_agent.config import join_host_port
from boundary_agent.peers import peer_uid
from boundary_api import BoundaryError

if TYPE_CHECKING:
    from boundary_agent.daemon import Agent

log = logging.getLogger("boundary_agent.control")
MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
"""A token hand-off is well under 1 KiB."""
REQUEST_TIMEOUT = 10.0
"""Seconds a client has to send its whole request."""


@dataclass(frozen=True)
class ControlRequest:
    method: str
    path: str
    headers: Sequence[tuple[bytes, bytes]]
    """Names in lower case, as h11 gives them; repeated headers stay repeated."""
    body_length: int
    """Declared Content-Length; -1 for a chunked body."""

    def values(self, name: bytes) -> list[str]:
        return [v.decode("latin-1") for n, v in self.headers if n == name]


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


def refusal(request: ControlRequest, port: int) -> Refusal | None:
    """Why a request must be turned away before any handler sees it; None when it may go on."""
    hosts = request.values(b"host")
    ours = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if len(hosts) != 1 or hosts[0].lower() not in ours:
        shown = ", ".join(_shown(h) for h in hosts) or "none"
        return Refusal(403, f"Host {shown} is not 127.0.0.1, localhost or [::1] with port {port}")
    origins = request.values(b"origin")
    own = {f"http://{host}" for host in ours}
    if origins and (len(origins) != 1 or origins[0].lower() not in own):
        shown = ", ".join(_shown(o) for o in origins)
        return Refusal(403, f"Origin {shown} is not this API's own: web pages may not use it")
    sites = request.values(b"sec-fetch-site")
    if any(site not in ("same-origin", "none") for site in sites):
        shown = ", ".join(_shown(s) for s in sites)
        return Refusal(403, f"Sec-Fetch-Site {shown}: another site sent this request")
    if request.method == "POST" and request.body_length != 0:
        types = request.values(b"content-type")
        media = types[0].split(";")[0].strip().lower() if len(types) == 1 else ""
        if media != "application/json":
            shown = ", ".join(_shown(t) for t in types) or "none"
            return Refusal(415, f"Content-Type {shown}: a POST body must be application/json")
    return None


def _shown(value: str) -> str:
    """A header value as it may go into a message or the log: quoted, escaped, cut short."""
    return repr(value[:80] + ("..." if len(value) > 80 else ""))


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


def _error(status: int, kind: str, message: str) -> Response:
    """An error in the controller's shape, which the official CLI prints."""
    return Response(status, {"kind": kind, "message": message})


Handler = Callable[[int | None, bytes], Awaitable[Response]]
"""(uid of the caller, or None when unknown; the request body) -> the answer."""


class ControlAPI:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.port = 0
        self.request_timeout = REQUEST_TIMEOUT
        self.routes: dict[str, tuple[str, Handler]] = {
            "/v1/status": ("GET", self._status),
            "/v1/sessions": ("GET", self._sessions),
            "/v1/pause": ("POST", self._pause),
            "/v1/resume": ("POST", self._resume),
            "/v1/tokens": ("POST", self._tokens),
            "/v1/kube-credential": ("POST", self._kube_credential),
            "/v1/kube-contexts": ("POST", self._kube_contexts),
        }
        self._servers: list[asyncio.Server] = []
        self._refusals = _RefusalLog()

    # ------------------------------------------------------------------ endpoints

    async def _status(self, uid: int | None, body: bytes) -> Response:
        agent = self.agent
        user = agent.users.get(uid)
        return Response(
            200,
            {
                "boundary_addr": user.boundary_addr if user else agent.config.boundary_addr,
                "auth_token_id": user.token_id if user else "",
                "auth_token_expiry": (
                    user.expiration.isoformat() if user and user.expiration else None
                ),
                "version": VERSION,
                "status": "paused" if agent.paused else "running",
                "errors": list(agent.health.errors),
                "warnings": [agent.pause_reason] if agent.pause_reason else [],
            },
        )

    async def _sessions(self, uid: int | None, body: bytes) -> Response:
        items = []
        # Another user's sessions are not theirs to see.
        for session in self.agent.sessions.of_user(uid):
            auth = session.authorization
            items.append(
                {
                    "alias": session.alias,
                    "target_id": auth.target_id,
                    "local_address": join_host_port(session.local_address, session.local_port),
                    "expiration": auth.expiration.isoformat() if auth.expiration else None,
                    "connections_used": session.connections_used,
                    "connections_left": session.connections_left,
                    "session_authorization": {
                        "session_id": auth.session_id,
                        "created_time": (
                            auth.data.created_time or datetime.datetime.now(datetime.UTC)
                        ).isoformat(),
                        "credentials": [c.model_dump(mode="json") for c in auth.credentials],
                    },
                }
            )
        return Response(200, {"items": items})

    @staticmethod
    def _may_pause(uid: int | None) -> bool:
        """Pausing drops every user's sessions, so only root and the user the agent runs as may
        pause or resume it; another local user could otherwise cancel someone else's sessions."""
        return uid is not None and uid in (0, os.getuid())

    async def _pause(self, uid: int | None, body: bytes) -> Response:
        if not self._may_pause(uid):
            return _error(403, "PermissionDenied", "only root or the agent's own user may pause it")
        self.agent.pause()
        return Response(200, {})

    async def _resume(self, uid: int | None, body: bytes) -> Response:
        if not self._may_pause(uid):
            return _error(
                403, "PermissionDenied", "only root or the agent's own user may resume it"
            )
        self.agent.resume()
        return Response(200, {})

    async def _tokens(self, uid: int | None, body: bytes) -> Response:
        if uid is None:
            return _error(403, "PermissionDenied", "cannot tell which user is asking")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "InvalidArgument", "the body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, "InvalidArgument", "the body must be a JSON object")
        token, addr = payload.get("token"), payload.get("boundary_addr", "")
        if not isinstance(token, str) or not token:
            return _error(400, "InvalidArgument", "token: a non-empty string is required")
        if not isinstance(addr, str):
            return _error(400, "InvalidArgument", "boundary_addr: must be a string")
        try:
            await self.agent.add_token(uid, addr, token)
        except BoundaryError as exc:
            return _error(400, "InvalidArgument", f"token not accepted: {exc}")
        return Response(200, {})

    async def _kube_credential(self, uid: int | None, body: bytes) -> Response:
        """A fresh session to a Kubernetes access alias for the caller, and its token: what
        `boundary-agent kube-credential` hands kubectl."""
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "InvalidArgument", "the body is not JSON")
        alias = payload.get("alias") if isinstance(payload, dict) else None
        if not isinstance(alias, str) or not alias:
            return _error(400, "InvalidArgument", "alias: a non-empty string is required")
        try:
            credential = await kube.kube_credential(self.agent, uid, alias)
        except kube.KubeAccessError as exc:
            return _error(exc.status, _status_kind(exc.status), str(exc))
        return Response(200, credential.answer(datetime.datetime.now(datetime.UTC)))

    async def _kube_contexts(self, uid: int | None, body: bytes) -> Response:
        """What a kubeconfig needs for each of the caller's Kubernetes access aliases."""
        try:
            contexts = await kube.kube_contexts(self.agent, uid)
        except kube.KubeAccessError as exc:
            return _error(exc.status, _status_kind(exc.status), str(exc))
        return Response(200, {"items": contexts})

    # ------------------------------------------------------------------ server

    async def start(self, port: int) -> None:
        self.port = port
        self._servers.append(await asyncio.start_server(self._connection, "127.0.0.1", port))
        with contextlib.suppress(OSError):  # the official CLI dials "localhost", maybe ::1
            self._servers.append(await asyncio.start_server(self._connection, "::1", port))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            try:
                response = await self._answer(conn, reader, writer)
            except Exception as exc:  # a bug: the caller learns of it, the server goes on
                log.error("control request failed: %r", exc, exc_info=exc)
                response = _error(500, "Internal", f"the agent failed: {exc!r}")
            if response is not None:
                await _send(conn, writer, response)
                await _linger(reader, writer)
        except (ConnectionError, h11.ProtocolError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def _answer(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Response | None:
        """The answer to the connection's one request; None when there is none to give (the
        client went away, or stalled)."""
        try:
            async with asyncio.timeout(self.request_timeout):
                head = await _next_event(conn, reader)
                if not isinstance(head, h11.Request):
                    return None
                request = _request(head)
                sock: socket.socket = writer.get_extra_info("socket")
                uid = peer_uid(sock)
                refused = refusal(request, self.port)
                if refused is not None:
                    self._refusals.record(request, uid, refused)
                    return _error(refused.status, _kind(refused.status), refused.reason)
                route = self.routes.get(request.path.split("?", 1)[0])
                if route is None:
                    return _error(404, "NotFound", f"no endpoint {_shown(request.path)}")
                method, handler = route
                if request.method != method:
                    return _error(405, "InvalidArgument", f"{request.path} takes only {method}")
                if request.body_length > MAX_BODY:
                    return _error(413, "InvalidArgument", f"the body exceeds {MAX_BODY} bytes")
                body = await _body(conn, reader)
        except TimeoutError:
            return None
        except h11.RemoteProtocolError as exc:
            return _error(400, "InvalidArgument", f"not a request this API understands: {exc}")
        except _BodyTooLarge:
            return _error(413, "InvalidArgument", f"the body exceeds {MAX_BODY} bytes")
        return await handler(uid, body)


def _kind(status: int) -> str:
    return "PermissionDenied" if status == 403 else "InvalidArgument"


def _status_kind(status: int) -> str:
    """The controller's error kind for an HTTP status, as the official CLI prints them."""
    kinds = {401: "Unauthenticated", 403: "PermissionDenied", 404: "NotFound"}
    return kinds.get(status, "InvalidArgument" if status < 500 else "Unavailable")


def _request(head: h11.Request) -> ControlRequest:
    headers = [(bytes(n), bytes(v)) for n, v in head.headers]
    lengths = [v for n, v in headers if n == b"content-length"]
    chunked = any(n == b"transfer-encoding" for n, _ in headers)
    length = -1 if chunked else int(lengths[0]) if lengths else 0
    return ControlRequest(
        head.method.decode("ascii", "replace"),
        head.target.decode("ascii", "replace"),
        headers,
        length,
    )


class _BodyTooLarge(Exception):
    pass


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(MAX_HEAD))


async def _body(conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, reader)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                raise _BodyTooLarge
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        else:
            raise ConnectionError("the client went away mid-request")


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, response: Response) -> None:
    body = json.dumps(response.body).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("connection", "close"),
        ("cache-control", "no-store"),
    ]
    data = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
    data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await writer.drain()


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read what the client still sends (a body never read, say) until it
    closes: closing with unread data would reset the connection, and the client could lose the
    answer. Bounded, as everything here."""
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(1.0):
            received = 0
            while received < 4 * MAX_BODY and (chunk := await reader.read(MAX_HEAD)):
                received += len(chunk)


class _RefusalLog:
    """Logs refused requests, at most BURST in any WINDOW seconds: a page hammering the API
    cannot flood the log. The count of those left out goes with the next line."""

    BURST, WINDOW = 10, 60.0

    def __init__(self) -> None:
        self._recent: collections.deque[float] = collections.deque()
        self._left_out = 0

    def record(self, request: ControlRequest, uid: int | None, refused: Refusal) -> None:
        now = time.monotonic()
        while self._recent and now - self._recent[0] > self.WINDOW:
            self._recent.popleft()
        if len(self._recent) >= self.BURST:
            self._left_out += 1
            return
        self._recent.append(now)
        more = f" ({self._left_out} more refused, not logged)" if self._left_out else ""
        self._left_out = 0
        log.warning(
            "refused %s %s from uid %s: %s%s",
            request.method,
            _shown(request.path),
            uid,
            refused.reason,
            more,
        )
