"""Draining and reloading in real pods (issue 18): a BoundaryPKIWorker `relay` of two workers,
each with its own public address (a node port per pod, through $(POD_INDEX)), and an echo
backend published through it. The official `boundary connect` carries a stream from the host
through worker 1 while worker 1 is scaled away: the stream completes intact, no new session is
placed on worker 1 while it drains, then worker 1 is deregistered. Then a tag change reaches the
running worker without a restart, and an open session survives it.

Its own namespace, set up and torn down here; the install journey (test_kind_journey.py) runs
after it on the same cluster."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kind_harness import WORKER_UID, KindCluster, boundary_worker

from boundary_api.authdata import decode_authorization_token
from boundary_devstack.clients import BoundaryCLI, CommandFailed
from boundary_devstack.echo import stream_through_boundary
from boundary_devstack.stack import StackEnv, wait_for

NAMESPACE = "drain"
NODE_PORT_BASE = 30930
"""relay-N is published at node port NODE_PORT_BASE + N, its public address "...:3093N"."""
ECHO_PORT = 7007
ACTIVE_CONNECTIONS = "boundary_worker_proxy_websocket_active_connections"
# A forking echo server in Perl: the example backends' Debian images have Perl, and they are
# already loaded into the cluster.
ECHO = (
    "use IO::Socket::INET; $SIG{CHLD} = 'IGNORE';"
    f" my $s = IO::Socket::INET->new(LocalPort => {ECHO_PORT}, Listen => 16, ReuseAddr => 1)"
    " or die qq(listen: $!);"
    " while (1) { my $c = $s->accept or next;"
    " if (!fork) { close $s; while (sysread($c, my $b, 65536)) { syswrite($c, $b) or last }"
    " exit } close $c }"
)


def relay(cluster: KindCluster, stack_env: StackEnv) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "metadata": {"name": "relay", "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "registration": {"initialUpstreams": [stack_env.values["BOUNDARY_CLUSTER_ADDR"]]},
            # One node port per pod: 30930 for relay-0, 30931 for relay-1.
            "publicAddress": f"{cluster.node_ip}:3093$(POD_INDEX)",
            "drain": {"timeout": "3m"},
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
            "podTemplate": {"securityContext": {"runAsUser": WORKER_UID}},
        },
    }


def backend(image: str) -> list[dict[str, Any]]:
    labels = {"app": "echo"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "echo", "namespace": NAMESPACE},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "echo",
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["perl", "-e", ECHO],
                                "ports": [{"containerPort": ECHO_PORT}],
                            }
                        ]
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "echo",
                "namespace": NAMESPACE,
                "annotations": {"boundaryproject.io/expose": "true"},
            },
            "spec": {"selector": labels, "ports": [{"name": "echo", "port": ECHO_PORT}]},
        },
        *(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"relay-{ordinal}-public", "namespace": NAMESPACE},
                "spec": {
                    "type": "NodePort",
                    "selector": {"statefulset.kubernetes.io/pod-name": f"relay-{ordinal}"},
                    "ports": [
                        {"port": 9202, "targetPort": 9202, "nodePort": NODE_PORT_BASE + ordinal}
                    ],
                },
            }
            for ordinal in (0, 1)
        ),
    ]


def patch(cluster: KindCluster, spec: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch",
        "bpw",
        "relay",
        "-n",
        NAMESPACE,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": spec}),
    )


def status(cluster: KindCluster) -> dict[str, Any]:
    body = cluster.kubectl.get_json("bpw", "relay", "-n", NAMESPACE)
    found: dict[str, Any] = body.get("status") or {}
    return found


def ready_replicas(cluster: KindCluster) -> int:
    replicas = status(cluster).get("replicas") or []
    return sum(r.get("upstreamConnectionState") == "READY" for r in replicas)


def target_of_echo(cluster: KindCluster) -> str:
    annotation = cluster.kubectl(
        "get",
        "service",
        "echo",
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.metadata.annotations.boundaryproject\\.io/targets}",
    )
    (target_id,) = json.loads(annotation) if annotation else [""]
    return str(target_id)


def workers_offered(cli: BoundaryCLI, target: str) -> list[str]:
    """The worker addresses a new session of `target` may use; the session is cancelled."""
    item = cli("targets", "authorize-session", "-id", target)["item"]
    cli("sessions", "cancel", "-id", item["session_id"])
    return decode_authorization_token(item["authorization_token"]).worker_addresses


def session_first_through(cli: BoundaryCLI, target: str, address: str) -> Callable[[], str]:
    """An authorization token of a session whose first worker (the one `boundary connect`
    dials) is at `address`: the controller lists a session's workers in random order."""

    def token() -> str:
        for _ in range(30):
            item = cli("targets", "authorize-session", "-id", target)["item"]
            data = decode_authorization_token(item["authorization_token"])
            if data.worker_addresses[0] == address:
                return str(item["authorization_token"])
            cli("sessions", "cancel", "-id", item["session_id"])
        raise AssertionError(f"no session put {address} first in 30 tries")

    return token


