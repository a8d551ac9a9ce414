"""The control API's guard against web pages (Origin, Host, Sec-Fetch-Site, Content-Type), as a
table, and the server itself over real loopback sockets: what it answers to well-formed,
cross-site, rebound, oversized, malformed and stalled requests.

A real browser against the real agent is tests/e2e/test_agent_browser.py."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from stub_controller import StubController, token

from boundary_agent.config import AgentConfig
from boundary_agent.control import ControlRequest, refusal
from boundary_agent.daemon import Agent

PORT = 9300


def _request(method: str = "GET", path: str = "/v1/status", **headers: str) -> ControlRequest:
    names = {"content_type": "content-type", "sec_fetch_site": "sec-fetch-site"}
    pairs = [(names.get(k, k).lower().encode(), v.encode()) for k, v in headers.items()]
    return ControlRequest(method, path, pairs, body_length=0)


@pytest.mark.parametrize(
    "host", [f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"LocalHost:{PORT}", f"[::1]:{PORT}"]
)
def test_loopback_hosts_with_our_port_pass(host: str) -> None:
    assert refusal(_request(host=host), PORT) is None


@pytest.mark.parametrize(
    ("host", "why"),
    [
        (f"rebind.example:{PORT}", "Host"),  # DNS rebinding: the page's own name, our address
        (f"127.0.0.1:{PORT + 1}", "Host"),
        ("127.0.0.1", "Host"),
        ("localhost", "Host"),
        (f"127.0.0.2:{PORT}", "Host"),
        (f"localhost.:{PORT}", "Host"),
        (f"[::ffff:127.0.0.1]:{PORT}", "Host"),
        (f"127.0.0.1:{PORT}@evil.example", "Host"),
    ],
)
def test_other_hosts_are_refused(host: str, why: str) -> None:
    refused = refusal(_request(host=host), PORT)
    assert refused is not None
    assert (refused.status, why in refused.reason) == (403, True), refused


def test_a_request_without_host_or_with_two_is_refused() -> None:
    assert refusal(_request(), PORT) is not None
    two = ControlRequest(
        "GET",
        "/v1/status",
        [(b"host", f"127.0.0.1:{PORT}".encode()), (b"host", b"evil.example")],
        body_length=0,
    )
    assert refusal(two, PORT) is not None


@pytest.mark.parametrize(
    "origin",
    [
        "http://198.18.0.7:8080",
        "https://evil.example",
        "null",  # sandboxed frames, file: pages, some redirects
        "http://127.0.0.1:8000",  # another local program's page, which may show anything
        f"http://localhost:{PORT}.evil.example",
        f"https://127.0.0.1:{PORT}",
        "",
    ],
)
def test_an_origin_other_than_the_api_itself_is_refused(origin: str) -> None:
    refused = refusal(_request(host=f"127.0.0.1:{PORT}", origin=origin), PORT)
    assert refused is not None
    assert (refused.status, "Origin" in refused.reason) == (403, True), refused


@pytest.mark.parametrize(
    "origin", [f"http://127.0.0.1:{PORT}", f"http://localhost:{PORT}", f"http://[::1]:{PORT}"]
)
def test_the_api_own_origin_passes(origin: str) -> None:
    assert refusal(_request(host=f"localhost:{PORT}", origin=origin), PORT) is None


@pytest.mark.parametrize(("site", "refused"), [("cross-site", True), ("same-site", True)])
def test_fetch_metadata_of_another_site_is_refused(site: str, refused: bool) -> None:
    answer = refusal(_request(host=f"127.0.0.1:{PORT}", sec_fetch_site=site), PORT)
    assert (answer is not None) is refused


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_fetch_metadata_of_the_user_or_the_api_passes(site: str) -> None:
    assert refusal(_request(host=f"127.0.0.1:{PORT}", sec_fetch_site=site), PORT) is None


@pytest.mark.parametrize(
    ("content_type", "refused"),
    [
        ("application/json", False),
        ("application/json; charset=utf-8", False),
        ("Application/JSON", False),
        ("text/plain", True),  # what a page may send without asking (a "simple" request)
        ("text/plain; a=application/json", True),
        ("application/x-www-form-urlencoded", True),
        ("multipart/form-data; boundary=x", True),
        ("application/jsonp", True),
        (None, True),
    ],
)
def test_a_post_body_must_be_declared_json(content_type: str | None, refused: bool) -> None:
    headers = [(b"host", f"127.0.0.1:{PORT}".encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    answer = refusal(ControlRequest("POST", "/v1/tokens", headers, body_length=20), PORT)
    assert (answer is not None) is refused, answer
    if answer is not None:
        assert (answer.status, "Content-Type" in answer.reason) == (415, True), answer


def test_a_post_without_a_body_needs_no_content_type() -> None:
    """What the official CLI's pause and resume send."""
    request = ControlRequest("POST", "/v1/pause", [(b"host", f"localhost:{PORT}".encode())], 0)
    assert refusal(request, PORT) is None


# ---------------------------------------------------------------- the server, on real sockets


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Agent, StubController, int]]:
    """An agent whose control API alone runs, on a free port, logging users in against a stub
    controller."""
    port = _free_port()
    config = AgentConfig(
        v4_prefix="127.99.0.0/16",
        state_file=str(tmp_path / "state.json"),
        override_upstream_dns_servers=["127.0.0.1:9"],
        control_listen_port=port,
        login_store="",
    )
    controller = StubController()
    agent = Agent(config, connect=controller.connect)
    await agent.control.start(port)
    try:
        yield agent, controller, port
    finally:
        await agent.control.stop()


