"""The aiohttp wire (BoundaryClient(http="aiohttp")): the same exchange as the httpx wire, with
the same timeouts and the same certificate checks, on an aiohttp session made on first use (a
session belongs to the event loop it is made in; the client may be built outside one)."""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import quote, urlencode

import aiohttp
import httpx
from yarl import URL

from boundary_api._wire import Answer, Call, NoAnswer


def ssl_context(verify: str | bool) -> ssl.SSLContext:
    """What httpx makes of `verify`: a CA bundle file or directory, its default bundle (True),
    or no checks (False)."""
    if isinstance(verify, str):
        if Path(verify).is_dir():
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return httpx.create_ssl_context(verify=verify)


class AiohttpWire:
    def __init__(
        self, api_root: str, *, timeout: httpx.Timeout, verify: str | bool, max_connections: int
    ) -> None:
        self._api_root = api_root
        self._ssl = ssl_context(verify)
        self._max_connections = max_connections
        # httpx's write timeout has no aiohttp twin: a request body is one small JSON object.
        self._timeout = aiohttp.ClientTimeout(
            connect=timeout.connect, sock_connect=timeout.connect, sock_read=timeout.read
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl),
                timeout=self._timeout,
            )
            # aiohttp quietly sends an idempotent request again when a kept-alive connection
            # drops; our transport retries (and counts each attempt for metrics) itself.
            # There is no public switch: the test of counted attempts catches a rename.
            self._session._retry_connection = False
        return self._session

    async def send(self, call: Call) -> Answer:
        url = self._api_root + call.path
        if call.query:
            url += "?" + urlencode(call.query, quote_via=quote, safe="")
        try:
            async with self._open().request(
                call.method, URL(url, encoded=True), data=call.content, headers=call.headers
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NoAnswer(type(exc).__name__, exc) from exc
        return Answer(response.status, response.headers, body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
