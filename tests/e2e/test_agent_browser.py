"""A real browser against the agent's control API: Debian's headless Chromium opens a page served
from an address of the test's own (a network namespace, so the page's origin is not loopback),
and the page tries what a hostile site would:

- a `no-cors` POST of a text/plain body to /v1/tokens, carrying another Boundary user's valid
  token: accepted, it would point the user's aliases at that user's targets;
- a `no-cors` POST to /v1/pause;
- a CORS POST of a JSON body to /v1/tokens (the browser asks first, with a preflight);
- a cross-origin read of /v1/status;
- a read through another name that resolves to 127.0.0.1, as after DNS rebinding, both from
  the page and as a top-level navigation (no Origin at all, only the rebound Host).

Every one must reach the agent (its log shows each refusal) and be refused, and the agent's
login, state and pause state must not change. Chromium's own Local Network Access checks are
switched off, so that the agent, not the browser, is what is tested: a user may grant a page
that permission, and other browsers have no such check."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from boundary_api import BoundaryClient
from boundary_devstack.agent_process import LocalAgent, local_agent
from boundary_devstack.net import free_port, http_json
from boundary_devstack.netns import NamespaceHost
from boundary_devstack.stack import StackEnv, wait_for

CHROMIUM = "/usr/bin/chromium"
REBOUND_NAME = "rebound.attacker.test"
"""Chromium resolves this name to 127.0.0.1 (--host-resolver-rules), as a rebound name would."""

PAGE_SERVER = textwrap.dedent("""\
    import http.server, pathlib, sys
    page, report = pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4])
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = page.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_POST(self):
            report.write_bytes(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()
    http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
""")

PAGE = """<!doctype html>
<title>a page on another site</title>
<script>
const agent = "http://127.0.0.1:{control_port}";
const rebound = "http://{rebound}:{control_port}";
const results = {{}};
async function attempt(name, url, init) {{
  try {{
    const answer = await fetch(url, init);
    let text = "";
    try {{ text = await answer.text(); }} catch (e) {{}}
    results[name] = {{type: answer.type, status: answer.status, body: text.slice(0, 200)}};
  }} catch (e) {{
    results[name] = {{error: String(e)}};
  }}
}}
(async () => {{
  const stolen = JSON.stringify({{boundary_addr: "{controller}", token: "{token}"}});
  await attempt("no-cors token", agent + "/v1/tokens",
    {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: stolen}});
  await attempt("no-cors pause", agent + "/v1/pause", {{method: "POST", mode: "no-cors"}});
  await attempt("cors json token", agent + "/v1/tokens",
    {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: stolen}});
  await attempt("cross-origin read", agent + "/v1/status", {{}});
  await attempt("rebound read", rebound + "/v1/sessions", {{}});
  await fetch("/report", {{method: "POST", body: JSON.stringify(results)}});
}})();
</script>
"""


def _chromium_argv(profile: Path) -> list[str]:
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # we are root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        # This machine's network is closed: no background requests to Google's hosts.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--host-resolver-rules=MAP {REBOUND_NAME} 127.0.0.1",
        # The browser's own guard for loopback, off: the agent must hold without it.
        "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessSendPreflights,"
        "PrivateNetworkAccessRespectPreflightResults,BlockInsecurePrivateNetworkRequests",
    ]


@contextlib.contextmanager
def _browser(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Chromium in a process group of its own (it forks a zygote, renderers, a GPU process),
    all of which are gone when the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture
def page_host() -> Iterator[NamespaceHost]:
    """A host of the test's own, in a network namespace: 198.18.0.0/15 is set aside for
    benchmarks, so no real network uses it."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    a, b = secrets.randbelow(250) + 1, secrets.randbelow(250) + 2
    host = NamespaceHost(address=f"198.18.{a}.{b}", host_side=f"198.19.{a}.{b}").create()
    yield host
    host.delete()


@pytest.fixture
def agent(stack_env: StackEnv, tmp_path: Path) -> Iterator[LocalAgent]:
    local = local_agent(
        tmp_path / "agent", "127.0.0.64", prefix="127.79.0.0/16", name="agent-browser"
    )
    local.start()
    local.login_as_admin(stack_env)
    yield local
    local.stop()


