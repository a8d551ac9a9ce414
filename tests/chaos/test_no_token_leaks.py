"""No secret leaks into the artifacts users and their tools can read. A real scenario runs (the
operator under the chart's ServiceAccount registers a worker and publishes a Service with
brokered credentials; the agent logs in and answers an alias), then the real artifacts are
grepped: the operator's and agent's logs, the agent's state file and the files where it keeps
its login across restarts, every ConfigMap, Event and BoundaryPKIWorker status in the
namespace, the Service's annotations and the Helm release's values. Searched for: the brokered
password, the activation tokens the operator stored in its Secret, and anything shaped like a
Boundary auth or activation token (the operator's and the agent's logins). `boundary dev`'s
admin password is the word "password", which every manifest holds as a key name, so it cannot
be searched for."""

from __future__ import annotations

import base64
import secrets
import uuid
from pathlib import Path
from typing import Any

import dns.message
import dns.query

from boundary_devstack.agent_process import local_agent
from boundary_devstack.chart import operator_under_chart, scenario_values
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Helm, Kubectl
from boundary_devstack.leaks import token_shaped
from boundary_devstack.stack import StackEnv, wait_for


def _activation_tokens(kubectl: Kubectl, namespace: str) -> list[str]:
    try:
        secret = kubectl.get_json("secret", "edge-activation-tokens", "-n", namespace)
    except CommandFailed:
        return []
    return [base64.b64decode(v).decode() for v in (secret.get("data") or {}).values()]


def test_no_token_or_password_in_logs_state_configmaps_status_or_events(
    crds: None,
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    tmp_path: Path,
) -> None:
    namespace = f"leak-{uuid.uuid4().hex[:6]}"
    cluster = f"lk{uuid.uuid4().hex[:6]}"
    release = f"bk-{cluster}"
    brokered_password = f"leakcheck-{secrets.token_hex(12)}"
    kubectl("create", "namespace", namespace)
    upstream = stack_env.values["BOUNDARY_CLUSTER_ADDR"]
    artifacts: dict[str, str] = {}
    with operator_under_chart(
        stack_env,
        namespace,
        release,
        tmp_path,
        **scenario_values(
            stack_env,
            cluster,
            workers=[{"name": "edge", "spec": {"registration": {"initialUpstreams": [upstream]}}}],
        ),
    ) as (process, _):
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "db-credentials", "namespace": namespace},
                "stringData": {"username": "app", "password": brokered_password},
            }
        )
        kubectl.apply(_service(namespace))
        alias = f"db.{namespace}.{cluster}"
        assert wait_for(lambda: _activation_tokens(kubectl, namespace), timeout=60)
        assert wait_for(lambda: alias in _aliases(boundary_cli), timeout=60), process.log_tail()

        agent = local_agent(tmp_path / "agent", "127.0.0.61")
        agent.start()
        try:
            agent.login_as_admin(stack_env)
            assert wait_for(lambda: _resolves(agent.dns_host, agent.dns_port, alias), timeout=20)
            for command in ("status", "sessions"):
                artifacts[f"boundary-agent {command}"] = agent.cli(command).stdout
            artifacts["agent state file"] = agent.state_file.read_text()
        finally:
            agent.stop()
        # The login kept across restarts: the token sealed, never in clear.
        kept = sorted(p for p in agent.login_store.iterdir() if p.is_file())
        assert [p.name for p in kept if p.suffix == ".json"], "the agent kept no login"
        for path in kept:
            artifacts[f"agent login store {path.name}"] = path.read_bytes().decode("latin-1")
        artifacts["agent log"] = (agent.directory / "agent.log").read_text()
        for kind in ("configmaps", "events", "boundarypkiworkers", "services"):
            artifacts[kind] = kubectl("get", kind, "-n", namespace, "-o", "yaml")
        artifacts["helm values"] = Helm(stack_env)(
            "get", "values", release, "--namespace", namespace, "--all"
        )
        artifacts["operator log"] = process.log_path.read_text()
        activation_tokens = _activation_tokens(kubectl, namespace)
    kubectl("delete", "namespace", namespace, "--wait=false")

    assert activation_tokens
    known = {
        "brokered password": brokered_password,
        **{f"activation token {i}": t for i, t in enumerate(activation_tokens)},
    }
    leaks = [
        f"{what} in {where}"
        for where, text in artifacts.items()
        for what, value in known.items()
        if value in text
    ]
    leaks += [
        f"token-shaped {shown} in {where}"
        for where, text in artifacts.items()
        for shown in token_shaped(text)
    ]
    assert not leaks, leaks
    scanned = sum(len(t) for t in artifacts.values())
    print(f"scanned {len(artifacts)} artifacts, {scanned} bytes: no secret found")


def _service(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "db",
            "namespace": namespace,
            "annotations": {
                "boundaryproject.io/expose": "true",
                "boundaryproject.io/credentials-secret": "db-credentials",
            },
        },
        "spec": {"ports": [{"name": "postgres", "port": 5432}]},
    }


def _aliases(cli: BoundaryCLI) -> set[str]:
    return {a["value"] for a in cli("aliases", "list", "-scope-id", "global")["items"] or []}


def _resolves(host: str, port: int, name: str) -> bool:
    answer = dns.query.udp(dns.message.make_query(name, "A"), host, port=port, timeout=2)
    return bool(answer.answer)
