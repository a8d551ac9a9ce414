"""boundary-agent against the real controller and dev worker: alias DNS with dig, forwarding to
a real dnsmasq, real curl traffic through Boundary sessions (100 MiB, checksummed), pause and
resume, user isolation, bad configuration, a busy port 53, and resolv.conf takeover inside a
private mount namespace."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest

from boundary_api import BoundaryClient
from boundary_devstack.agent_process import AGENT_CLI, LocalAgent, local_agent
from boundary_devstack.dnsmasq import dnsmasq_process
from boundary_devstack.leaks import files_holding, token_shaped
from boundary_devstack.net import free_port, http_json
from boundary_devstack.process import ManagedProcess, ensure_system_user
from boundary_devstack.resolved import (
    ensure_resolved_user,
    host_port_in_netns,
    private_resolved_script,
)
from boundary_devstack.stack import LocalStack, StackEnv, wait_for
from boundary_devstack.wine import WindowsBoundaryCli, default_prefix

DNS_HOST, UPSTREAM_HOST = "127.0.0.53", "127.0.0.54"
PREFIX = "127.77.0.0/16"
SUFFIX = f"a{uuid.uuid4().hex[:6]}.test"
OTHER_USER = "bkagentpeer"
DEV_SEED_ALIAS = "ssh.boundary.dev"
"""An alias `boundary dev` creates for the admin."""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real dnsmasq as the upstream resolver; it answers our alias names too, so a paused
    agent's deferral is visible."""
    port = free_port(UPSTREAM_HOST)
    process = dnsmasq_process(
        "dnsmasq",
        host=UPSTREAM_HOST,
        port=port,
        log_path=tmp_path_factory.mktemp("dnsmasq") / "dnsmasq.log",
        addresses={"upstream.example": "192.0.2.7", SUFFIX: "192.0.2.99"},
    )
    process.start()
    yield port
    process.stop()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """An HTTP server with a 100 MiB file of random bytes."""
    root = tmp_path_factory.mktemp("www")
    digest = hashlib.sha256()
    with (root / "big").open("wb") as handle:
        for _ in range(100):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            handle.write(chunk)
    port = free_port()
    process = ManagedProcess(
        "http",
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(root),
        ],
        log_path=root.parent / "http.log",
    )
    process.start()
    process.wait_healthy(
        lambda: (
            subprocess.run(
                ["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/"], check=False
            ).returncode
            == 0
        ),
        30,
    )
    yield port, digest.hexdigest()
    process.stop()


async def _admin(stack_env: StackEnv) -> BoundaryClient:
    """A client of the stack's controller, logged in as its admin (a new token each time)."""
    env = stack_env.values
    client = BoundaryClient(env["BOUNDARY_ADDR"])
    await client.authenticate_password(
        env["BOUNDARY_AUTH_METHOD_ID"], env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"]
    )
    return client


@contextlib.contextmanager
def _aliased_target(stack_env: StackEnv, value: str, port: int) -> Iterator[str]:
    """A tcp target to 127.0.0.1:port with the alias `value`, both deleted after."""
    env = stack_env.values

    async def create() -> tuple[str, str]:
        client = await _admin(stack_env)
        async with client:
            target = await client.targets.create_tcp(
                env["BOUNDARY_PROJECT_ID"],
                f"agent-{value}",
                address="127.0.0.1",
                default_port=port,
                aliases=[value],
            )
            return target.id, target.aliases[0].id

    target_id, alias_id = asyncio.run(create())
    try:
        yield value
    finally:

        async def delete() -> None:
            client = await _admin(stack_env)
            async with client:
                await client.targets.delete(target_id)
                await client.aliases.delete(alias_id)

        asyncio.run(delete())


@pytest.fixture(scope="module")
def alias(stack_env: StackEnv, backend: tuple[int, str]) -> Iterator[str]:
    with _aliased_target(stack_env, f"web.{SUFFIX}", backend[0]) as value:
        yield value