def _other_users_token(stack_env: StackEnv) -> str:
    """A valid token of the stack's unprivileged user: what an attacker would hand over."""
    values = stack_env.values

    async def login() -> str:
        async with BoundaryClient(values["BOUNDARY_ADDR"]) as client:
            token = await client.authenticate_password(
                values["BOUNDARY_AUTH_METHOD_ID"], "user", "password"
            )
            return token.token.get_secret_value()

    return asyncio.run(login())


def test_pages_from_another_site_or_a_rebound_name_cannot_use_the_control_api(
    agent: LocalAgent, page_host: NamespaceHost, stack_env: StackEnv, tmp_path: Path
) -> None:
    assert shutil.which(CHROMIUM), "chromium is missing: `make tools` installs it"
    control = f"http://127.0.0.1:{agent.control_port}/v1"
    before = {
        "status": http_json(f"{control}/status", timeout=10),
        "state": json.loads(agent.state_file.read_text()),
    }
    assert before["status"]["auth_token_id"].startswith("at_")

    page_port = free_port()
    page, report = tmp_path / "page.html", tmp_path / "report.json"
    page.write_text(
        PAGE.format(
            control_port=agent.control_port,
            rebound=REBOUND_NAME,
            controller=stack_env.values["BOUNDARY_ADDR"],
            token=_other_users_token(stack_env),
        )
    )
    server = page_host.popen(
        [
            sys.executable,
            "-c",
            PAGE_SERVER,
            page_host.address,
            str(page_port),
            str(page),
            str(report),
        ]
    )
    try:
        page_url = f"http://{page_host.address}:{page_port}/"
        assert wait_for(
            lambda: (
                subprocess.run(["curl", "-sf", "-o", "/dev/null", page_url], check=False).returncode
                == 0
            ),
            timeout=20,
        ), "the page server did not come up"
        with _browser([*_chromium_argv(tmp_path / "profile-page"), page_url], tmp_path / "c1.log"):
            assert wait_for(report.exists, timeout=60), (tmp_path / "c1.log").read_text()[-2000:]
        # A rebound page reading its "own" origin sends no Origin at all: only Host tells.
        navigation = tmp_path / "c2.log"
        rebound_url = f"http://{REBOUND_NAME}:{agent.control_port}/v1/sessions"
        with _browser(
            [*_chromium_argv(tmp_path / "profile-nav"), "--dump-dom", rebound_url], navigation
        ) as browser:
            browser.wait(timeout=90)
    finally:
        server.terminate()
        server.wait(timeout=10)

    # What the agent did: changed nothing, saw each request and refused it.
    after = {
        "status": http_json(f"{control}/status", timeout=10),
        "state": json.loads(agent.state_file.read_text()),
    }
    assert after["status"]["auth_token_id"] == before["status"]["auth_token_id"], "logged in anew"
    assert after["status"]["status"] == "running", "paused by a page"
    assert after["state"] == before["state"]
    assert agent.process.running()
    log = agent.process.log_tail(400)
    origin = f"from uid {os.getuid()}: Origin 'http://{page_host.address}:{page_port}'"
    expected = {
        "no-cors token": f"refused POST '/v1/tokens' {origin}",
        "no-cors pause": f"refused POST '/v1/pause' {origin}",
        "preflight": "refused OPTIONS '/v1/tokens'",
        "cross-origin read": "refused GET '/v1/status'",
        "rebound read": f"Host '{REBOUND_NAME}:{agent.control_port}'",
    }
    missing = {name: line for name, line in expected.items() if line not in log}
    assert not missing, f"never reached the agent, or not refused: {missing}\n{log}"

    # What the page could see: nothing readable.
    results = json.loads(report.read_text())
    print(json.dumps(results, indent=1))
    for readable in ("cors json token", "cross-origin read", "rebound read"):
        assert "error" in results[readable], (readable, results)
    dom = navigation.read_text()
    assert "PermissionDenied" in dom, dom[-2000:]
    assert '"items"' not in dom
