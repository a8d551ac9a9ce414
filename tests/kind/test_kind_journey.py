"""The install journey on kind, in order: what `helm install` and `kubectl apply -f examples/`
give a user, a real session from the host through a worker pod, then faults and removal. The
cluster is set up once by tools/e2e-kind.sh (conftest.py); the tests run in file order."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kind_harness import (
    CLUSTER,
    WORKER_NODE_PORT,
    WORKER_UID,
    Engine,
    KindCluster,
    boundary_worker,
)
from laptop import CHECKOUT, UPLINK_NAME, USER, Laptop, readme_steps, with_values

from boundary_devstack import through_agent
from boundary_devstack.agent_process import AGENT_CLI, LocalAgent, local_agent
from boundary_devstack.clients import BoundaryCLI, CommandFailed
from boundary_devstack.kube_access import (
    BoundaryUser,
    OSUser,
    create_boundary_user,
    free_loopback_for_dns,
    only_granted_sessions,
    sessions_of,
)
from boundary_devstack.stack import StackEnv, wait_for

REPO = Path(__file__).resolve().parents[2]
BOUNDARY_VERSION = re.search(
    r"^BOUNDARY_VERSION=(\S+)", (REPO / "tools" / "build-go-tools.sh").read_text(), re.M
)
OPERATOR = "app.kubernetes.io/name=boundary-worker,app.kubernetes.io/instance=boundary-worker"
WEB, DB = "web.demo.boundary", "db.demo.boundary"
KUBE = "kube.demo.boundary"
ROTATE = "workers.boundaryproject.io/rotate-token"


def worker_status(cluster: KindCluster) -> dict[str, Any]:
    status: dict[str, Any] = cluster.kubectl.get_json("bpw", "edge", "-n", "demo")["status"]
    return status


def condition(status: dict[str, Any], kind: str) -> str:
    return next((c["status"] for c in status.get("conditions", []) if c["type"] == kind), "")


def our_boundary_workers(cli: BoundaryCLI) -> list[str]:
    items = cli("workers", "list")["items"] or []
    return sorted(w["name"] for w in items if w.get("name", "").startswith(f"{CLUSTER}-demo-edge-"))


def operator_pods(cluster: KindCluster) -> dict[str, dict[str, Any]]:
    """The chart's operator replicas (two by default), by pod name, not being deleted."""
    pods = cluster.kubectl.get_json("pods", "-n", "boundary-system", "-l", OPERATOR)["items"]
    return {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}


def lease_holder(cluster: KindCluster) -> str:
    """The pod holding the leader election Lease ("" when nobody does)."""
    try:
        lease = cluster.kubectl.get_json("lease", "boundary-worker", "-n", "boundary-system")
    except CommandFailed:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def leader_pod(cluster: KindCluster) -> dict[str, Any]:
    pods = operator_pods(cluster)
    assert len(pods) == 2, sorted(pods)
    holder = lease_holder(cluster)
    assert holder in pods, (holder, sorted(pods))
    return pods[holder]


def health(cluster: KindCluster, pod: str) -> str:
    """What the pod's liveness endpoint answers, through the apiserver's pod proxy."""
    return cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/boundary-system/pods/{pod}:8081/proxy/healthz"
    ).strip()


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_worker_image_runs_read_only_as_an_arbitrary_uid(
    engine: Engine, kind_cluster: KindCluster
) -> None:
    assert BOUNDARY_VERSION
    printed = engine.docker(
        "run",
        "--rm",
        "--read-only",
        "--user",
        "12345:0",
        "boundary-k8s/worker:e2e-kind",
        "boundary",
        "version",
    )
    assert re.search(rf"Version Number:\s+{re.escape(BOUNDARY_VERSION.group(1))}$", printed, re.M)
    usage = engine.docker(
        "run",
        "--rm",
        "--read-only",
        "--user",
        "12345:0",
        "boundary-k8s/operator:e2e-kind",
        "--help",
    )
    assert "usage: boundary-operator" in usage


