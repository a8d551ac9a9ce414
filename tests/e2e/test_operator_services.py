"""Annotated Services become Boundary targets, on the real stack: created with alias, address,
port and filter; renamed; removed; repaired after drift; brokering a Secret's credentials;
carrying real traffic through a worker run by the pod runner, with the official
`boundary connect`; and open to exactly the users their grant annotations name, through the
agent."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boundary_api import BoundaryClient, BoundaryError
from boundary_devstack.agent_process import local_agent
from boundary_devstack.chart import ChartOperator, operator_under_chart, scenario_values
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Kubectl, connect_tries
from boundary_devstack.leaks import token_shaped
from boundary_devstack.metrics import writes
from boundary_devstack.netns import NamespaceHost
from boundary_devstack.operator_process import pod_runner_process
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv, wait_for
from boundary_devstack.through_agent import dig, http_get, resolve

REPO = Path(__file__).resolve().parents[2]
CLUSTER = f"svc{uuid.uuid4().hex[:6]}"
NAMESPACE = f"services-{uuid.uuid4().hex[:6]}"
BACKEND_IP = "10.96.200.10"


@pytest.fixture(scope="module")
def chart_operator(
    stack_env: StackEnv, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, ChartOperator]]:
    kubectl("apply", "-f", str(REPO / "crds"))
    kubectl("create", "namespace", NAMESPACE)
    # Under exactly the Helm chart's ServiceAccount and settings: this proves its RBAC is enough.
    with operator_under_chart(
        stack_env,
        NAMESPACE,
        f"bk-{CLUSTER}",
        tmp_path_factory.mktemp("operator"),
        **scenario_values(stack_env, CLUSTER),
    ) as (process, chart):
        yield process, chart
    assert token_shaped(process.log_tail(100_000)) == []
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


@pytest.fixture(scope="module")
def operator(chart_operator: tuple[ManagedProcess, ChartOperator]) -> ManagedProcess:
    return chart_operator[0]


@pytest.fixture(scope="module")
def egress_worker(
    operator: ManagedProcess,
    stack_env: StackEnv,
    kubectl: Kubectl,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """A BoundaryPKIWorker of the namespace, run by the pod runner: the egress for targets."""
    kubectl.apply(
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryPKIWorker",
            "metadata": {"name": "egress", "namespace": NAMESPACE},
            "spec": {
                "registration": {"initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]}
            },
        }
    )
    assert wait_for(lambda: _exists(kubectl, "pod", "egress-0"), timeout=60)
    directory = tmp_path_factory.mktemp("egress")
    env_file = directory / "env"
    stack_env.write(env_file)
    runner = pod_runner_process(env_file, directory / "state", directory, NAMESPACE, "egress-0")
    runner.start()

    def connected() -> bool:
        status = kubectl.get_json("bpw", "egress", "-n", NAMESPACE).get("status") or {}
        return bool(status.get("connectedReplicas") == 1)

    assert wait_for(connected, timeout=90)
    yield "egress"
    runner.stop()


def _exists(kubectl: Kubectl, kind: str, name: str) -> bool:
    try:
        kubectl("get", kind, name, "-n", NAMESPACE)
    except CommandFailed:
        return False
    return True


def service(
    name: str,
    annotations: dict[str, str],
    ports: list[dict[str, Any]],
    cluster_ip: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports, "selector": {"app": name}}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "annotations": {"boundaryproject.io/expose": "true", **annotations},
        },
        "spec": spec,
    }


def targets_of(cli: BoundaryCLI, svc: str) -> list[dict[str, Any]]:
    items = cli("targets", "list", "-scope-id", "global", "-recursive")["items"] or []
    return [t for t in items if t.get("name", "").startswith(f"{CLUSTER}/{NAMESPACE}/{svc}/")]


def aliases(cli: BoundaryCLI) -> dict[str, dict[str, Any]]:
    items = cli("aliases", "list", "-scope-id", "global")["items"] or []
    return {a["value"]: a for a in items}


def events_for(kubectl: Kubectl, name: str) -> list[dict[str, Any]]:
    out = kubectl(
        "get",
        "events",
        "-n",
        NAMESPACE,
        "--field-selector",
        f"involvedObject.name={name}",
        "-o",
        "json",
    )
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def test_service_becomes_target_with_alias_and_follows_rename_and_removal(
    egress_worker: str, kubectl: Kubectl, boundary_cli: BoundaryCLI
) -> None:
    alias = f"api.{NAMESPACE}.test"
    kubectl.apply(
        service(
            "api",
            {"boundaryproject.io/alias": alias},
            [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
        )
    )
    assert wait_for(lambda: len(targets_of(boundary_cli, "api")) == 2, timeout=60)
    cluster_ip = kubectl.get_json("service", "api", "-n", NAMESPACE)["spec"]["clusterIP"]
    by_port = {t["attributes"]["default_port"]: t for t in targets_of(boundary_cli, "api")}
    assert set(by_port) == {8080, 9090}
    assert all(t["address"] == cluster_ip for t in by_port.values())
    assert by_port[8080]["egress_worker_filter"] == (
        f'"{NAMESPACE}" in "/tags/namespace" and "kubernetes" in "/tags/type"'
        ' and "true" not in "/tags/draining"'
    )
    assert wait_for(lambda: f"metrics.{alias}" in aliases(boundary_cli), timeout=30)
    assert aliases(boundary_cli)[alias]["destination_id"] == by_port[8080]["id"]

    session = boundary_cli("targets", "authorize-session", "-id", alias)["item"]
    assert session["target_id"] == by_port[8080]["id"]

    annotation = kubectl.get_json("service", "api", "-n", NAMESPACE)["metadata"]["annotations"]
    assert json.loads(annotation["boundaryproject.io/targets"])[by_port[8080]["id"]] == alias

    renamed = f"api2.{NAMESPACE}.test"
    kubectl(
        "annotate",
        "service",
        "api",
        "-n",
        NAMESPACE,
        "--overwrite",
        f"boundaryproject.io/alias={renamed}",
    )
    assert wait_for(lambda: renamed in aliases(boundary_cli), timeout=30)
    assert alias not in aliases(boundary_cli)
    assert f"metrics.{alias}" not in aliases(boundary_cli)

    kubectl("delete", "service", "api", "-n", NAMESPACE)
    assert wait_for(lambda: not targets_of(boundary_cli, "api"), timeout=30)
    assert not [a for a in aliases(boundary_cli) if a.endswith(f"{NAMESPACE}.test")]


def test_target_deleted_by_hand_comes_back_and_steady_state_writes_nothing(
    egress_worker: str, kubectl: Kubectl, boundary_cli: BoundaryCLI, operator: ManagedProcess
) -> None:
    kubectl.apply(service("drift", {}, [{"name": "pg", "port": 5432}]))
    assert wait_for(lambda: len(targets_of(boundary_cli, "drift")) == 1, timeout=60)
    first = targets_of(boundary_cli, "drift")[0]["id"]
    boundary_cli("targets", "delete", "-id", first)
    assert wait_for(
        lambda: [t["id"] for t in targets_of(boundary_cli, "drift")] not in ([], [first]),
        timeout=30,
    )
    # The default alias follows the recreated target.
    default_alias = f"drift.{NAMESPACE}.{CLUSTER}"
    assert wait_for(
        lambda: (
            aliases(boundary_cli).get(default_alias, {}).get("destination_id")
            == targets_of(boundary_cli, "drift")[0]["id"]
        ),
        timeout=30,
    )

    def quiet_resyncs() -> bool:
        lines = [ln for ln in operator.log_tail(400).splitlines() if "resync:" in ln]
        return len(lines) >= 2 and all(" 0 writes" in ln for ln in lines[-2:])

    assert wait_for(quiet_resyncs, timeout=30), operator.log_tail(20)
    kubectl("delete", "service", "drift", "-n", NAMESPACE)


def _secret(name: str, username: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {
            "username": base64.b64encode(username.encode()).decode(),
            "password": base64.b64encode(password.encode()).decode(),
        },
    }


def test_credentials_secret_is_brokered_and_follows_changes(
    egress_worker: str, kubectl: Kubectl, boundary_cli: BoundaryCLI
) -> None:
    kubectl.apply(_secret("db-creds", "app", "first-password"))
    alias = f"db.{NAMESPACE}.test"
    kubectl.apply(
        service(
            "db",
            {
                "boundaryproject.io/alias": alias,
                "boundaryproject.io/credentials-secret": "db-creds",
            },
            [{"name": "pg", "port": 5432}],
        )
    )

    def brokered() -> list[tuple[str, str]]:
        try:
            item = boundary_cli("targets", "authorize-session", "-id", alias)["item"]
        except CommandFailed:
            return []
        return [
            (c["credential"].get("username"), c["credential"].get("password"))
            for c in item.get("credentials") or []
        ]

    assert wait_for(lambda: brokered() == [("app", "first-password")], timeout=60), brokered()
    kubectl.apply(_secret("db-creds", "app", "second-password"))
    assert wait_for(lambda: brokered() == [("app", "second-password")], timeout=30), brokered()
    kubectl("delete", "service", "db", "-n", NAMESPACE)
    assert wait_for(lambda: not targets_of(boundary_cli, "db"), timeout=30)


def test_invalid_annotations_give_one_warning_and_no_writes(
    egress_worker: str,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    chart_operator: tuple[ManagedProcess, ChartOperator],
) -> None:
    metrics_port = chart_operator[1].metrics_port
    kubectl.apply(
        service(
            "bad",
            {
                "boundaryproject.io/alias": "Bad_Alias.example",
                "boundaryproject.io/ports": "http,nope",
                "boundaryproject.io/worker": "missing",
                "boundaryproject.io/credentials-secret": "absent",
                "boundaryproject.io/session-max-seconds": "soon",
            },
            [{"name": "http", "port": 80}],
        )
    )

    def warnings() -> list[dict[str, Any]]:
        return [e for e in events_for(kubectl, "bad") if e["type"] == "Warning"]

    assert wait_for(lambda: bool(warnings()), timeout=30)
    message = warnings()[0]["message"]
    for fragment in ("Bad_Alias", "'nope'", "'missing'", "'absent'", "'soon'"):
        assert fragment in message
    before = writes(metrics_port)
    subprocess.run(["sleep", "7"], check=True)  # two resyncs
    assert len(warnings()) == 1
    # Nothing else changes meanwhile in this namespace: every write would be for "bad".
    assert writes(metrics_port) == before
    assert targets_of(boundary_cli, "bad") == []
    kubectl("delete", "service", "bad", "-n", NAMESPACE)


@contextlib.contextmanager
def http_server_at(address: str, directory: Path) -> Iterator[None]:
    """An HTTP server for `directory` on `address` (a Service's cluster IP), port 80, inside a
    network namespace of its own."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    host = NamespaceHost(address).create()
    server = host.popen(
        ["python3", "-m", "http.server", "80", "--bind", address, "--directory", str(directory)]
    )
    try:
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        host.delete()


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """An HTTP server on BACKEND_IP serving 1 MiB of random bytes."""
    payload = os.urandom(1 << 20)
    (tmp_path / "blob").write_bytes(payload)
    with http_server_at(BACKEND_IP, tmp_path):
        yield "blob", hashlib.sha256(payload).hexdigest()


def test_real_traffic_through_the_worker_with_boundary_connect(
    egress_worker: str,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    stack_env: StackEnv,
    backend: tuple[str, str],
    tmp_path: Path,
) -> None:
    path, digest = backend
    received = tmp_path / "received"
    kubectl.apply(
        service(
            "web",
            {"boundaryproject.io/worker": egress_worker},
            [{"name": "http", "port": 80}],
            cluster_ip=BACKEND_IP,
        )
    )
    assert wait_for(lambda: len(targets_of(boundary_cli, "web")) == 1, timeout=60)
    target = targets_of(boundary_cli, "web")[0]
    assert target["address"] == BACKEND_IP
    boundary_cli.login()
    env = boundary_cli.env()
    # `boundary connect` itself (the official client, not ours) sometimes fails its websocket
    # handshake with the worker ("received header with unexpected rsv bits"): CONNECT_TRIES.
    for _attempt in connect_tries():
        result = subprocess.run(
            [
                boundary_cli.binary,
                "connect",
                "-target-id",
                target["id"],
                "-token",
                "env://BK_BOUNDARY_TOKEN",
                "-exec",
                "curl",
                "--",
                "-sSf",
                f"http://{{{{boundary.ip}}}}:{{{{boundary.port}}}}/{path}",
                "-o",
                str(received),
            ],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 0:
            break
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert received.exists(), (result.stdout[-1500:], result.stderr[-1500:])
    # curl writes the body to a file: `boundary connect` prints its proxy details on stdout.
    assert hashlib.sha256(received.read_bytes()).hexdigest() == digest
    kubectl("delete", "service", "web", "-n", NAMESPACE)


PRIVATE_IP = "10.96.200.11"


async def _login(stack_env: StackEnv, login_name: str) -> BoundaryClient:
    """A login as a user of the stack; the test's users have the admin's password."""
    values = stack_env.values
    client = BoundaryClient(values["BOUNDARY_ADDR"], retries=0)
    await client.authenticate_password(
        values["BOUNDARY_AUTH_METHOD_ID"], login_name, values["BOUNDARY_PASSWORD"]
    )
    return client


def _authorize_as(stack_env: StackEnv, login_name: str, alias: str) -> str:
    """What authorize-session answers the user: "ok", or the controller's refusal."""

    async def authorize() -> str:
        client = await _login(stack_env, login_name)
        try:
            await client.sessions.authorize(alias)
        except BoundaryError as refused:
            return f"{type(refused).__name__} {refused.status}"
        finally:
            await client.aclose()
        return "ok"

    return asyncio.run(authorize())


@pytest.fixture
def only_roles_grant_targets(stack_env: StackEnv) -> Iterator[None]:
    """`boundary dev` grants every logged-in user list, read and authorize-session on every
    target; a production controller does not. The test takes that grant away (so a user can
    reach a target only through a role like ours), and puts it back after."""

    async def target_grant(restore: list[str] | None) -> list[str]:
        client = await _login(stack_env, stack_env.values["BOUNDARY_LOGIN_NAME"])
        try:
            roles = (await client.roles.list("global", recursive=False)).items
            role = await client.roles.read(
                next(r.id for r in roles if r.name == "Authenticated User Grants")
            )
            grants = restore or [g for g in role.grant_strings if "type=target" not in g]
            await client.roles.set_grants(role.id, role.version, grants)
            return role.grant_strings
        finally:
            await client.aclose()

    original = asyncio.run(target_grant(None))
    try:
        yield
    finally:
        asyncio.run(target_grant(original))


def _boundary_user(cli: BoundaryCLI, name: str) -> str:
    """A user with a password account of the same login name (and the admin's password); its
    id."""
    user = cli("users", "create", "-scope-id", "global", "-name", name)["item"]
    account = cli(
        "accounts",
        "create",
        "password",
        "-auth-method-id",
        cli.stack.values["BOUNDARY_AUTH_METHOD_ID"],
        "-login-name",
        name,
        "-password",
        "env://BOUNDARY_PASSWORD",
    )["item"]
    cli("users", "add-accounts", "-id", user["id"], "-account", account["id"])
    return str(user["id"])


def _role_of(cli: BoundaryCLI, project: str, svc: str) -> dict[str, Any] | None:
    items = cli("roles", "list", "-scope-id", project)["items"] or []
    found = [r for r in items if r.get("name") == f"{CLUSTER}/{NAMESPACE}/{svc}"]
    return cli("roles", "read", "-id", found[0]["id"])["item"] if found else None


def test_a_granted_group_connects_through_the_agent_others_are_refused_and_removal_revokes(
    egress_worker: str,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    stack_env: StackEnv,
    only_roles_grant_targets: None,
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    alice, bob = f"alice-{suffix}", f"bob-{suffix}"
    alice_id = _boundary_user(boundary_cli, alice)
    _boundary_user(boundary_cli, bob)
    project = stack_env.values["BOUNDARY_PROJECT_ID"]
    group = f"ops-{suffix}"
    group_id = boundary_cli("groups", "create", "-scope-id", project, "-name", group)["item"]["id"]
    boundary_cli("groups", "add-members", "-id", group_id, "-member", alice_id)
    page = f"only for {group}"
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text(page)
    alias = f"private.{NAMESPACE}.test"
    annotations = {
        "boundaryproject.io/alias": alias,
        "boundaryproject.io/worker": egress_worker,
        "boundaryproject.io/grant-groups": group,
    }
    agent = local_agent(tmp_path / "agent", "127.0.0.67", prefix="127.81.0.0/16", name="agent-ac")
    with http_server_at(PRIVATE_IP, tmp_path / "www"):
        kubectl.apply(
            service("private", annotations, [{"name": "http", "port": 80}], cluster_ip=PRIVATE_IP)
        )

        def granted() -> bool:
            role = _role_of(boundary_cli, project, "private")
            return role is not None and role.get("principal_ids") == [group_id]

        assert wait_for(granted, timeout=60)
        role = _role_of(boundary_cli, project, "private")
        assert role is not None
        (target,) = targets_of(boundary_cli, "private")
        assert role["grant_strings"] == [f"ids={target['id']};actions=authorize-session,read"]
        assert role["grant_scope_ids"] == ["this"]

        # Alice, in the group, connects through her agent; Bob is refused at authorize-session.
        agent.start()
        try:
            agent.cli(
                "login",
                "-addr",
                stack_env.values["BOUNDARY_ADDR"],
                "-auth-method-id",
                stack_env.values["BOUNDARY_AUTH_METHOD_ID"],
                "-login-name",
                alice,
                extra_env={"BOUNDARY_PASSWORD": stack_env.values["BOUNDARY_PASSWORD"]},
            )
            address = resolve(agent.dns_host, agent.dns_port, alias)
            assert http_get(address, alias) == page
            assert _authorize_as(stack_env, bob, alias) == "PermissionDenied 403"

            # Removing the annotation revokes: the role goes, Alice is refused too, and her
            # agent stops answering the alias (she may no longer list it).
            kubectl(
                "annotate",
                "service",
                "private",
                "-n",
                NAMESPACE,
                "boundaryproject.io/grant-groups-",
            )
            assert wait_for(lambda: _role_of(boundary_cli, project, "private") is None, 60)
            assert _authorize_as(stack_env, alice, alias) == "PermissionDenied 403"
            assert wait_for(lambda: not dig(agent.dns_host, agent.dns_port, alias), timeout=30)
            assert targets_of(boundary_cli, "private")  # the Service itself stays published
        finally:
            agent.stop()
            kubectl("delete", "service", "private", "-n", NAMESPACE)
    for name in (alice, bob):
        users = boundary_cli("users", "list", "-scope-id", "global")["items"]
        boundary_cli("users", "delete", "-id", next(u["id"] for u in users if u["name"] == name))
    boundary_cli("groups", "delete", "-id", group_id)