def active_connections(cluster: KindCluster, pod: str) -> float:
    """From the worker's own metrics (its ops port, through the apiserver's pod proxy)."""
    metrics = cluster.kubectl(
        "get", "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}:9203/proxy/metrics"
    )
    for line in metrics.splitlines():
        if line.startswith(ACTIVE_CONNECTIONS + " "):
            return float(line.split()[1])
    raise AssertionError(f"{pod} has no {ACTIVE_CONNECTIONS}")


def pod_or_none(cluster: KindCluster, pod: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = cluster.kubectl.get_json("pod", pod, "-n", NAMESPACE)
    except CommandFailed:
        return None
    return found


def events(cluster: KindCluster, reason: str) -> list[str]:
    items = cluster.kubectl.get_json(
        "events", "-n", NAMESPACE, "--field-selector", f"reason={reason}"
    )["items"]
    return [str(e["message"]) for e in items]


@pytest.fixture(scope="module")
def relay_workers(
    kind_cluster: KindCluster, stack_env: StackEnv, boundary_cli: BoundaryCLI
) -> Iterator[str]:
    """The relay BoundaryPKIWorker with both workers connected and the echo Service
    published: the echo target's id. Torn down at the end (drained, deregistered)."""
    kubectl = kind_cluster.kubectl
    kubectl.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    image = kubectl(
        "get", "deployment", "web", "-n", "demo", "-o", "jsonpath={..containers[0].image}"
    )
    for manifest in [*backend(image), relay(kind_cluster, stack_env)]:
        kubectl.apply(manifest)
    started = time.monotonic()
    try:
        assert wait_for(lambda: ready_replicas(kind_cluster) == 2, 300), status(kind_cluster)
        assert wait_for(lambda: target_of_echo(kind_cluster) != "", 120)
        target = target_of_echo(kind_cluster)
        kind_cluster.record("relay: apply to both workers ready", time.monotonic() - started)
        yield target
    finally:
        ids = [r.get("workerId") for r in status(kind_cluster).get("replicas") or []]
        kubectl("delete", "bpw", "relay", "-n", NAMESPACE, "--wait=true", timeout=300)
        for worker_id in filter(None, ids):
            assert boundary_worker(boundary_cli, worker_id) is None
        kubectl("delete", "namespace", NAMESPACE, "--wait=true", timeout=300)


def test_a_stream_through_a_worker_scaled_away_completes_and_nothing_new_lands_on_it(
    kind_cluster: KindCluster,
    boundary_cli: BoundaryCLI,
    relay_workers: str,
    tmp_path: Path,
) -> None:
    target = relay_workers
    worker_1 = status(kind_cluster)["replicas"][1]["workerId"]
    address_1 = f"{kind_cluster.node_ip}:{NODE_PORT_BASE + 1}"
    assert boundary_worker(boundary_cli, worker_1)["address"] == address_1  # type: ignore[index]
    token = session_first_through(boundary_cli, target, address_1)
    with stream_through_boundary(boundary_cli, token, tmp_path) as stream:
        for _ in range(5):
            stream.exchange()
        # A connection misread on an earlier try of the stream may still be counted for a
        # moment (the worker closes it after the websocket close handshake).
        assert wait_for(lambda: active_connections(kind_cluster, "relay-1") == 1, 15)
        assert active_connections(kind_cluster, "relay-0") == 0

        scaled = time.monotonic()
        patch(kind_cluster, {"replicas": 1})

        def marked() -> bool:
            stream.exchange()
            record = boundary_worker(boundary_cli, worker_1) or {}
            return (record.get("api_tags") or {}).get("draining") == ["true"]

        assert wait_for(marked, 30, 0.5), "worker 1 was not marked draining"
        mark_seconds = time.monotonic() - scaled
        pod = pod_or_none(kind_cluster, "relay-1")
        assert pod is not None
        assert pod["metadata"].get("deletionTimestamp"), "relay-1 is not stopping"

        # While it drains (for as long as the stream is open): the stream flows, worker 1
        # serves it, and no new session may use worker 1.
        sessions = 0
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            stream.exchange()
            offered = workers_offered(boundary_cli, target)
            assert address_1 not in offered, offered
            sessions += 1
            time.sleep(1)
        assert pod_or_none(kind_cluster, "relay-1") is not None, "relay-1 went while in use"
        assert active_connections(kind_cluster, "relay-1") == 1
        for _ in range(20):
            stream.exchange()
        exchanges, echoed = stream.exchanges, stream.bytes_echoed
        closed = time.monotonic()
    # The stream is done: the pod stops, then its Boundary worker is deregistered.
    assert wait_for(lambda: pod_or_none(kind_cluster, "relay-1") is None, 60)
    pod_seconds = time.monotonic() - closed
    assert wait_for(lambda: boundary_worker(boundary_cli, worker_1) is None, 60)
    deregistered_seconds = time.monotonic() - closed
    assert any("relay-1 is stopping" in m for m in events(kind_cluster, "Draining"))
    assert wait_for(lambda: any(worker_1 in m for m in events(kind_cluster, "Deregistered")), 30)
    kind_cluster.record("drain: scaled down to worker 1 marked draining", mark_seconds)
    kind_cluster.record("drain: stream closed to relay-1 gone", pod_seconds)
    kind_cluster.record("drain: stream closed to worker 1 deregistered", deregistered_seconds)
    print(
        f"stream: {exchanges} exchanges, {echoed} bytes echoed intact; {sessions} new sessions "
        f"while draining, none offered worker 1; marked {mark_seconds:.1f} s after the scale "
        f"down; pod gone {pod_seconds:.1f} s and worker deregistered {deregistered_seconds:.1f} s "
        "after the stream closed"
    )


def test_a_tag_change_reaches_the_running_worker_and_an_open_session_survives(
    kind_cluster: KindCluster,
    boundary_cli: BoundaryCLI,
    relay_workers: str,
    tmp_path: Path,
) -> None:
    kubectl, target = kind_cluster.kubectl, relay_workers
    assert wait_for(lambda: len(status(kind_cluster).get("replicas") or []) == 1, 60)
    (replica,) = status(kind_cluster)["replicas"]
    worker_0, revision = replica["workerId"], replica["configRevision"]
    before = kubectl.get_json("pod", "relay-0", "-n", NAMESPACE)
    address_0 = f"{kind_cluster.node_ip}:{NODE_PORT_BASE}"
    token = session_first_through(boundary_cli, target, address_0)
    with stream_through_boundary(boundary_cli, token, tmp_path) as stream:
        changed = time.monotonic()
        patch(kind_cluster, {"tags": {"stage": "reloaded"}})

        def reloaded() -> bool:
            stream.exchange()  # the session's connection keeps flowing meanwhile
            record = boundary_worker(boundary_cli, worker_0) or {}
            return (record.get("config_tags") or {}).get("stage") == ["reloaded"]

        assert wait_for(reloaded, 240, 1), "the new tag never reached the worker record"
        seconds = time.monotonic() - changed
        for _ in range(10):
            stream.exchange()
        exchanges = stream.exchanges
    after = kubectl.get_json("pod", "relay-0", "-n", NAMESPACE)
    assert after["metadata"]["uid"] == before["metadata"]["uid"], "the pod was replaced"
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    record = boundary_worker(boundary_cli, worker_0) or {}
    new_revision = record["config_tags"]["config_revision"]
    assert new_revision != [revision]
    assert wait_for(
        lambda: status(kind_cluster)["replicas"][0]["configRevision"] == new_revision[0], 30
    )
    assert wait_for(
        lambda: any("relay-0" in m for m in events(kind_cluster, "ConfigurationLoaded")), 30
    )
    assert not events(kind_cluster, "NotReloaded")
    kind_cluster.record("reload: tag change to the tag in the worker record", seconds)
    print(
        f"the tag reached the running worker {seconds:.1f} s after the change ({exchanges} echoes)"
    )


@pytest.fixture(autouse=True)
def _report_on_failure(request: pytest.FixtureRequest, kind_cluster: KindCluster) -> Any:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for args in (
            ("get", "pods", "-n", NAMESPACE, "-o", "wide"),
            ("get", "bpw", "relay", "-n", NAMESPACE, "-o", "yaml"),
            ("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp"),
            ("logs", "-n", NAMESPACE, "relay-1", "--tail", "30"),
            (
                "logs",
                "-n",
                "boundary-system",
                "-l",
                "app.kubernetes.io/name=boundary-worker",
                "--tail",
                "60",
            ),
        ):
            try:
                print(kind_cluster.kubectl(*args))
            except CommandFailed as exc:
                print(exc)