def test_two_operator_replicas_one_leads_the_other_stands_by(
    kind_cluster: KindCluster,
) -> None:
    leader = leader_pod(kind_cluster)
    pods = operator_pods(kind_cluster)
    (standby,) = [pod for name, pod in pods.items() if name != leader["metadata"]["name"]]
    for pod in (leader, standby):
        (container,) = pod["spec"]["containers"]
        assert container["image"] == "boundary-k8s/operator:e2e-kind"
        assert pod["spec"]["serviceAccountName"] == "boundary-worker"
        assert ready(pod)
    names = leader["metadata"]["name"], standby["metadata"]["name"]
    logs = [kind_cluster.kubectl("logs", "-n", "boundary-system", name) for name in names]
    assert "logged in to the Boundary controller" in logs[0]
    # The standby runs no kopf: it never logged in to Boundary, and says whom it waits for.
    assert "logged in to the Boundary controller" not in logs[1]
    assert f"is held by {names[0]}" in logs[1]
    assert [health(kind_cluster, name) for name in names] == ["ok: leader", "ok: standby"]


def test_worker_pod_is_restricted_stores_on_a_local_path_volume_and_registers(
    kind_cluster: KindCluster, boundary_cli: BoundaryCLI
) -> None:
    kubectl = kind_cluster.kubectl
    pod = kubectl.get_json("pod", "edge-0", "-n", "demo")
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "boundary-k8s/worker:e2e-kind"
    assert ready(pod)
    assert kubectl("exec", "-n", "demo", "edge-0", "--", "id", "-u").strip() == str(WORKER_UID)
    # The probes the operator renders, passing in the real container.
    assert "httpGet" in container["livenessProbe"]
    kubectl("exec", "-n", "demo", "edge-0", "--", "boundary-worker-ready")

    # Pod Security "restricted", asked of the admission plugin: the pod as it runs, created
    # again (dry run) in a namespace that enforces it. The root-running db backend is refused
    # there, so the check is seen to work.
    assert restricted_refuses(kind_cluster, pod) == ""
    db = kubectl.get_json("pods", "-n", "demo", "-l", "app=db")["items"][0]
    assert "violates PodSecurity" in restricted_refuses(kind_cluster, db)

    claim = kubectl.get_json("pvc", "data-edge-0", "-n", "demo")
    assert claim["status"]["phase"] == "Bound"
    volume = kubectl.get_json("pv", claim["spec"]["volumeName"])
    assert volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == (
        "rancher.io/local-path"
    )

    status = worker_status(kind_cluster)
    assert condition(status, "Ready") == "True"
    (replica,) = status["replicas"]
    item = boundary_worker(boundary_cli, replica["workerId"])
    assert item is not None
    assert item["release_version"] == f"Boundary v{BOUNDARY_VERSION.group(1)}"  # type: ignore[union-attr]
    assert item["address"] == f"{kind_cluster.node_ip}:{WORKER_NODE_PORT}"


def restricted_refuses(cluster: KindCluster, pod: dict[str, Any]) -> str:
    """Why the Pod Security "restricted" level refuses this pod's spec ("" when it accepts)."""
    cluster.kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "psa-restricted",
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        }
    )
    spec = {k: v for k, v in pod["spec"].items() if k != "nodeName"}
    copy = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "restricted-check", "namespace": "psa-restricted"},
        "spec": spec,
    }
    try:
        cluster.kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(copy))
    except CommandFailed as refused:
        return refused.stderr
    return ""


def test_services_become_targets_at_their_cluster_dns_names(
    kind_cluster: KindCluster, boundary_cli: BoundaryCLI
) -> None:
    for service in ("web", "db"):
        annotation = kind_cluster.kubectl(
            "get",
            "service",
            service,
            "-n",
            "demo",
            "-o",
            "jsonpath={.metadata.annotations.boundaryproject\\.io/targets}",
        )
        (target_id,) = json.loads(annotation)
        target = boundary_cli("targets", "read", "-id", target_id)["item"]
        assert target["attributes"]["default_port"] in (80, 5432)
        assert target["address"] == f"{service}.demo.svc.cluster.local"


def test_http_through_the_alias_reaches_the_web_pod(
    kind_cluster: KindCluster, agent: LocalAgent
) -> None:
    address = through_agent.resolve(agent.dns_host, agent.dns_port, WEB)
    page = through_agent.http_get(address, WEB)
    assert "Welcome to nginx" in page
    kind_cluster.record(
        "kind create cluster to the first session through a worker pod",
        time.monotonic() - kind_cluster.created_at,
    )


