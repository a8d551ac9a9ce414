"""A TCP echo server, and a client stream that checks every byte it sends comes back: long-lived
proxied connections for the tests of draining and reloads (a stream that must survive while its
worker drains or reloads)."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from boundary_devstack.clients import (
    CONNECT_TRIES,
    BoundaryCLI,
    connect_ended_because,
    connect_tries,
)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class EchoServer:
    """Echoes every connection on `host`, on a free port, until closed."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        server = socketserver.ThreadingTCPServer((host, 0), _Echo)
        server.daemon_threads = True
        self._server = server
        self.port: int = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class StreamBroken(Exception):
    """The echo did not come back whole."""


class EchoStream:
    """One TCP connection to an echo service, through whatever proxies sit in between.
    `exchange` sends random bytes and checks that exactly those come back."""

    def __init__(self, host: str, port: int, timeout: float = 15.0) -> None:
        self._socket = socket.create_connection((host, port), timeout=timeout)
        self.bytes_echoed = 0
        self.exchanges = 0

    def exchange(self, size: int = 4096) -> None:
        sent = os.urandom(size)
        try:
            self._socket.sendall(sent)
            received = bytearray()
            while len(received) < size:
                chunk = self._socket.recv(size - len(received))
                if not chunk:
                    raise StreamBroken(
                        f"closed after {self.bytes_echoed + len(received)} bytes echoed "
                        f"({self.exchanges} exchanges)"
                    )
                received += chunk
        except OSError as exc:
            raise StreamBroken(f"{exc} after {self.bytes_echoed} bytes echoed") from exc
        if bytes(received) != sent:
            raise StreamBroken(f"exchange {self.exchanges + 1} came back altered")
        self.bytes_echoed += size
        self.exchanges += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()


@contextlib.contextmanager
def stream_through_boundary(
    cli: BoundaryCLI, authorize: Callable[[], str], log_dir: Path, attempts: int = CONNECT_TRIES
) -> Iterator[EchoStream]:
    """An echo stream through the official `boundary connect`, for a session `authorize`
    returns the authorization token of, open until the block ends. The worker sometimes misreads
    the first websocket frame of a connection, and `boundary connect` then ends altogether
    (CONNECT_TRIES), so each try is a new session and a new `boundary connect`."""
    failure: Exception | None = None
    for attempt in connect_tries(attempts):
        log = log_dir / f"connect-{attempt}.log"
        with cli.connect(authorize(), log) as port:
            stream = EchoStream("127.0.0.1", port)
            try:
                stream.exchange()
            except (OSError, StreamBroken) as exc:
                stream.close()
                failure = exc
            else:
                try:
                    yield stream
                finally:
                    stream.close()
                return
        print(
            f"stream try {attempt} of {attempts} failed ({failure}): {connect_ended_because(log)}"
        )
    raise StreamBroken(
        f"no stream in {attempts} sessions; the last: {failure}; see {log_dir}/connect-*.log"
    ) from failure