async def _exchange(port: int, raw: bytes, host: str = "127.0.0.1") -> tuple[int, dict[str, Any]]:
    """Send raw bytes; the status code and JSON body of the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


def _http(
    method: str, path: str, port: int, body: bytes = b"", host: str = "", **headers: str
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _token_body(value: str) -> bytes:
    return json.dumps({"boundary_addr": "http://attacker.example:9200", "token": value}).encode()


async def test_status_answers_the_official_shape(
    served: tuple[Agent, StubController, int],
) -> None:
    _, _, port = served
    status, body = await _exchange(port, _http("GET", "/v1/status", port))
    assert status == 200
    assert set(body) == {
        "boundary_addr",
        "auth_token_id",
        "auth_token_expiry",
        "version",
        "status",
        "errors",
        "warnings",
    }
    assert body["status"] == "running"


async def test_the_official_cli_shape_of_requests_is_served(
    served: tuple[Agent, StubController, int],
) -> None:
    """As Boundary's Go CLI sends them: Host localhost:PORT, JSON tokens, bodiless pause."""
    agent, _, port = served
    host = f"localhost:{port}"
    status, _ = await _exchange(
        port,
        _http(
            "POST",
            "/v1/tokens",
            port,
            _token_body(token()),
            host=host,
            content_type="application/json",
        ),
    )
    assert status == 200
    assert agent.users.get(os.getuid()) is not None
    status, _ = await _exchange(port, _http("POST", "/v1/pause", port, host=host))
    assert (status, agent.paused) == (200, True)
    status, _ = await _exchange(port, _http("POST", "/v1/resume", port, host=host))
    assert (status, agent.paused) == (200, False)


async def test_a_simple_cross_site_post_changes_nothing(
    served: tuple[Agent, StubController, int],
) -> None:
    agent, controller, port = served
    attempts = [
        _http(
            "POST",
            "/v1/tokens",
            port,
            _token_body(token("e")),
            content_type="text/plain;charset=UTF-8",
            origin="http://198.18.0.7:8080",
        ),
        # The same without Origin (an old or odd client): the content type still refuses it.
        _http("POST", "/v1/tokens", port, _token_body(token("e")), content_type="text/plain"),
        _http("POST", "/v1/pause", port, origin="http://198.18.0.7:8080"),
        _http("POST", "/v1/pause", port, origin="null"),
        _http("POST", "/v1/pause", port, sec_fetch_site="cross-site"),
        _http("GET", "/v1/status", port, host=f"rebind.example:{port}"),
        _http("GET", "/v1/sessions", port, host=f"rebind.example:{port}"),
    ]
    for raw in attempts:
        status, body = await _exchange(port, raw)
        assert status in (403, 415), (raw, status, body)
        assert body["kind"] in ("PermissionDenied", "InvalidArgument"), body
    assert len(agent.users) == 0
    assert not agent.paused
    assert controller.calls["auth_tokens.read"] == 0, "a refused token never reaches Boundary"


async def test_a_failing_handler_answers_500_and_the_server_goes_on(
    served: tuple[Agent, StubController, int],
) -> None:
    _, controller, port = served
    controller.token_error = ValueError("an answer the client could not parse")
    raw = _http("POST", "/v1/tokens", port, _token_body(token()), content_type="application/json")
    status, body = await _exchange(port, raw)
    assert (status, body["kind"]) == (500, "Internal"), body
    assert (await _exchange(port, _http("GET", "/v1/status", port)))[0] == 200


async def test_unknown_paths_and_methods(served: tuple[Agent, StubController, int]) -> None:
    _, _, port = served
    assert (await _exchange(port, _http("GET", "/v1/nope", port)))[0] == 404
    assert (await _exchange(port, _http("DELETE", "/v1/status", port)))[0] == 405
    assert (await _exchange(port, _http("GET", "/v1/tokens", port)))[0] == 405


async def test_bad_bodies_are_named(served: tuple[Agent, StubController, int]) -> None:
    _, _, port = served
    for body, words in (
        (b"{not json", "JSON"),
        (b"[1, 2]", "object"),
        (b'{"boundary_addr": "http://x"}', "token"),
        (b'{"token": 7}', "token"),
    ):
        raw = _http("POST", "/v1/tokens", port, body, content_type="application/json")
        status, answer = await _exchange(port, raw)
        assert status == 400, answer
        assert words in answer["message"], answer


async def test_oversized_malformed_and_stalled_requests_end_cleanly(
    served: tuple[Agent, StubController, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _, port = served
    big = _http(
        "POST", "/v1/tokens", port, b"{" + b" " * 200_000 + b"}", content_type="application/json"
    )
    assert (await _exchange(port, big))[0] == 413
    assert (await _exchange(port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n"))[0] == 400
    monkeypatch.setattr(agent.control, "request_timeout", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/status HTTP/1.1\r\n")  # and then nothing more
    assert await asyncio.wait_for(reader.read(), 5) == b"", "a stalled request is dropped"
    writer.close()
    # The server still serves.
    assert (await _exchange(port, _http("GET", "/v1/status", port)))[0] == 200


async def test_ipv6_loopback_is_served_too(served: tuple[Agent, StubController, int]) -> None:
    _, _, port = served
    try:
        status, _ = await _exchange(
            port, _http("GET", "/v1/status", port, host=f"[::1]:{port}"), host="::1"
        )
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert status == 200