def test_psql_through_the_alias_gets_the_brokered_credentials(
    kind_cluster: KindCluster, agent: LocalAgent
) -> None:
    address = through_agent.resolve(agent.dns_host, agent.dns_port, DB)
    username, password = through_agent.brokered_credentials(address, 5432, agent.control_port, DB)
    assert username == "app"
    answer = through_agent.psql(
        address, username, password, "app", "select current_user || '@' || current_database()"
    )
    assert answer == "app@app"


def test_laptop_install_as_the_readme_says_serves_aliases_through_resolved(
    kind_cluster: KindCluster,
    stack_env: StackEnv,
    laptop_machine: Laptop,
    package_mirror: str,
    laptop_journals: None,
) -> None:
    """README.md's laptop install, run as written in a Debian systemd container on kind's
    network, then a user's login: the alias resolves through systemd-resolved and the agent,
    and curl reaches the web pod through the worker."""
    steps = readme_steps()
    laptop_machine.copy_checkout("api", "agent")
    mirror = package_mirror.removeprefix("http://")
    pip = {"PIP_INDEX_URL": f"{package_mirror}/simple", "PIP_TRUSTED_HOST": mirror}
    started = time.monotonic()
    laptop_machine.sh(
        steps.install, workdir=CHECKOUT, env=pip if package_mirror else {}, timeout=600
    )
    kind_cluster.record("laptop: the README's install (pip included)", time.monotonic() - started)
    unit = laptop_machine.sh(
        "systemctl is-enabled boundary-agent; systemctl is-active boundary-agent"
    )
    assert unit.stdout.split() == ["enabled", "active"]
    link = laptop_machine.sh("resolvectl dns boundary0; resolvectl domain boundary0").stdout
    assert "100.64.0.1" in link, link
    assert "~boundary" in link, link

    values = stack_env.values
    login = with_values(
        steps.login,
        values["BOUNDARY_ADDR"],
        values["BOUNDARY_AUTH_METHOD_ID"],
        values["BOUNDARY_LOGIN_NAME"],
    )
    started = time.monotonic()
    laptop_machine.sh(login, user=USER, env={"BOUNDARY_PASSWORD": values["BOUNDARY_PASSWORD"]})
    getent, curl = f"getent hosts {WEB}", f"curl http://{WEB}/"
    assert steps.user_commands == [getent, curl]
    # Through glibc, the stub in /etc/resolv.conf, resolved's routing domain and the agent.
    answer = laptop_machine.sh(getent, user=USER).stdout.split()
    assert answer[1:] == [WEB], answer
    assert ipaddress.ip_address(answer[0]) in ipaddress.ip_network("100.64.0.0/10")
    via = laptop_machine.sh(f"resolvectl query --legend=no {WEB}").stdout
    assert re.search(rf"{re.escape(answer[0])}\s+-- link: boundary0", via), via
    assert "Welcome to nginx" in laptop_machine.sh(curl, user=USER, timeout=90).stdout
    kind_cluster.record("laptop: login to the first curl", time.monotonic() - started)
    assert WEB in laptop_machine.sh("boundary-agent sessions", user=USER).stdout
    # A connection is served only for the user whose login authorized it: root has none.
    assert laptop_machine.sh(f"curl -sS --max-time 20 {curl[5:]}", check=False).returncode != 0
    # The login changed the agent's answers, and resolved's cache was dropped with them.
    assert "Flushed all caches" in laptop_machine.journal("systemd-resolved")
    # Other names keep the uplink; a name in the alias domain that is no alias is asked of
    # resolved's upstreams, not of its stub, which would send it back to the agent.
    assert laptop_machine.sh(f"getent hosts {UPLINK_NAME}").stdout.strip()
    started = time.monotonic()
    missing = laptop_machine.sh(f"getent hosts missing.{WEB}", check=False)
    assert missing.returncode == 2, missing
    assert time.monotonic() - started < 5