@pytest.fixture(scope="module")
def agent(
    upstream: int, alias: str, stack_env: StackEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalAgent]:
    """The agent on loopback, logged in as the admin."""
    local = local_agent(
        tmp_path_factory.mktemp("agent"),
        DNS_HOST,
        prefix=PREFIX,
        upstream=f"{UPSTREAM_HOST}:{upstream}",
    )
    local.start()
    local.login_as_admin(stack_env)
    assert local.state_file.stat().st_mode & 0o777 == 0o600
    yield local
    local.stop()
    assert not token_shaped(local.process.log_tail(100_000)), "a token in the agent's log"
    assert not local.state_file.exists(), "the state file is removed on clean shutdown"


def dig(port: int, name: str, *extra: str) -> str:
    return subprocess.run(
        ["dig", "+short", "+time=2", "+tries=1", f"@{DNS_HOST}", "-p", str(port), name, *extra],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    ).stdout.strip()


def test_alias_resolves_to_a_local_address(agent: LocalAgent, alias: str) -> None:
    assert wait_for(lambda: dig(agent.dns_port, alias).startswith("127.77."), timeout=20)
    first = dig(agent.dns_port, alias)
    assert dig(agent.dns_port, alias) == first, "the same name keeps its address"
    # Other record types for the alias are answered here, empty, never forwarded.
    answer = dns.query.udp(
        dns.message.make_query(alias, dns.rdatatype.AAAA), DNS_HOST, port=agent.dns_port, timeout=5
    )
    assert answer.rcode() == 0
    assert answer.answer == []


def test_other_names_forward_to_the_upstream(agent: LocalAgent) -> None:
    assert dig(agent.dns_port, "upstream.example") == "192.0.2.7"
    assert dig(agent.dns_port, "upstream.example", "+tcp") == "192.0.2.7"


def test_curl_through_the_alias_moves_100_mib_intact(
    agent: LocalAgent, alias: str, backend: tuple[int, str], tmp_path: Path
) -> None:
    port, digest = backend
    assert wait_for(lambda: dig(agent.dns_port, alias).startswith("127.77."), timeout=20)
    address = dig(agent.dns_port, alias)
    assert _curl_sha256(agent, alias, port, address, tmp_path / "big") == digest
    sessions = agent.cli("sessions").stdout
    assert f"Alias {alias}" in sessions
    assert f"{address}:{port}" in sessions


