"""The wire under the transport: one HTTP exchange, no retries, no error mapping. Two carry it:
httpx (the default, and the only one an in-memory controller can stand behind, through an httpx
transport) and aiohttp (opt-in: far less CPU per call when many calls are under way at once,
measured in bench.operator_services). The transport above holds everything else: the bound on
calls in flight, retries, 429 handling, attempt metrics and error mapping, so both behave alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx

HttpLibrary = Literal["httpx", "aiohttp"]
HTTP_LIBRARIES: tuple[HttpLibrary, ...] = ("httpx", "aiohttp")


@dataclass(frozen=True)
class Call:
    """One HTTP exchange to make: `path` is relative to the API root and already quoted."""

    method: str
    path: str
    query: Mapping[str, str] | None
    content: bytes | None
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    """Case-insensitive, as both libraries give them."""
    content: bytes


class NoAnswer(Exception):
    """The exchange failed before an answer came (refused, reset, timed out). `kind` names what
    happened (the library's exception class), which is the cause when there is one."""

    def __init__(self, kind: str, detail: object) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


class Wire(Protocol):
    async def send(self, call: Call) -> Answer:
        """Raises NoAnswer."""
        ...

    async def aclose(self) -> None: ...


class HttpxWire:
    def __init__(
        self,
        api_root: str,
        *,
        timeout: httpx.Timeout,
        verify: str | bool,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=api_root,
            timeout=timeout,
            verify=verify,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    async def send(self, call: Call) -> Answer:
        try:
            # A leading "/" keeps "workers:create:controller-led" from reading as a URL with
            # the scheme "workers"; httpx still puts it under base_url's /v1/.
            response = await self._http.request(
                call.method,
                "/" + call.path,
                params=call.query,
                content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as exc:
            raise NoAnswer(type(exc).__name__, exc) from exc
        return Answer(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._http.aclose()


def make_wire(
    library: HttpLibrary,
    api_root: str,
    *,
    timeout: httpx.Timeout,
    verify: str | bool,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | None,
) -> Wire:
    if library not in HTTP_LIBRARIES:
        raise ValueError(f"http: {library!r} is not one of {', '.join(HTTP_LIBRARIES)}")
    if library == "httpx":
        return HttpxWire(
            api_root,
            timeout=timeout,
            verify=verify,
            max_connections=max_connections,
            transport=transport,
        )
    if transport is not None:
        raise ValueError("transport: an httpx transport carries calls only with http='httpx'")
    # Imported here: aiohttp is an optional dependency (boundary-api[aiohttp]), and costs
    # memory that a client on httpx (the agent) should not carry.
    from boundary_api._aiohttp_wire import AiohttpWire

    return AiohttpWire(api_root, timeout=timeout, verify=verify, max_connections=max_connections)