def test_laptop_systemctl_stop_gives_the_names_back_to_the_usual_resolver(
    laptop_machine: Laptop, laptop_journals: None
) -> None:
    resolv_conf = laptop_machine.sh("cat /etc/resolv.conf").stdout
    laptop_machine.sh("systemctl stop boundary-agent")
    assert "boundary0" not in laptop_machine.sh("ip -brief link; resolvectl status").stdout
    started = time.monotonic()
    gone = laptop_machine.sh(f"getent hosts {WEB}", user=USER, check=False)
    assert gone.returncode == 2, gone
    assert time.monotonic() - started < 5
    assert laptop_machine.sh(f"getent hosts {UPLINK_NAME}").stdout.strip()
    assert laptop_machine.sh("cat /etc/resolv.conf").stdout == resolv_conf
    assert "Deactivated successfully" in laptop_machine.journal("boundary-agent")


def test_laptop_reboot_brings_the_agent_back_logged_in(
    kind_cluster: KindCluster,
    stack_env: StackEnv,
    laptop_machine: Laptop,
    laptop_journals: None,
) -> None:
    """The unit is enabled, so a reboot starts the agent, with the login it kept (no new
    login), and the aliases work again at once."""
    uid = laptop_machine.sh(f"id -u {USER}").stdout.strip()
    kept = json.loads(laptop_machine.sh(f"cat /var/lib/boundary-agent/logins/{uid}.json").stdout)
    seconds = laptop_machine.reboot()
    kind_cluster.record("laptop: docker restart to booted", seconds)
    started = time.monotonic()
    assert wait_for(
        lambda: f"alias {WEB} ->" in laptop_machine.journal("boundary-agent", 400), 60, 1
    ), "the agent did not listen for the alias after the reboot"
    status = laptop_machine.sh("boundary-agent status", user=USER).stdout
    assert kept["token_id"] in status, status
    assert "1 login(s) kept from the last run" in laptop_machine.journal("boundary-agent", 400)
    assert laptop_machine.sh(f"getent hosts {WEB}", user=USER).stdout.split()[1:] == [WEB]
    page = laptop_machine.sh(f"curl http://{WEB}/", user=USER, timeout=90).stdout
    assert "Welcome to nginx" in page
    kind_cluster.record("laptop: booted to the first curl", time.monotonic() - started)
    journal = laptop_machine.sh("journalctl --no-pager -b -u boundary-agent").stdout
    assert stack_env.values["BOUNDARY_PASSWORD"] not in journal


def test_a_deleted_worker_pod_returns_as_the_same_boundary_worker(
    kind_cluster: KindCluster, boundary_cli: BoundaryCLI, agent: LocalAgent
) -> None:
    kubectl = kind_cluster.kubectl
    (before,) = worker_status(kind_cluster)["replicas"]
    old_uid = kubectl.get_json("pod", "edge-0", "-n", "demo")["metadata"]["uid"]
    names = our_boundary_workers(boundary_cli)
    kubectl("delete", "pod", "edge-0", "-n", "demo", "--wait=true", timeout=120)

    def back() -> bool:
        try:
            pod = kubectl.get_json("pod", "edge-0", "-n", "demo")
        except CommandFailed:
            return False
        return pod["metadata"]["uid"] != old_uid and ready(pod)

    assert wait_for(back, 180), "edge-0 did not come back Ready"
    assert wait_for(lambda: condition(worker_status(kind_cluster), "Ready") == "True", 120)
    (after,) = worker_status(kind_cluster)["replicas"]
    assert after["workerId"] == before["workerId"], "the identity on the volume was not kept"
    assert our_boundary_workers(boundary_cli) == names
    # A new session (the agent is fresh) through the new pod, once the node port leads to it:
    # kube-proxy follows the proxy Service's endpoints a moment after they change.
    new_ip = kubectl.get_json("pod", "edge-0", "-n", "demo")["status"]["podIP"]
    assert wait_for(lambda: proxy_endpoints(kind_cluster) == [new_ip], 60)
    address = through_agent.resolve(agent.dns_host, agent.dns_port, WEB)
    assert wait_for(lambda: "Welcome to nginx" in http_get_or_empty(address, WEB), 20, 2)


def proxy_endpoints(cluster: KindCluster) -> list[str]:
    """The ready addresses behind the worker's proxy Service."""
    slices = cluster.kubectl.get_json(
        "endpointslices", "-n", "demo", "-l", "kubernetes.io/service-name=edge-proxy"
    )["items"]
    return sorted(
        address
        for item in slices
        for endpoint in item.get("endpoints") or []
        if endpoint.get("conditions", {}).get("ready")
        for address in endpoint["addresses"]
    )


