"""kubectl through Boundary, the agent's side: which aliases are Kubernetes accesses, the
credential a session brokers, the ExecCredential, merging contexts into a kubeconfig without
clobbering it, and the control API's kube-credential and kube-contexts calls with the real
BoundaryClient against the in-memory controller (the real controller: tests/e2e)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import io
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretBytes, SecretStr

from boundary_agent import cli, kube
from boundary_agent.config import AgentConfig
from boundary_agent.daemon import Agent
from boundary_api import BoundaryClient, SessionAuthorization
from boundary_api.models import BrokeredCredential, SessionAuthorizationData
from boundary_devstack.fakes import FakeController
from boundary_devstack.fakes.boundary import AUTH_METHOD, LOGIN, PASSWORD, PROJECT

ALIAS = "ro.team-a.kube"
MARKER = "boundary-k8s cluster=prod namespace=team-a kubernetes-access=ro uid=u-1"
CA = "-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----\n"
NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def object_(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "kubernetes-access",
        "token": "eyJ.fake.token",
        "expiration": "2026-01-01T13:00:00Z",
        "revoke_after": "2026-01-01T12:50:00Z",
        "certificate_authority": CA,
        "server_name": "kubernetes.default.svc",
        "namespace": "team-a",
        **overrides,
    }


def authorization(*objects: dict[str, Any], port: int = 443) -> SessionAuthorization:
    data = SessionAuthorizationData(
        session_id="s_1", certificate=b"c", private_key=SecretBytes(b"k" * 64)
    )
    return SessionAuthorization(
        session_id="s_1",
        target_id="ttcp_1",
        endpoint_port=port,
        authorization_token=SecretStr("x"),
        data=data,
        credentials=[BrokeredCredential(secret={"decoded": o}, credential=o) for o in objects],
    )


def test_kubernetes_targets_are_known_by_the_operators_marker() -> None:
    assert kube.is_kubernetes_target(MARKER)
    for other in (
        "",
        "hand made kubernetes-access=x",
        "boundary-k8s cluster=prod namespace=a service=web uid=u port=http",
    ):
        assert not kube.is_kubernetes_target(other)


def test_the_brokered_credential_is_read_and_its_refetch_time_chosen() -> None:
    plain = {"username": "u", "password": "p"}
    credential = kube.credential_from(ALIAS, authorization(plain, object_(), port=6443))
    assert (credential.token, credential.server_name, credential.port) == (
        "eyJ.fake.token",
        "kubernetes.default.svc",
        6443,
    )
    assert credential.context()["server"] == f"https://{ALIAS}:6443"
    assert kube.credential_from(ALIAS, authorization(object_())).context()["server"] == (
        f"https://{ALIAS}"
    )
    # Until it may be revoked; past that, again within a minute; never after it expires.
    assert credential.refetch_at(NOW) == datetime.datetime(2026, 1, 1, 12, 50, tzinfo=datetime.UTC)
    late = datetime.datetime(2026, 1, 1, 12, 55, tzinfo=datetime.UTC)
    assert credential.refetch_at(late) == late + datetime.timedelta(seconds=60)
    assert credential.refetch_at(late + datetime.timedelta(minutes=4, seconds=30)) == (
        credential.expiration
    )


def test_sessions_without_a_kubernetes_credential_are_refused_clearly() -> None:
    with pytest.raises(kube.KubeAccessError, match="not a Kubernetes access") as caught:
        kube.credential_from(ALIAS, authorization({"username": "u", "password": "p"}))
    assert caught.value.status == 404
    with pytest.raises(kube.KubeAccessError, match="lacks certificate_authority"):
        kube.credential_from(ALIAS, authorization(object_(certificate_authority="")))


def test_exec_credential_is_what_kubectl_reads() -> None:
    assert kube.exec_credential({"token": "t", "expiration": "2026-01-01T12:50:00Z"}) == {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "t", "expirationTimestamp": "2026-01-01T12:50:00Z"},
    }


def test_merging_adds_our_contexts_and_never_clobbers_the_rest() -> None:
    theirs: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "prod",
        "preferences": {"colors": True},
        "clusters": [{"name": "prod", "cluster": {"server": "https://prod:6443"}}],
        "users": [{"name": "me", "user": {"token": "mine"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me"}}],
    }
    context = kube.credential_from(ALIAS, authorization(object_())).context()
    command, options = ["/usr/bin/boundary-agent"], ["-client-agent-port", "9300"]
    merged = kube.merge_kubeconfig(theirs, [context], command, options)
    for section in ("clusters", "users", "contexts"):
        assert merged[section][0] == theirs[section][0]
        assert [e["name"] for e in merged[section]] == [
            theirs[section][0]["name"],
            f"boundary-{ALIAS}",
        ]
    assert (merged["current-context"], merged["preferences"]) == ("prod", {"colors": True})
    cluster = merged["clusters"][1]["cluster"]
    assert cluster["server"] == f"https://{ALIAS}"
    assert cluster["tls-server-name"] == "kubernetes.default.svc"
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == CA
    plugin = merged["users"][1]["user"]["exec"]
    assert plugin["command"] == "/usr/bin/boundary-agent"
    assert plugin["args"] == ["kube-credential", "-client-agent-port", "9300", ALIAS]
    assert plugin["apiVersion"] == "client.authentication.k8s.io/v1"
    assert "token" not in json.dumps(merged["users"][1])
    assert merged["contexts"][1]["context"]["namespace"] == "team-a"
    # Again: our entries replaced, not repeated.
    again = kube.merge_kubeconfig(merged, [context], command, options)
    assert again == merged


# ---------------------------------------------------------------------- the control API


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _post(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    def call() -> tuple[int, Any]:
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return await asyncio.to_thread(call)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Agent, FakeController, int]]:
    """An agent (control API and alias listeners) against the in-memory controller, holding a
    Kubernetes access target, its alias and json credential, and an ordinary target."""
    controller = FakeController()
    admin = controller.client()
    await admin.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
    kube_port = _free_port()
    target = await admin.targets.create_tcp(
        PROJECT,
        "kube:prod/team-a/ro",
        address="127.0.0.1",
        default_port=kube_port,
        description=MARKER,
    )
    store = await admin.credential_stores.create_static(PROJECT)
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=50)
    later = soon + datetime.timedelta(minutes=10)
    value = object_(
        revoke_after=soon.strftime("%Y-%m-%dT%H:%M:%SZ"),
        expiration=later.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    credential = await admin.credentials.create_json(store.id, object=value)
    await admin.targets.set_credential_sources(target.id, target.version, [credential.id])
    await admin.aliases.create(ALIAS, destination_id=target.id)
    web = await admin.targets.create_tcp(
        PROJECT, "web", address="127.0.0.1", default_port=_free_port()
    )
    await admin.aliases.create("web.team-a.test", destination_id=web.id)

    def connect(addr: str, token: str) -> BoundaryClient:
        client = controller.client()
        client.use_token(token)
        return client

    port = _free_port()
    config = AgentConfig(
        v4_prefix="127.98.0.0/16",
        state_file=str(tmp_path / "state.json"),
        override_upstream_dns_servers=["127.0.0.1:9"],
        control_listen_port=port,
        login_store="",
    )
    agent = Agent(config, connect=connect)
    await agent.control.start(port)
    try:
        yield agent, controller, port
    finally:
        await agent.control.stop()
        await agent.sessions.close()
        await agent.listeners.close()
        await agent.users.close()
        await admin.aclose()


async def _log_in(agent: Agent, controller: FakeController) -> None:
    client = controller.client()
    token = await client.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
    await agent.add_token(os.getuid(), "http://fake-controller", token.token.get_secret_value())
    await client.aclose()


async def test_kube_credential_needs_a_login(served: tuple[Agent, FakeController, int]) -> None:
    _, _, port = served
    status, body = await _post(port, "/v1/kube-credential", {"alias": ALIAS})
    assert status == 401
    assert "boundary-agent login" in body["message"]


async def test_each_kube_credential_is_a_fresh_session_that_serves_the_connections(
    served: tuple[Agent, FakeController, int],
) -> None:
    agent, controller, port = served
    await _log_in(agent, controller)
    status, first = await _post(port, "/v1/kube-credential", {"alias": ALIAS})
    assert status == 200, first
    assert first["token"] == "eyJ.fake.token"
    (stored,) = controller.objects("credentials").values()
    assert first["expiration"] == stored["_object"]["revoke_after"]
    assert first["server"].startswith(f"https://{ALIAS}:")
    status, second = await _post(port, "/v1/kube-credential", {"alias": ALIAS})
    assert status == 200
    assert second["session_id"] != first["session_id"]
    (active,) = agent.sessions.of_user(os.getuid())
    assert active.authorization.session_id == second["session_id"], "later connections use it"
    assert [s.authorization.session_id for s in agent.sessions.replaced] == [first["session_id"]]
    assert agent.listeners.addresses(ALIAS) is not None, "the alias is answered and listened on"
    assert "eyJ.fake.token" not in str(agent.health.errors)


async def test_aliases_that_are_not_kubernetes_or_not_ours_are_refused(
    served: tuple[Agent, FakeController, int],
) -> None:
    agent, controller, port = served
    await _log_in(agent, controller)
    status, body = await _post(port, "/v1/kube-credential", {"alias": "web.team-a.test"})
    assert (status, body["kind"]) == (404, "NotFound")
    assert "not a Kubernetes access" in body["message"]
    status, body = await _post(port, "/v1/kube-credential", {"alias": "gone.team-a.kube"})
    assert status == 404
    assert "not among the aliases your Boundary user may use" in body["message"]
    status, body = await _post(port, "/v1/kube-credential", {})
    assert (status, body["message"]) == (400, "alias: a non-empty string is required")


async def test_kubeconfig_and_the_plugin_through_the_cli(
    served: tuple[Agent, FakeController, int], tmp_path: Path
) -> None:
    agent, controller, port = served
    await _log_in(agent, controller)
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "x"}))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(
            cli.main, ["kubeconfig", "-client-agent-port", str(port), "-kubeconfig", str(path)]
        )
    assert code == 0, out.getvalue()
    assert f"context boundary-{ALIAS}" in out.getvalue()
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "x"
    assert [c["name"] for c in config["contexts"]] == [f"boundary-{ALIAS}"], "web is no kube"
    assert path.stat().st_mode & 0o777 == 0o600
    plugin = config["users"][0]["user"]["exec"]
    assert plugin["command"] == sys.executable
    assert plugin["args"][:2] == ["-m", "boundary_agent.cli"]

    # The plugin as kubectl runs it: exactly the command and arguments written.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(cli.main, plugin["args"][2:])
    assert code == 0
    credential = json.loads(out.getvalue())
    assert credential["kind"] == "ExecCredential"
    assert credential["status"]["token"] == "eyJ.fake.token"
