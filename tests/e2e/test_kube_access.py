"""kubectl through Boundary (BoundaryKubernetesAccess), end to end on the real apiserver,
controller, worker and agent, with the operator under exactly the chart's ServiceAccount.

Two accesses: `ro` binds ClusterRole view in the test's namespace (10-minute tokens), `admin`
binds ClusterRole admin cluster-wide. Three Boundary users, each logged in to one agent from an
OS user of their own: the read-only principal, the admin principal, and an outsider. Each runs
`boundary-agent kubeconfig` and then kubectl with the context it wrote, resolving the alias
through the agent's DNS; kubectl's exec plugin is `boundary-agent kube-credential`, its traffic
alias -> agent -> Boundary session -> worker (a real `boundary server`, run by the pod runner) ->
apiserver. `boundary dev` lets every user authorize sessions to every target; the module takes
that away (users keep list and read), as a real controller would not grant it."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from boundary_api import BoundaryClient, PermissionDenied
from boundary_devstack.agent_process import AGENT_CLI, LocalAgent, local_agent
from boundary_devstack.chart import ChartOperator, operator_under_chart, scenario_values
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Kubectl
from boundary_devstack.kube_access import (
    BoundaryUser,
    OSUser,
    create_boundary_user,
    free_loopback_for_dns,
    only_granted_sessions,
    sessions_of,
)
from boundary_devstack.leaks import token_shaped
from boundary_devstack.metrics import writes
from boundary_devstack.operator_process import pod_runner_process
from boundary_devstack.process import ManagedProcess
from boundary_devstack.stack import StackEnv, wait_for

REPO = Path(__file__).resolve().parents[2]
SUFFIX = uuid.uuid4().hex[:6]
CLUSTER = f"ka{SUFFIX}"
NAMESPACE = f"kube-access-{SUFFIX}"
RO, ADMIN = "ro", "admin"
ALIASES = {RO: f"ro.{NAMESPACE}.kube", ADMIN: f"admin.{NAMESPACE}.kube"}
ROTATE = "workers.boundaryproject.io/rotate-token"


@dataclass(frozen=True)
class Person:
    boundary: BoundaryUser
    os_user: OSUser


@dataclass(frozen=True)
class World:
    operator: ManagedProcess
    chart: ChartOperator
    agent: LocalAgent
    people: dict[str, Person]
    kubectl_bin: str
    project: str

    def kubectl_as(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.people[who].os_user.kubectl(self.agent, self.kubectl_bin, *args)


def api_address(kubectl: Kubectl) -> tuple[str, dict[str, Any]]:
    """The apiserver's host:port, and the admin kubeconfig's cluster entry."""
    config = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster: dict[str, Any] = config["clusters"][0]["cluster"]
    return cluster["server"].removeprefix("https://"), cluster


def access(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryKubernetesAccess",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"alias": ALIASES[name], "worker": {"name": "edge"}, **spec},
    }


def status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = kubectl.get_json("bka", name, "-n", NAMESPACE).get("status") or {}
    except CommandFailed:
        return {}
    return found


def ready(kubectl: Kubectl, name: str) -> bool:
    conditions = status(kubectl, name).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def exists(kubectl: Kubectl, kind: str, name: str, namespace: str | None = NAMESPACE) -> bool:
    where = ["-n", namespace] if namespace else []
    try:
        kubectl("get", kind, name, *where)
    except CommandFailed:
        return False
    return True


def events(kubectl: Kubectl, name: str) -> list[tuple[str, str, str]]:
    found = kubectl.get_json(
        "events", "-n", NAMESPACE, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return [(e["type"], e["reason"], e["message"]) for e in found]


@pytest.fixture(scope="module")
def world(
    crds: None,
    stack_env: StackEnv,
    kubectl: Kubectl,
    boundary_cli: BoundaryCLI,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    env = stack_env.values
    address, _ = api_address(kubectl)
    kubectl("create", "namespace", NAMESPACE)
    values = scenario_values(
        stack_env,
        CLUSTER,
        kubernetesAccess={
            "bindableClusterRoles": ["view", "admin"],
            "clusterWide": True,
            "apiAddress": address,
        },
    )
    work = tmp_path_factory.mktemp("kube-access")
    with (
        only_granted_sessions(boundary_cli),
        operator_under_chart(stack_env, NAMESPACE, f"bk-{CLUSTER}", work, **values) as (
            operator,
            chart,
        ),
    ):
        runner = _egress_worker(stack_env, kubectl, work)
        agent = local_agent(
            work / "agent", free_loopback_for_dns(), dns_port=53, prefix="127.77.0.0/16"
        )
        agent.start()
        people: dict[str, Person] = {}
        try:
            for role in (RO, ADMIN, "outsider"):
                person = Person(
                    create_boundary_user(
                        boundary_cli, env["BOUNDARY_AUTH_METHOD_ID"], f"{role}-{SUFFIX}"
                    ),
                    OSUser.make(f"bkkube{role[:5]}", work / "homes"),
                )
                person.os_user.login(
                    agent, env["BOUNDARY_ADDR"], env["BOUNDARY_AUTH_METHOD_ID"], person.boundary
                )
                people[role] = person
            kubectl.apply(
                access(
                    RO,
                    {
                        "roleRef": {"kind": "ClusterRole", "name": "view"},
                        "principals": {"users": [people[RO].boundary.user_id]},
                        "tokenLifetime": "10m",
                    },
                )
            )
            kubectl.apply(
                access(
                    ADMIN,
                    {
                        "roleRef": {"kind": "ClusterRole", "name": "admin"},
                        "clusterWide": True,
                        "principals": {"users": [people[ADMIN].boundary.user_id]},
                    },
                )
            )
            for name in (RO, ADMIN):
                assert wait_for(lambda n=name: ready(kubectl, n), timeout=90), (  # type: ignore[misc]
                    status(kubectl, name),
                    operator.log_tail(40),
                )
            yield World(
                operator,
                chart,
                agent,
                people,
                kubectl.binary,
                env["BOUNDARY_PROJECT_ID"],
            )
        finally:
            # While the operator runs: its finalizer removes what each access made.
            kubectl("delete", "bka", "--all", "-n", NAMESPACE, "--timeout=120s", timeout=150)
            agent.stop()
            runner.stop()
            for person in people.values():
                boundary_cli("users", "delete", "-id", person.boundary.user_id)
            assert token_shaped(agent.process.log_tail(100_000)) == []
    assert token_shaped(operator.log_tail(100_000)) == []
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _egress_worker(stack_env: StackEnv, kubectl: Kubectl, work: Path) -> ManagedProcess:
    """The BoundaryPKIWorker `edge` of the namespace, its pod run by the pod runner."""
    kubectl.apply(
        {
            "apiVersion": "workers.boundaryproject.io/v1alpha1",
            "kind": "BoundaryPKIWorker",
            "metadata": {"name": "edge", "namespace": NAMESPACE},
            "spec": {
                "registration": {"initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]}
            },
        }
    )
    assert wait_for(lambda: exists(kubectl, "pod", "edge-0"), timeout=60)
    env_file = work / "env"
    stack_env.write(env_file)
    runner = pod_runner_process(env_file, work / "state", work, NAMESPACE, "edge-0")
    runner.start()

    def connected() -> bool:
        found = kubectl.get_json("bpw", "edge", "-n", NAMESPACE).get("status") or {}
        return bool(found.get("connectedReplicas") == 1)

    assert wait_for(connected, timeout=90)
    return runner


def test_each_access_has_its_pieces_on_both_sides(
    world: World, kubectl: Kubectl, boundary_cli: BoundaryCLI
) -> None:
    ro = status(kubectl, RO)
    assert ro["alias"] == ALIASES[RO]
    assert ro["principals"] == [world.people[RO].boundary.user_id]
    assert ro["tokenExpiresAt"]
    assert ro["observedGeneration"] == 1
    target = boundary_cli("targets", "read", "-id", ro["targetId"])["item"]
    assert target["address"] == "127.0.0.1"
    assert target["session_max_seconds"] == 600
    assert target["brokered_credential_source_ids"] == [ro["credentialId"]]
    assert target["egress_worker_filter"] == (
        f'"edge" in "/tags/boundary_pki_worker" and "{NAMESPACE}" in "/tags/namespace"'
    )
    role = boundary_cli("roles", "read", "-id", ro["roleId"])["item"]
    assert role["principal_ids"] == [world.people[RO].boundary.user_id]
    assert role["grant_strings"] == [f"ids={ro['targetId']};actions=authorize-session,read"]
    # The credential store answers reads with an HMAC of the object, never the token.
    credential = boundary_cli("credentials", "read", "-id", ro["credentialId"])["item"]
    assert credential["type"] == "json"
    assert "token" not in json.dumps(credential["attributes"])
    binding = kubectl.get_json("rolebinding", "ro-boundary-access", "-n", NAMESPACE)
    assert binding["roleRef"]["name"] == "view"
    admin_binding = kubectl.get_json("clusterrolebinding", f"boundary-access:{NAMESPACE}:admin")
    assert admin_binding["subjects"][0]["name"] == "admin-boundary-access"
    assert not exists(kubectl, "rolebinding", "admin-boundary-access")


def test_kubeconfig_writes_a_context_per_granted_access(world: World) -> None:
    ro = world.people[RO].os_user
    result = ro.kubeconfig(world.agent)
    assert result.returncode == 0, result.stderr
    assert f"context boundary-{ALIASES[RO]}" in result.stdout
    # The admin alias resolves for everyone here (every user may read every target), but its
    # session is refused: no context for it, and a note saying why.
    assert f"{ALIASES[ADMIN]}: Boundary refused a session" in result.stderr
    config = json.loads(
        subprocess.run(
            [world.kubectl_bin, "config", "view", "-o", "json"],
            env={"KUBECONFIG": str(ro.home / "kubeconfig"), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    (context,) = config["contexts"]
    assert context["context"]["namespace"] == NAMESPACE
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["tls-server-name"] == "kubernetes.default.svc"
    assert cluster["cluster"]["server"].startswith(f"https://{ALIASES[RO]}:")
    for role in (ADMIN, "outsider"):
        world.people[role].os_user.kubeconfig(world.agent)


def test_the_read_only_user_lists_pods_and_may_not_create_them(world: World) -> None:
    context = f"--context=boundary-{ALIASES[RO]}"
    pods = world.kubectl_as(RO, context, "get", "pods", "-n", NAMESPACE, "-o", "name")
    assert pods.returncode == 0, pods.stderr
    assert "pod/edge-0" in pods.stdout.split()
    may = world.kubectl_as(RO, context, "auth", "can-i", "create", "pods")
    assert (may.returncode, may.stdout.strip()) == (1, "no"), may.stderr
    whoami = world.kubectl_as(RO, context, "auth", "whoami", "-o", "json")
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{NAMESPACE}:ro-boundary-access"
    )


def test_the_admin_may_create_pods_anywhere(world: World) -> None:
    context = f"--context=boundary-{ALIASES[ADMIN]}"
    for namespace in (NAMESPACE, "default"):
        may = world.kubectl_as(ADMIN, context, "auth", "can-i", "create", "pods", "-n", namespace)
        assert (may.returncode, may.stdout.strip()) == (0, "yes"), may.stderr


def test_an_outsider_is_refused_at_authorize_session(world: World, stack_env: StackEnv) -> None:
    outsider = world.people["outsider"]
    assert not (outsider.os_user.home / "kubeconfig").exists(), "no context was written"
    refused = outsider.os_user.run(world.agent, *AGENT_CLI, "kube-credential", ALIASES[RO])
    assert refused.returncode == 1
    assert f"Boundary refused a session to {ALIASES[RO]} for your user" in refused.stderr

    async def authorize() -> None:
        env = stack_env.values
        async with BoundaryClient(env["BOUNDARY_ADDR"]) as client:
            await client.authenticate_password(
                env["BOUNDARY_AUTH_METHOD_ID"],
                outsider.boundary.login_name,
                outsider.boundary.password,
            )
            with pytest.raises(PermissionDenied):
                await client.sessions.authorize(ALIASES[RO])

    asyncio.run(authorize())


def test_each_kubectl_use_is_a_session_of_that_user_on_that_target(
    world: World, kubectl: Kubectl, boundary_cli: BoundaryCLI
) -> None:
    target = status(kubectl, RO)["targetId"]
    context = f"--context=boundary-{ALIASES[RO]}"
    for _ in range(2):
        before = sessions_of(boundary_cli, world.project, target)
        used = world.kubectl_as(RO, context, "get", "pods", "-n", NAMESPACE)
        assert used.returncode == 0, used.stderr
        new = {s: u for s, u in sessions_of(boundary_cli, world.project, target).items()}
        added = {s: u for s, u in new.items() if s not in before}
        assert list(added.values()) == [world.people[RO].boundary.user_id], added


def test_kubectl_keeps_working_across_rotation_and_the_old_token_dies(
    world: World, kubectl: Kubectl
) -> None:
    ro = world.people[RO].os_user
    old = ro.kube_credential(world.agent, ALIASES[RO])["status"]["token"]
    serial = status(kubectl, RO)["tokenSerial"]
    # The admin kubeconfig's cluster entry as it is (its CA inline or as a file: the stack's
    # names a file), with only this token as the user.
    _, cluster = api_address(kubectl)

    def direct(token: str) -> subprocess.CompletedProcess[str]:
        config = world.agent.directory / "direct.kubeconfig"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": cluster}],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        config.chmod(0o600)
        return subprocess.run(
            [world.kubectl_bin, "--kubeconfig", str(config), "get", "pods", "-n", NAMESPACE],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert direct(old).returncode == 0
    kubectl("annotate", "bka", RO, "-n", NAMESPACE, f"{ROTATE}=now")
    assert wait_for(lambda: status(kubectl, RO).get("tokenSerial") == serial + 1, timeout=60)
    assert ROTATE not in (
        kubectl.get_json("bka", RO, "-n", NAMESPACE)["metadata"].get("annotations") or {}
    )
    context = f"--context=boundary-{ALIASES[RO]}"
    after = world.kubectl_as(RO, context, "get", "pods", "-n", NAMESPACE)
    assert after.returncode == 0, after.stderr
    new = ro.kube_credential(world.agent, ALIASES[RO])["status"]["token"]
    assert new != old

    def refused() -> bool:
        answer = direct(old)
        return (
            answer.returncode != 0
            and re.search(r"(?i)unauthorized|logged in", answer.stderr) is not None
        )

    assert wait_for(refused, timeout=30), direct(old).stderr
    assert direct(new).returncode == 0
    # A listing of Events comes in no particular order: find the new token's by its serial.
    issued = [e[2] for e in events(kubectl, RO) if e[1] == "TokenIssued"]
    assert len(issued) >= 2, issued
    assert any(
        m.startswith(f"token {serial + 1} ") and "rotation requested" in m for m in issued
    ), issued


def test_a_restarted_operator_converges_without_writes_or_events(
    world: World, kubectl: Kubectl
) -> None:
    before = (
        {
            n: kubectl.get_json("bka", n, "-n", NAMESPACE)["metadata"]["resourceVersion"]
            for n in (RO, ADMIN)
        },
        events(kubectl, RO) + events(kubectl, ADMIN),
    )
    world.operator.stop()
    world.operator.start()
    # Resumed (kopf's resume handler), then one check tick of each (every 30 s).
    assert wait_for(
        lambda: "logged in to the Boundary controller" in world.operator.log_tail(200), 60
    )
    time.sleep(40)
    # Its only calls that are not reads: one login, the SelfSubjectReview at start.
    assert writes(world.chart.metrics_port).boundary == 1
    assert writes(world.chart.metrics_port).kube == 1
    after = (
        {
            n: kubectl.get_json("bka", n, "-n", NAMESPACE)["metadata"]["resourceVersion"]
            for n in (RO, ADMIN)
        },
        events(kubectl, RO) + events(kubectl, ADMIN),
    )
    assert after == before


def test_deleting_an_access_removes_every_piece_and_kubectl_says_why(
    world: World, kubectl: Kubectl, boundary_cli: BoundaryCLI
) -> None:
    ro = status(kubectl, RO)
    kubectl("delete", "bka", RO, "-n", NAMESPACE, "--timeout=60s", timeout=90)
    assert not exists(kubectl, "serviceaccount", "ro-boundary-access")
    assert not exists(kubectl, "rolebinding", "ro-boundary-access")
    for serial in range(1, int(ro["tokenSerial"]) + 1):
        assert not exists(kubectl, "secret", f"ro-boundary-access-token-{serial}")
    for kind, key in (
        ("targets", "targetId"),
        ("aliases", "aliasId"),
        ("credential-stores", "credentialStoreId"),
        ("roles", "roleId"),
    ):
        with pytest.raises(CommandFailed):
            boundary_cli(kind, "read", "-id", ro[key])
    # The agent drops the alias at its next refresh (2 s); kubectl's plugin then says why.
    time.sleep(5)
    gone = world.kubectl_as(RO, f"--context=boundary-{ALIASES[RO]}", "get", "pods")
    assert gone.returncode != 0
    assert (
        f"boundary-agent: {ALIASES[RO]} is not among the aliases your Boundary user may use"
        in gone.stderr
    ), gone.stderr