def http_get_or_empty(address: str, alias: str) -> str:
    try:
        return through_agent.http_get(address, alias, timeout=10)
    except through_agent.NotThroughBoundary:
        return ""


def owned_versions(cluster: KindCluster) -> dict[str, str]:
    """resourceVersion of everything the operator writes for the examples; for the
    StatefulSet its generation, as its controller keeps rewriting its status (and so its
    resourceVersion) while pods come and go, and the operator writes only its spec."""
    versions = {}
    for kind, name in (
        ("bpw", "edge"),
        ("statefulset", "edge"),
        ("configmap", "edge-config"),
        ("secret", "edge-activation-tokens"),
        ("service", "edge-proxy"),
        ("service", "web"),
        ("service", "db"),
    ):
        meta = cluster.kubectl.get_json(kind, name, "-n", "demo")["metadata"]
        field = "generation" if kind == "statefulset" else "resourceVersion"
        versions[f"{kind}/{name}"] = str(meta[field])
    return versions


def settled_versions(
    cluster: KindCluster, quiet: float = 12.0, timeout: float = 120.0
) -> dict[str, str]:
    """owned_versions once they have not changed for `quiet` seconds, longer than the 10 s
    status refresh: a test before may have left a worker pod coming back, whose status the
    operator rightly keeps writing until it has settled."""
    deadline = time.monotonic() + timeout
    versions, since = owned_versions(cluster), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"still changing after {timeout:.0f} s: {versions}"
        time.sleep(2)
        now = owned_versions(cluster)
        if now != versions:
            versions, since = now, time.monotonic()
    return versions