def _curl_sha256(agent: LocalAgent, alias: str, port: int, address: str, out: Path) -> str:
    """curl fetches /big from the alias name, resolved to address; the download's SHA-256."""
    pinned = f"[{address}]" if ":" in address else address
    result = subprocess.run(
        [
            *("curl", "-sSf", "--resolve", f"{alias}:{port}:{pinned}"),
            *(f"http://{alias}:{port}/big", "-o", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"{result.stderr}--- agent status ---\n{agent.cli('status', check=False).stdout}"
        f"--- agent log ---\n{agent.process.log_tail(30)}"
    )
    hasher = hashlib.sha256()
    with out.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


@pytest.fixture
def own_interface() -> Iterator[str]:
    """An interface this test creates (and deletes): addresses on it are local, so traffic to
    them never leaves the machine. One end of a veth pair whose peer stays down, because
    the "dummy" link type needs a kernel module that containers often lack."""
    if os.geteuid() != 0:
        pytest.skip("adding an interface needs root")
    name = f"bkd{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["ip", "link", "add", name, "type", "veth", "peer", "name", f"bkp{name[3:]}"],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


def _addresses_on(interface: str) -> set[str]:
    shown = subprocess.run(
        ["ip", "-j", "addr", "show", "dev", interface], capture_output=True, text=True, check=True
    )
    return {a["local"] for link in json.loads(shown.stdout) for a in link.get("addr_info", [])}


def test_dual_stack_addresses_on_an_interface_of_their_own_carry_traffic_over_ipv4_and_ipv6(
    upstream: int,
    alias: str,
    backend: tuple[int, str],
    stack_env: StackEnv,
    own_interface: str,
    tmp_path: Path,
) -> None:
    """v4_prefix outside 127/8 and a v6 unique local prefix: the agent puts each alias's two
    addresses on interface_to_use, answers A and AAAA (over IPv4 and IPv6 DNS), proxies both,
    and takes the addresses away again on shutdown."""
    global_id = uuid.uuid4().hex[:10]  # RFC 4193: fd + a random 40-bit global id
    v6_prefix = f"fd{global_id[:2]}:{global_id[2:6]}:{global_id[6:]}::/64"
    v4_prefix = "100.127.0.0/16"
    local = local_agent(
        tmp_path / "agent",
        DNS_HOST,
        prefix=v4_prefix,
        upstream=f"{UPSTREAM_HOST}:{upstream}",
        also_dns_on_ipv6_loopback=True,
        extra_config=f'v6_prefix = "{v6_prefix}"\ninterface_to_use = "{own_interface}"\n',
    )
    local.start()
    try:
        local.login_as_admin(stack_env)
        port, digest = backend
        assert wait_for(lambda: dig(local.dns_port, alias).startswith("100.127."), timeout=20)
        v4 = dig(local.dns_port, alias)
        v6 = dig(local.dns_port, alias, "AAAA")
        assert ipaddress.ip_address(v6) in ipaddress.ip_network(v6_prefix)
        # The same answers over IPv6 DNS, and from the IPv6 listener.
        over_v6 = dns.query.udp(
            dns.message.make_query(alias, dns.rdatatype.ANY), "::1", port=local.dns_port, timeout=5
        )
        assert sorted(r.to_text() for rrset in over_v6.answer for r in rrset) == sorted([v4, v6])
        assert {v4, v6} <= _addresses_on(own_interface)
        assert _curl_sha256(local, alias, port, v4, tmp_path / "v4") == digest
        assert _curl_sha256(local, alias, port, v6, tmp_path / "v6") == digest
        sessions = local.cli("sessions").stdout
        assert f"[{v6}]:{port}" in sessions or f"{v4}:{port}" in sessions
    finally:
        local.stop()
    assert not {v4, v6} & _addresses_on(own_interface), "addresses are removed on shutdown"


def test_pause_defers_to_upstream_and_resume_brings_the_alias_back(
    agent: LocalAgent, alias: str
) -> None:
    assert wait_for(lambda: dig(agent.dns_port, alias).startswith("127.77."), timeout=20)
    agent.cli("pause")
    assert dig(agent.dns_port, alias) == "192.0.2.99"
    assert "paused" in agent.cli("status").stdout
    agent.cli("resume")
    assert dig(agent.dns_port, alias).startswith("127.77.")


def test_a_query_repeated_byte_for_byte_follows_every_alias_change(
    agent: LocalAgent, backend: tuple[int, str], stack_env: StackEnv
) -> None:
    """Without its cookie, dig asks with the same bytes but the id each time, so the agent
    answers each repeat from what it made of the first. That must follow the name from
    upstream to alias, through pause and resume, and back to upstream once the alias goes."""
    name = f"later.{SUFFIX}"

    def ask() -> str:
        return dig(agent.dns_port, name, "+nocookie")

    assert ask() == "192.0.2.99", "not an alias yet: the upstream answers"
    with _aliased_target(stack_env, name, backend[0]):
        assert wait_for(lambda: ask().startswith("127.77."), timeout=20)
        agent.cli("pause")
        assert ask() == "192.0.2.99"
        agent.cli("resume")
        assert ask().startswith("127.77.")
    assert wait_for(lambda: ask() == "192.0.2.99", timeout=20), "the alias is gone"


def test_the_official_cli_logs_in_lists_pauses_and_resumes_through_our_control_api(
    upstream: int,
    alias: str,
    backend: tuple[int, str],
    stack_env: StackEnv,
    tmp_path: Path,
) -> None:
    """The real `boundary authenticate` hands its new token to our agent, and the real
    `boundary client-agent status`, `sessions`, `pause` and `resume` work against it, through
    the hardened control API. Linux builds of boundary have no client-agent command, so this is
    its Windows build under Wine. The agent is this test's own, started logged out."""
    values = stack_env.values
    local = local_agent(
        tmp_path / "agent",
        DNS_HOST,
        prefix="127.78.0.0/16",
        upstream=f"{UPSTREAM_HOST}:{upstream}",
        name="agent-official-cli",
    )
    local.start()
    try:
        official = WindowsBoundaryCli(Path(values["STACK_BIN"]), default_prefix())
        env = {**local.env, "BOUNDARY_PASSWORD": values["BOUNDARY_PASSWORD"]}
        authenticated = official.run(
            *("authenticate", "password", "-addr", values["BOUNDARY_ADDR"]),
            *("-auth-method-id", values["BOUNDARY_AUTH_METHOD_ID"]),
            *("-login-name", values["BOUNDARY_LOGIN_NAME"], "-password", "env://BOUNDARY_PASSWORD"),
            *("-keyring-type", "none", "-skip-cache-daemon", "-output-client-agent-cli-error"),
            *("-format", "json"),
            env=env,
        )
        # Its stdout holds the token itself: only stderr goes into a failure message.
        assert authenticated.returncode == 0, authenticated.stderr
        assert "client agent" not in authenticated.stderr.lower(), authenticated.stderr
        token_id = json.loads(authenticated.stdout)["item"]["attributes"]["id"]
        ours = http_json(f"http://127.0.0.1:{local.control_port}/v1/status", timeout=10)
        assert ours["auth_token_id"] == token_id, "the hand-off logged the agent in"

        status = official.run("client-agent", "status", env=local.env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"Status:\s+running", status.stdout), status.stdout
        assert re.search(rf"Auth Token Id:\s+{token_id}", status.stdout), status.stdout
        assert re.search(rf"Address:\s+{re.escape(values['BOUNDARY_ADDR'])}", status.stdout)

        port, _ = backend
        assert wait_for(lambda: dig(local.dns_port, alias).startswith("127.78."), timeout=20)
        address = dig(local.dns_port, alias)
        subprocess.run(  # one small request, so that the agent holds a session
            [
                *("curl", "-sSf", "-o", "/dev/null"),
                *("--resolve", f"{alias}:{port}:{address}", f"http://{alias}:{port}/"),
            ],
            check=True,
            timeout=60,
        )
        held = http_json(f"http://127.0.0.1:{local.control_port}/v1/sessions", timeout=10)
        session_ids = [i["session_authorization"]["session_id"] for i in held["items"]]
        assert len(session_ids) == 1, held
        sessions = official.run("client-agent", "sessions", env=local.env)
        assert sessions.returncode == 0, sessions.stdout + sessions.stderr
        assert re.search(rf"Alias:\s+{re.escape(alias)}", sessions.stdout), sessions.stdout
        assert re.search(rf"Session ID:\s+{session_ids[0]}", sessions.stdout), sessions.stdout

        paused = official.run("client-agent", "pause", env=local.env)
        assert paused.returncode == 0, paused.stdout + paused.stderr
        assert "paused" in local.cli("status").stdout
        assert dig(local.dns_port, alias) == "192.0.2.99", "paused: the upstream answers"
        resumed = official.run("client-agent", "resume", env=local.env)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "running" in local.cli("status").stdout
        assert dig(local.dns_port, alias).startswith("127.78.")
        assert "refused" not in local.process.log_tail(200), "no CLI request was refused"
    finally:
        local.stop()


def _admin_token(stack_env: StackEnv) -> tuple[str, str]:
    """A new admin auth token: (id, token)."""
    values = stack_env.values

    async def login() -> tuple[str, str]:
        async with BoundaryClient(values["BOUNDARY_ADDR"]) as client:
            token = await client.authenticate_password(
                values["BOUNDARY_AUTH_METHOD_ID"],
                values["BOUNDARY_LOGIN_NAME"],
                values["BOUNDARY_PASSWORD"],
            )
            return token.id, token.token.get_secret_value()

    return asyncio.run(login())


def _revoke(stack_env: StackEnv, token: str, token_id: str) -> None:
    async def revoke() -> None:
        async with BoundaryClient(stack_env.values["BOUNDARY_ADDR"], token=token) as client:
            await client.auth_tokens.delete(token_id)

    asyncio.run(revoke())


def test_the_login_is_kept_across_restarts_and_crashes_sealed_and_private(
    upstream: int,
    alias: str,
    backend: tuple[int, str],
    stack_env: StackEnv,
    tmp_path: Path,
) -> None:
    """Logged in once, the agent answers the user's aliases again after a clean stop and after
    a SIGKILL, each time a fresh process with no login given. The token is in no file in
    clear (logs, state, the login store), and the store is the agent's user's alone. Once the
    token is revoked at the controller, the login ends and a restart does not bring it back."""
    port, _ = backend
    token_id, token = _admin_token(stack_env)
    local = local_agent(
        tmp_path / "agent",
        DNS_HOST,
        prefix="127.80.0.0/16",
        upstream=f"{UPSTREAM_HOST}:{upstream}",
        name="agent-restarts",
    )
    status_url = f"http://127.0.0.1:{local.control_port}/v1/status"
    local.start()
    try:
        assert http_json(status_url, timeout=10)["auth_token_id"] == ""
        local.cli(
            "login", "-addr", stack_env.values["BOUNDARY_ADDR"], extra_env={"BOUNDARY_TOKEN": token}
        )
        kept = local.login_store / f"{os.getuid()}.json"
        assert {p.name for p in local.login_store.iterdir()} == {"key", kept.name}
        for path in (local.login_store, *local.login_store.iterdir()):
            info = path.stat()
            assert (info.st_uid, info.st_mode & 0o077) == (os.geteuid(), 0), path
        for restart in ("clean stop", "SIGKILL"):
            if restart == "clean stop":
                local.stop()
            else:
                local.process.kill()
                local.state_file.unlink()  # left by the crash; start() waits for a new one
            local.start()  # a new process, and no login given
            status = http_json(status_url, timeout=10)
            assert status["auth_token_id"] == token_id, (restart, status)
            assert wait_for(lambda: dig(local.dns_port, alias).startswith("127.80."), timeout=20)
            address = dig(local.dns_port, alias)
            fetched = subprocess.run(
                [
                    *("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}"),
                    *("--resolve", f"{alias}:{port}:{address}", f"http://{alias}:{port}/"),
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert fetched.stdout == "200", (restart, fetched.stderr, local.process.log_tail(20))
        assert not files_holding(local.directory, token), "the token in clear in a file"

        _revoke(stack_env, token, token_id)
        assert wait_for(lambda: not kept.exists(), timeout=20), local.process.log_tail(20)
        assert http_json(status_url, timeout=10)["auth_token_id"] == ""
        local.stop()
        local.start()
        assert http_json(status_url, timeout=10)["auth_token_id"] == "", "a revoked login is back"
    finally:
        local.stop()
    assert not files_holding(local.directory, token)


@pytest.fixture(scope="module")
def other_user() -> str:
    if os.geteuid() != 0:
        pytest.skip("creating an OS user needs root")
    ensure_system_user(OTHER_USER)
    return OTHER_USER


FROZEN_REFRESH = 5.0
"""The alias refresh interval of the frozen-controller test's agent, in seconds."""


def test_after_the_controller_thaws_a_new_alias_is_answered_within_two_refreshes(
    local_stack: LocalStack,
    upstream: int,
    backend: tuple[int, str],
    stack_env: StackEnv,
    tmp_path: Path,
) -> None:
    """The controller frozen (SIGSTOP: it accepts connections and answers nothing) for four
    refresh intervals, so that refreshes go out to it and hang. Meanwhile the agent answers
    what it already knows. Once it thaws, a new alias is created: the agent answers it within
    two refresh intervals, unpaused."""
    port, _ = backend
    controller = local_stack.component("boundary")
    assert controller.pid is not None
    local = local_agent(
        tmp_path / "agent",
        DNS_HOST,
        prefix="127.81.0.0/16",
        upstream=f"{UPSTREAM_HOST}:{upstream}",
        refresh_interval=f"{FROZEN_REFRESH:.0f}s",
        name="agent-frozen-controller",
    )
    local.start()
    try:
        local.login_as_admin(stack_env)
        with _aliased_target(stack_env, f"before.{SUFFIX}", port) as before:
            assert wait_for(lambda: dig(local.dns_port, before).startswith("127.81."), timeout=30)
            known = dig(local.dns_port, before)
            os.killpg(controller.pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 4 * FROZEN_REFRESH
                while time.monotonic() < deadline:
                    assert dig(local.dns_port, before) == known, "a known alias while frozen"
                    time.sleep(1)
            finally:
                os.killpg(controller.pid, signal.SIGCONT)
            with _aliased_target(stack_env, f"after.{SUFFIX}", port) as after:
                created = time.monotonic()
                answered = wait_for(
                    lambda: dig(local.dns_port, after).startswith("127.81."),
                    timeout=4 * FROZEN_REFRESH,
                    interval=0.2,
                )
                took = time.monotonic() - created
        status = local.cli("status").stdout
    finally:
        local.stop()
    print(f"a new alias after the thaw was answered in {took:.1f} s")
    assert answered, f"never answered\n{local.process.log_tail(30)}"
    assert took <= 2 * FROZEN_REFRESH, f"answered after {took:.1f} s"
    assert "running" in status, status


def _curl(*args: str, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    """curl ARGS, as another OS user when given (runuser); its exit code is the caller's to
    check."""
    runner = ["runuser", "-u", as_user, "--"] if as_user else []
    return subprocess.run(
        [*runner, "curl", "-sS", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_another_os_user_cannot_use_see_or_cancel_the_session(
    agent: LocalAgent, alias: str, backend: tuple[int, str], other_user: str
) -> None:
    port, _ = backend
    assert wait_for(lambda: dig(agent.dns_port, alias).startswith("127.77."), timeout=20)
    address = dig(agent.dns_port, alias)
    sessions_url = f"http://127.0.0.1:{agent.control_port}/v1/sessions"
    # Our user holds a session, made here (whatever ran before): there is something to hide.
    ours = _curl("-o", "/dev/null", "-w", "%{http_code}", f"http://{address}:{port}/")
    assert (ours.returncode, ours.stdout) == (0, "200"), ours.stderr
    held = {
        i["session_authorization"]["session_id"]
        for i in http_json(sessions_url, timeout=10)["items"]
        if i["alias"] == alias
    }
    assert held, "our own connection left no session"

    # The other user reaches the listener, and the agent closes the connection unanswered:
    # curl's "Empty reply from server" (52) or a reset (56), never data, never a refusal to
    # connect (7) or a runuser failure.
    theirs = _curl(
        *("-o", "/dev/null", "-w", "%{size_download}", f"http://{address}:{port}/big"),
        as_user=other_user,
    )
    assert (theirs.returncode in (52, 56), theirs.stdout) == (True, "0"), (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )
    # It asks the control API directly (it cannot run our virtualenv): no session is theirs.
    listed = _curl(sessions_url, as_user=other_user)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"items": []}, listed.stdout
    # Pausing would drop every user's sessions: the other user may not.
    for action in ("pause", "resume"):
        refused = _curl(
            *("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"),
            f"http://127.0.0.1:{agent.control_port}/v1/{action}",
            as_user=other_user,
        )
        assert (refused.returncode, refused.stdout) == (0, "403"), (action, refused.stderr)
    still = {i["session_authorization"]["session_id"] for i in http_json(sessions_url)["items"]}
    assert held <= still, "our session survived the other user's attempts"
    assert "paused" not in agent.cli("status").stdout
    assert dig(agent.dns_port, alias) == address, "the session's alias still answers"


def test_invalid_config_names_the_field_and_starts_nothing(tmp_path: Path) -> None:
    config = tmp_path / "bad.hcl"
    config.write_text('v4_prefix = "10.0.0.0/20"\nalias_refresh_interval = "soon"\n')
    result = subprocess.run(
        [*AGENT_CLI, "run", "-config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "v4_prefix" in result.stderr
    assert "alias_refresh_interval" in result.stderr


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"bka-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def _run_in_netns_with_private_mounts(netns: str, script: str) -> subprocess.CompletedProcess[str]:
    """sh -c script in netns, in a mount namespace of its own, so its mounts (over
    /etc/resolv.conf, say) never reach the machine, and in a PID namespace of its own, so
    whatever it left running (a daemon it forked) dies with it."""
    return subprocess.run(
        [
            *("ip", "netns", "exec", netns),
            *("unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc"),
            *("sh", "-c", script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_busy_port_53_gives_the_clear_error(netns: str, tmp_path: Path) -> None:
    inside = ["ip", "netns", "exec", netns]
    squatter = subprocess.Popen(
        [
            *inside,
            sys.executable,
            "-c",
            (
                "import socket,time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.bind(('127.0.0.1', 53)); time.sleep(60)"
            ),
        ]
    )
    try:
        config = tmp_path / "agent.hcl"
        config.write_text(
            f'dns_listen_addresses = ["127.0.0.1:53"]\nstate_file = "{tmp_path}/state.json"\n'
            f'login_store = "{tmp_path}/logins"\n'
        )
        assert wait_for(
            lambda: (
                "127.0.0.1:53"
                in subprocess.run(
                    [*inside, "ss", "-lun"], capture_output=True, text=True, check=False
                ).stdout
            ),
            10,
        )
        result = subprocess.run(
            [*inside, *AGENT_CLI, "run", "-config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        squatter.kill()
    assert result.returncode == 1
    assert "failed to listen for DNS on either IPv4 or IPv6: 127.0.0.1:53" in result.stderr
    assert "(held by python" in result.stderr


def test_resolv_conf_takeover_is_restored_after_exit_and_after_a_crash(
    netns: str, tmp_path: Path
) -> None:
    """Mode resolv.conf, inside a private mount namespace whose /etc/resolv.conf is a copy:
    the machine's own file is never touched."""
    fake = tmp_path / "resolv.conf"
    fake.write_text("nameserver 192.0.2.53\n")
    config = tmp_path / "agent.hcl"
    config.write_text(
        f'dns_listen_addresses = ["127.0.0.1:53"]\nresolver_mode = "resolv.conf"\n'
        f'state_file = "{tmp_path}/run/state.json"\n'
        f'login_store = "{tmp_path}/logins"\n'
        f'override_upstream_dns_servers = ["127.0.0.1:5399"]\n'
    )
    script = textwrap.dedent(f"""\
        set -e
        mount --bind {fake} /etc/resolv.conf
        {" ".join(AGENT_CLI)} run -config {config} & pid=$!
        for i in $(seq 50); do
          grep -q 'nameserver 127.0.0.1' /etc/resolv.conf && break; sleep 0.2
        done
        echo "during: $(grep nameserver /etc/resolv.conf)"
        kill -9 $pid; wait $pid || true
        echo "after crash: $(grep nameserver /etc/resolv.conf)"
        rm -f {tmp_path}/run/state.json
        {" ".join(AGENT_CLI)} run -config {config} & pid=$!
        for i in $(seq 50); do test -f {tmp_path}/run/state.json && break; sleep 0.2; done
        kill -TERM $pid; wait $pid || true
        echo "after exit: $(grep nameserver /etc/resolv.conf)"
    """)
    result = _run_in_netns_with_private_mounts(netns, script)
    assert "during: nameserver 127.0.0.1" in result.stdout, result.stdout + result.stderr
    assert "after crash: nameserver 127.0.0.1" in result.stdout
    assert "after exit: nameserver 192.0.2.53" in result.stdout, result.stdout + result.stderr
    assert fake.read_text() == "nameserver 192.0.2.53\n"


def test_resolved_mode_routes_the_alias_domain_to_the_agent_and_reverts_on_exit(
    netns: str, alias: str, stack_env: StackEnv, tmp_path: Path
) -> None:
    """Mode resolved, against a real systemd-resolved in the test's own network and mount
    namespace: the agent's link gets its DNS server and the routing domain, a lookup through
    resolved's stub (dig) and through its API (resolvectl query) reaches the agent, and the
    link is reverted when the agent exits. The controller's port is carried into the
    namespace."""
    ensure_resolved_user()
    values = stack_env.values
    controller_port = urllib.parse.urlsplit(values["BOUNDARY_ADDR"]).port
    assert controller_port is not None
    prelude = private_resolved_script(Path(values["STACK_BIN"]), tmp_path / "resolved")
    config = tmp_path / "agent.hcl"
    config.write_text(
        textwrap.dedent(f"""\
        dns_listen_addresses = ["10.53.0.1:53"]
        interface_to_use = "bkr0"
        v4_prefix = "100.127.0.0/16"
        resolver_mode = "resolved"
        resolver_domains = ["{SUFFIX}"]
        alias_refresh_interval = "2s"
        state_file = "{tmp_path}/run/state.json"
        login_store = "{tmp_path}/logins"
    """)
    )
    agent = " ".join(AGENT_CLI)
    login = (
        f"BOUNDARY_PASSWORD={values['BOUNDARY_PASSWORD']} {agent} login"
        f" -addr {values['BOUNDARY_ADDR']} -auth-method-id {values['BOUNDARY_AUTH_METHOD_ID']}"
        f" -login-name {values['BOUNDARY_LOGIN_NAME']}"
    )
    script = prelude + textwrap.dedent(f"""\
        set -e
        ip link add bkr0 type veth peer name bkr1
        ip link set bkr1 up && ip link set bkr0 up && ip addr add 10.53.0.1/24 dev bkr0
        {agent} run -config {config} > {tmp_path}/agent.log 2>&1 & pid=$!
        for i in $(seq 100); do test -f {tmp_path}/run/state.json && break; sleep 0.1; done
        {login} > /dev/null
        echo "link: $(resolvectl dns bkr0) $(resolvectl domain bkr0)"
        for i in $(seq 50); do resolvectl query {alias} > /dev/null 2>&1 && break; sleep 0.2; done
        echo "query: $(resolvectl query --legend=no {alias} 2>&1)"
        echo "stub: $(dig +short @127.0.0.53 {alias})"
        echo "outside the domain: $(resolvectl query --legend=no {DEV_SEED_ALIAS} 2>&1)"
        kill -TERM $pid; wait $pid || true
        echo "after exit: $(resolvectl dns bkr0) $(resolvectl domain bkr0)"
    """)
    with host_port_in_netns(netns, controller_port, tmp_path):
        result = _run_in_netns_with_private_mounts(netns, script)
    output = result.stdout + result.stderr + (tmp_path / "agent.log").read_text()
    assert f"link: Link 3 (bkr0): 10.53.0.1 Link 3 (bkr0): ~{SUFFIX}" in result.stdout, output
    assert f"query: {alias}: 100.127." in result.stdout, output
    assert "-- link: bkr0" in result.stdout, output
    assert "stub: 100.127." in result.stdout, output
    # An alias of the user, but outside resolver_domains: resolved does not ask the agent (and,
    # with no other DNS server in the namespace, finds no answer).
    assert f"outside the domain: {DEV_SEED_ALIAS}: resolve call failed" in result.stdout, output
    assert "after exit: Link 3 (bkr0): Link 3 (bkr0):" in result.stdout, output
