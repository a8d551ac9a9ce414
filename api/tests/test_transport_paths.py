"""The transport's paths through the real client, over each HTTP library it can use (httpx,
aiohttp), against a loopback server that answers from a script: 429 with Retry-After (even for a
POST, which the controller did not act on), 5xx retried only for idempotent calls, a DELETE
whose earlier attempt was lost answering 404, every attempt counted for metrics, an unreachable
controller, the same request on the wire from either library, and the bound on calls in flight.
An httpx transport in place of the network (how the in-memory controller is served) is kept."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from boundary_api import BoundaryClient, NotFound, RateLimited, Unavailable
from boundary_api._wire import HTTP_LIBRARIES, HttpLibrary
from boundary_api.models import Alias, Target

TARGET = {"id": "ttcp_1", "scope_id": "p_1", "name": "db", "version": 1}
WORKER = {"id": "w_1", "version": 1, "controller_generated_activation_token": "neslat_1"}
DROP, HANG = "drop", "hang"
"""Script entries: close the connection without an answer; answer nothing until the client
closes it."""


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedServer:
    """A loopback HTTP/1.1 server: each request gets the next scripted entry (200 with TARGET
    once the script is done), after `delay` seconds."""

    script: list[Reply | str] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    delay: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                request_line, *lines = head.split("\r\n")
                method, target, _ = request_line.split(" ")
                headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines if line)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append(Seen(method, target, headers, body))
                entry = self.script.pop(0) if self.script else Reply(200, TARGET)
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    await asyncio.sleep(self.delay)
                    if entry == HANG:
                        await reader.read()  # until the client gives up and closes
                    if isinstance(entry, str):
                        return
                finally:
                    self.in_flight -= 1
                content = json.dumps(entry.body).encode() if entry.body is not None else b""
                extra = "".join(f"{k}: {v}\r\n" for k, v in entry.headers.items())
                writer.write(
                    f"HTTP/1.1 {entry.status} Scripted\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(content)}\r\n{extra}\r\n".encode()
                    + content
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    listening = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    scripted.port = listening.sockets[0].getsockname()[1]
    yield scripted
    listening.close()
    await listening.wait_closed()


@pytest.fixture(params=HTTP_LIBRARIES)
def http(request: pytest.FixtureRequest) -> HttpLibrary:
    library: HttpLibrary = request.param
    return library


def client(
    server: ScriptedServer,
    http: HttpLibrary,
    attempts: list[tuple[str, int]] | None = None,
    **options: Any,
) -> BoundaryClient:
    observe: Callable[[str, int], None] | None = (
        (lambda m, s: attempts.append((m, s))) if attempts is not None else None
    )
    options.setdefault("retries", 2)
    return BoundaryClient(
        f"http://127.0.0.1:{server.port}",
        token="at_1234567890_secret",
        backoff=0.0,
        on_attempt=observe,
        http=http,
        **options,
    )


def limited(after: str = "0") -> Reply:
    return Reply(429, headers={"Retry-After": after})


async def test_429_is_retried_after_retry_after_even_for_a_post(
    server: ScriptedServer, http: HttpLibrary
) -> None:
    server.script = [limited()]
    async with client(server, http) as boundary:
        target = await boundary.targets.create_tcp("p_1", "db", address="db", default_port=5432)
    assert isinstance(target, Target)
    assert [r.method for r in server.seen] == ["POST", "POST"]
    assert server.seen[0].headers["authorization"] == "Bearer at_1234567890_secret"


async def test_429_beyond_the_retries_raises_rate_limited_with_the_wait(
    server: ScriptedServer, http: HttpLibrary
) -> None:
    server.script = [limited("0"), limited("0"), limited("7")]
    async with client(server, http) as boundary:
        with pytest.raises(RateLimited, match="retry after 7 s") as caught:
            await boundary.targets.read("ttcp_1")
    assert caught.value.status == 429
    assert len(server.seen) == 3


async def test_5xx_is_retried_for_a_get_and_counted(
    server: ScriptedServer, http: HttpLibrary
) -> None:
    attempts: list[tuple[str, int]] = []
    server.script = [Reply(503, {"kind": "Unavailable", "message": "busy"}), DROP]
    async with client(server, http, attempts) as boundary:
        assert (await boundary.targets.read("ttcp_1")).id == "ttcp_1"
    assert attempts == [("GET", 503), ("GET", 0), ("GET", 200)]


async def test_5xx_is_never_retried_for_a_post(server: ScriptedServer, http: HttpLibrary) -> None:
    server.script = [Reply(500, {"kind": "Internal", "message": "boom"})]
    async with client(server, http) as boundary:
        with pytest.raises(Unavailable, match="boom"):
            await boundary.aliases.create("db.test", destination_id="ttcp_1")
    assert len(server.seen) == 1


async def test_a_delete_whose_first_answer_was_lost_accepts_404(
    server: ScriptedServer, http: HttpLibrary
) -> None:
    server.script = [HANG, Reply(404, {"kind": "NotFound", "message": "Resource not found."})]
    async with client(server, http, timeout=httpx.Timeout(5.0, read=0.3)) as boundary:
        await boundary.targets.delete("ttcp_1")
    assert [r.method for r in server.seen] == ["DELETE", "DELETE"]


async def test_a_first_delete_answering_404_is_not_found(
    server: ScriptedServer, http: HttpLibrary
) -> None:
    server.script = [Reply(404, {"kind": "NotFound", "message": "Resource not found."})]
    async with client(server, http) as boundary:
        with pytest.raises(NotFound):
            await boundary.targets.delete("ttcp_1")


async def test_an_unreachable_controller_names_the_address_never_the_token(
    http: HttpLibrary,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    attempts: list[tuple[str, int]] = []
    async with BoundaryClient(
        f"http://127.0.0.1:{port}",
        token="at_1234567890_secret",
        backoff=0.0,
        retries=2,
        on_attempt=lambda m, s: attempts.append((m, s)),
        http=http,
    ) as boundary:
        with pytest.raises(Unavailable) as caught:
            await boundary.targets.read("ttcp_1")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert caught.value.__cause__ is not None
    assert attempts == [("GET", 0)] * 3


async def test_both_libraries_put_the_same_request_on_the_wire(server: ScriptedServer) -> None:
    """Quoted ids, `:action` paths, query values that need escaping, the JSON body."""
    awkward = '"/item/name" matches "^a+b [0-9]+$"'
    requests = {}
    for library in HTTP_LIBRARIES:
        server.seen.clear()
        server.script = [Reply(200, {"items": []}), Reply(200, WORKER)]
        async with client(server, library) as boundary:
            await boundary.workers.list(filter=awkward)
            await boundary.workers.create_controller_led("edge-0", description="ünïcode")
        requests[library] = [
            (
                seen.method,
                urlsplit(seen.target).path,
                parse_qs(urlsplit(seen.target).query),
                json.loads(seen.body) if seen.body else None,
                seen.headers["accept"],
                seen.headers.get("content-type"),
            )
            for seen in server.seen
        ]
    listing, created = requests["httpx"]
    assert listing[:3] == ("GET", "/v1/workers", {"scope_id": ["global"], "filter": [awkward]})
    assert created[:4] == (
        "POST",
        "/v1/workers:create:controller-led",
        {},
        {"scope_id": "global", "name": "edge-0", "description": "ünïcode"},
    )
    assert created[5] == "application/json"
    assert requests["aiohttp"] == requests["httpx"]


async def test_calls_beyond_the_pool_wait_their_turn(
    server: ScriptedServer, http: HttpLibrary
) -> None:
    server.delay = 0.02
    async with client(server, http, max_connections=3) as boundary:
        found = await asyncio.gather(*(boundary.targets.read("ttcp_1") for _ in range(30)))
    assert len(found) == 30
    assert server.most_in_flight == 3


async def test_a_call_that_finds_no_free_place_within_the_pool_timeout_is_unavailable(
    server: ScriptedServer, http: HttpLibrary
) -> None:
    server.script = [HANG]
    timeout = httpx.Timeout(5.0, read=1.0, pool=0.1)
    async with client(server, http, max_connections=1, retries=0, timeout=timeout) as boundary:
        hung = asyncio.ensure_future(boundary.targets.read("ttcp_1"))
        await asyncio.sleep(0.05)
        with pytest.raises(Unavailable, match="PoolTimeout"):
            await boundary.targets.read("ttcp_2")
        with pytest.raises(Unavailable):
            await hung


def test_aiohttp_takes_no_httpx_transport_and_unknown_libraries_are_named() -> None:
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json=TARGET))
    with pytest.raises(ValueError, match="transport"):
        BoundaryClient("http://controller.test", transport=mock, http="aiohttp")
    with pytest.raises(ValueError, match="http: 'requests'"):
        BoundaryClient("http://controller.test", http="requests")  # type: ignore[arg-type]


async def test_an_httpx_transport_still_replaces_the_network() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=TARGET)

    async with BoundaryClient(
        "http://controller.test", token="at_1", transport=httpx.MockTransport(handle)
    ) as boundary:
        assert (await boundary.targets.read("ttcp_1")).id == "ttcp_1"
    assert str(seen[0].url) == "http://controller.test/v1/targets/ttcp_1"


async def test_an_answer_without_a_list_token_is_a_whole_listing_even_to_a_token() -> None:
    """The controller answers a user who may reach no target at all with an empty, complete
    listing and no list token, whatever token was sent (measured on 0.21.1: it returns before
    reading the token). That is the whole list, so the aliases known so far are gone."""
    seen: list[httpx.Request] = []
    nothing = {"response_type": "complete", "sort_by": "created_time", "sort_dir": "desc"}

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=nothing)

    async with BoundaryClient(
        "http://controller.test", token="at_1", transport=httpx.MockTransport(handle)
    ) as boundary:
        listing = await boundary.users.list_resolvable_aliases("u_1", list_token="earlier")
    assert seen[0].url.params["list_token"] == "earlier"
    assert (listing.full, listing.items, listing.list_token) == (True, [], "")
    view = {"alt_1": Alias(id="alt_1", value="db.example", destination_id="ttcp_1")}
    listing.apply_to(view)
    assert view == {}