def metric_total(metrics: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples with these labels; an unlabelled sample (a plain gauge,
    `name value`) counts when no label is asked for."""
    total = 0.0
    for line in metrics.splitlines():
        sample, _, value = line.rpartition(" ")
        labelled = sample.startswith(name + "{")
        if (labelled or (sample == name and not labels)) and all(
            f'{k}="{v}"' in sample for k, v in labels.items()
        ):
            total += float(value)
    return total


def test_a_deleted_leader_is_replaced_within_15_s_without_writes(
    kind_cluster: KindCluster,
) -> None:
    """A rollout or a node drain deletes the leader's pod: it releases the Lease as it stops,
    and another replica takes over within 15 s and finds everything as it should be (no
    write); the other one stands by. Which one leads is a race: the standby checks the Lease
    every quarter of its duration, and the Deployment's replacement pod, when it starts first
    after the release, may take it first (seen on kind: 4 s after the delete)."""
    kubectl = kind_cluster.kubectl
    versions = settled_versions(kind_cluster)
    old = leader_pod(kind_cluster)["metadata"]["name"]
    warnings_before = kubectl(
        "get", "events", "-A", "--field-selector", "type=Warning", "-o", "name"
    )
    deleted = time.monotonic()
    kubectl("delete", "pod", "-n", "boundary-system", old, "--wait=false")
    assert wait_for(lambda: lease_holder(kind_cluster) not in ("", old), 30, interval=0.2)
    new = lease_holder(kind_cluster)
    took_over = time.monotonic() - deleted
    kind_cluster.record("operator leader handover (pod deleted)", took_over)
    assert took_over < 15, took_over
    assert wait_for(lambda: len(operator_pods(kind_cluster)) == 2, 180)
    assert wait_for(lambda: all(ready(p) for p in operator_pods(kind_cluster).values()), 180)

    def resynced() -> bool:
        return "resync:" in kubectl("logs", "-n", "boundary-system", new)

    assert wait_for(resynced, 120), "the new leader never finished a Service resync"
    time.sleep(15)  # a BoundaryPKIWorker status refresh runs every 10 s
    metrics = kubectl(
        "get", "--raw", f"/api/v1/namespaces/boundary-system/pods/{new}:8080/proxy/metrics"
    )
    requests = "boundary_operator_boundary_requests_total"
    assert metric_total(metrics, requests, method="GET") > 0, "the operator never read Boundary"
    # One POST: the login. Nothing created, changed or deleted in Boundary.
    calls = [line for line in metrics.splitlines() if line.startswith(requests)]
    logs = kubectl("logs", "-n", "boundary-system", new)
    assert metric_total(metrics, requests, method="POST") == 1, f"{calls}\n{logs[-4000:]}"
    assert metric_total(metrics, requests, method="PATCH") == 0
    assert metric_total(metrics, requests, method="DELETE") == 0
    assert metric_total(metrics, "boundary_operator_leader") == 1
    assert owned_versions(kind_cluster) == versions
    warnings_after = kubectl(
        "get", "events", "-A", "--field-selector", "type=Warning", "-o", "name"
    )
    assert warnings_after == warnings_before
    (replacement,) = set(operator_pods(kind_cluster)) - {new}
    assert health(kind_cluster, replacement) == "ok: standby"


def access_status(cluster: KindCluster) -> dict[str, Any]:
    try:
        found = cluster.kubectl.get_json("bka", "viewers", "-n", "demo")
    except CommandFailed:
        return {}
    status: dict[str, Any] = found.get("status") or {}
    return status


def test_kubectl_through_boundary_reaches_the_apiserver_at_kubernetes_default_svc(
    kind_cluster: KindCluster, boundary_cli: BoundaryCLI, stack_env: StackEnv, tmp_path: Path
) -> None:
    """examples/50-kubernetes-access.yaml: kubectl from the host through the alias, the agent, a
    Boundary session and the worker pod to kubernetes.default.svc:443; each use a session of
    that user; an outsider refused; a forced rotation; the resource deleted."""
    kubectl = kind_cluster.kubectl
    assert wait_for(lambda: condition(access_status(kind_cluster), "Ready") == "True", 120), (
        access_status(kind_cluster)
    )
    status = access_status(kind_cluster)
    target = boundary_cli("targets", "read", "-id", status["targetId"])["item"]
    assert (target["address"], target["attributes"]["default_port"]) == (
        "kubernetes.default.svc",
        443,
    )
    env = stack_env.values
    admin = BoundaryUser(env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"], "u_1234567890")
    kubectl_bin = kubectl.binary
    with only_granted_sessions(boundary_cli):
        outsider = create_boundary_user(
            boundary_cli, env["BOUNDARY_AUTH_METHOD_ID"], f"outsider-{CLUSTER}"
        )
        agent = local_agent(tmp_path / "agent", free_loopback_for_dns(), dns_port=53)
        agent.start()
        try:
            me = OSUser.make("bkkindadmin", tmp_path / "homes")
            me.login(agent, env["BOUNDARY_ADDR"], env["BOUNDARY_AUTH_METHOD_ID"], admin)
            them = OSUser.make("bkkindout", tmp_path / "homes")
            them.login(agent, env["BOUNDARY_ADDR"], env["BOUNDARY_AUTH_METHOD_ID"], outsider)
            written = me.kubeconfig(agent)
            assert written.returncode == 0, written.stderr
            assert f"context boundary-{KUBE}: https://{KUBE}, namespace demo" in written.stdout
            context = f"--context=boundary-{KUBE}"

            before = sessions_of(boundary_cli, env["BOUNDARY_PROJECT_ID"], target["id"])
            pods = me.kubectl(agent, kubectl_bin, context, "get", "pods", "-o", "name")
            assert pods.returncode == 0, pods.stderr + agent.process.log_tail(20)
            assert "pod/edge-0" in pods.stdout.split()
            added = {
                s: u
                for s, u in sessions_of(
                    boundary_cli, env["BOUNDARY_PROJECT_ID"], target["id"]
                ).items()
                if s not in before
            }
            assert list(added.values()) == [admin.user_id]
            may = me.kubectl(agent, kubectl_bin, context, "auth", "can-i", "create", "pods")
            assert (may.returncode, may.stdout.strip()) == (1, "no"), may.stderr
            refused = them.run(agent, *AGENT_CLI, "kube-credential", KUBE)
            assert f"Boundary refused a session to {KUBE} for your user" in refused.stderr

            old = me.kube_credential(agent, KUBE)["status"]["token"]
            serial = status["tokenSerial"]
            kubectl("annotate", "bka", "viewers", "-n", "demo", f"{ROTATE}=now")
            assert wait_for(
                lambda: access_status(kind_cluster).get("tokenSerial") == serial + 1, 60
            )
            again = me.kubectl(agent, kubectl_bin, context, "get", "pods")
            assert again.returncode == 0, again.stderr
            assert wait_for(lambda: not token_works(kind_cluster, old), 30)

            kubectl("delete", "bka", "viewers", "-n", "demo", "--timeout=60s", timeout=90)
            for kind, name in (
                ("serviceaccount", "viewers-boundary-access"),
                ("rolebinding", "viewers-boundary-access"),
            ):
                assert name not in kubectl("get", kind, "-n", "demo", "-o", "name")
            for kind, key in (("targets", "targetId"), ("roles", "roleId")):
                with pytest.raises(CommandFailed):
                    boundary_cli(kind, "read", "-id", status[key])
            time.sleep(5)  # the agent's next alias refresh
            gone = me.kubectl(agent, kubectl_bin, context, "get", "pods")
            assert f"{KUBE} is not among the aliases your Boundary user may use" in gone.stderr
        finally:
            agent.stop()
            boundary_cli("users", "delete", "-id", outsider.user_id)


def token_works(cluster: KindCluster, token: str) -> bool:
    """Whether the kind apiserver takes this bearer token (asked directly, not via Boundary)."""
    config = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    config["users"] = [{"name": "token", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "token"
    path = cluster.kubeconfig.with_name("token.kubeconfig")
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    answer = subprocess.run(
        [cluster.kubectl.binary, "--kubeconfig", str(path), "get", "pods", "-n", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return answer.returncode == 0


def test_scaling_down_deregisters_the_removed_worker(
    kind_cluster: KindCluster, boundary_cli: BoundaryCLI
) -> None:
    kubectl = kind_cluster.kubectl
    kubectl(
        "patch", "bpw", "edge", "-n", "demo", "--type", "merge", "-p", '{"spec": {"replicas": 2}}'
    )

    def two_ready() -> bool:
        status = worker_status(kind_cluster)
        return condition(status, "Ready") == "True" and len(status.get("replicas", [])) == 2

    assert wait_for(two_ready, 240), worker_status(kind_cluster)
    removed = worker_status(kind_cluster)["replicas"][1]["workerId"]
    assert boundary_worker(boundary_cli, removed) is not None
    kubectl(
        "patch", "bpw", "edge", "-n", "demo", "--type", "merge", "-p", '{"spec": {"replicas": 1}}'
    )
    assert wait_for(lambda: boundary_worker(boundary_cli, removed) is None, 180), (
        "the removed replica's Boundary worker is still registered"
    )
    assert wait_for(lambda: "edge-1" not in kubectl("get", "pods", "-n", "demo", "-o", "name"), 60)
    assert len(worker_status(kind_cluster)["replicas"]) == 1


def test_helm_uninstall_drains_every_worker(
    kind_cluster: KindCluster, boundary_cli: BoundaryCLI
) -> None:
    (replica,) = worker_status(kind_cluster)["replicas"]
    kind_cluster.helm(
        "uninstall",
        "boundary-worker",
        "-n",
        "boundary-system",
        "--kube-context",
        f"kind-{CLUSTER}",
        "--wait",
        "--timeout",
        "5m",
    )
    assert "edge" not in kind_cluster.kubectl("get", "bpw", "-n", "demo", "-o", "name")
    assert boundary_worker(boundary_cli, replica["workerId"]) is None
    assert our_boundary_workers(boundary_cli) == []


@pytest.fixture(autouse=True)
def _report_on_failure(request: pytest.FixtureRequest, kind_cluster: KindCluster) -> Any:
    """On failure, what a person would look at first: pods, the worker's status and Events."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for args in (
            ("get", "pods", "-A", "-o", "wide"),
            ("get", "bpw", "-A", "-o", "yaml"),
            ("get", "events", "-A", "--sort-by=.lastTimestamp"),
            ("logs", "-n", "demo", "edge-0", "--tail", "40"),
            ("logs", "-n", "boundary-system", "-l", OPERATOR, "--tail", "40"),
        ):
            try:
                print(kind_cluster.kubectl(*args))
            except CommandFailed as exc:
                print(exc)
