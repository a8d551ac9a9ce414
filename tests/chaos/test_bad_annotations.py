"""A corpus of invalid Service annotations against the real operator (run under the Helm chart's
ServiceAccount) and the real controller: each Service gets exactly one Warning Event that names
the annotation, and the operator makes no write call to Boundary for any of them (counted on its
own /metrics, which sees every HTTP attempt)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from boundary_devstack.chart import operator_under_chart, scenario_values
from boundary_devstack.clients import Kubectl
from boundary_devstack.stack import StackEnv, wait_for
from boundary_operator.kube import FIELD_MANAGER

P = "boundaryproject.io/"
HTTP = [{"name": "http", "port": 80}]
RESYNC_SECONDS = 2

# (annotations besides expose=true, ports, headless, text the Warning must contain)
CORPUS: list[tuple[dict[str, str], list[dict[str, Any]], bool, str]] = [
    ({P + "alias": "Upper.Case"}, HTTP, False, P + "alias"),
    ({P + "alias": "under_score.example"}, HTTP, False, P + "alias"),
    ({P + "alias": "ends.in.123"}, HTTP, False, P + "alias"),
    ({P + "alias": "a" * 254}, HTTP, False, P + "alias"),
    ({P + "alias": "-lead.example"}, HTTP, False, P + "alias"),
    ({P + "alias": "trail-.example"}, HTTP, False, P + "alias"),
    ({P + "alias": "dots..example"}, HTTP, False, P + "alias"),
    ({P + "alias": "spa ce.example"}, HTTP, False, P + "alias"),
    ({P + "alias": "emoji\u00e9.example"}, HTTP, False, P + "alias"),
    ({P + "alias": "*.wild.example"}, HTTP, False, P + "alias"),
    ({P + "alias": "a/b.example"}, HTTP, False, P + "alias"),
    ({P + "alias": "x" * 64 + ".example"}, HTTP, False, P + "alias"),
    ({P + "ports": "nope"}, HTTP, False, P + "ports"),
    ({P + "ports": "8080"}, HTTP, False, P + "ports"),
    ({P + "ports": "http,missing"}, HTTP, False, P + "ports"),
    ({P + "ports": ","}, HTTP, False, "no TCP port"),
    ({P + "ports": "dns"}, [{"name": "dns", "port": 53, "protocol": "UDP"}], False, P + "ports"),
    ({}, [{"name": "dns", "port": 53, "protocol": "UDP"}], False, "no TCP port"),
    ({P + "worker": "ghost"}, HTTP, False, P + "worker"),
    ({P + "worker": ""}, HTTP, False, P + "worker"),
    ({P + "credentials-secret": "missing-secret"}, HTTP, False, P + "credentials-secret"),
    ({P + "credentials-secret": "no-password"}, HTTP, False, P + "credentials-secret"),
    ({P + "credentials-secret": "no-username"}, HTTP, False, P + "credentials-secret"),
    ({P + "session-max-seconds": "abc"}, HTTP, False, P + "session-max-seconds"),
    ({P + "session-max-seconds": "0"}, HTTP, False, P + "session-max-seconds"),
    ({P + "session-max-seconds": "-5"}, HTTP, False, P + "session-max-seconds"),
    ({P + "session-max-seconds": "1.5"}, HTTP, False, P + "session-max-seconds"),
    ({P + "session-max-seconds": ""}, HTTP, False, P + "session-max-seconds"),
    ({P + "session-connection-limit": "-2"}, HTTP, False, P + "session-connection-limit"),
    ({P + "session-connection-limit": "many"}, HTTP, False, P + "session-connection-limit"),
    ({}, HTTP, True, "no cluster IP"),
    ({P + "grant-groups": "u_1234567890"}, HTTP, False, P + "grant-groups"),
    ({P + "grant-users": "g_1234567890"}, HTTP, False, P + "grant-users"),
    ({P + "grant-users": "ops,u_anon"}, HTTP, False, P + "grant-users"),
    ({P + "grant-users": "u_recovery"}, HTTP, False, P + "grant-users"),
    (
        {P + "alias": "Bad", P + "session-connection-limit": "x", P + "worker": "ghost"},
        HTTP,
        False,
        P + "session-connection-limit",
    ),
]


def _service(namespace: str, index: int, entry: tuple[Any, ...]) -> dict[str, Any]:
    annotations, ports, headless, _ = entry
    spec: dict[str, Any] = {"ports": ports}
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"bad-{index}",
            "namespace": namespace,
            "annotations": {P + "expose": "true", **annotations},
        },
        "spec": spec,
    }


def _secrets(namespace: str) -> list[dict[str, Any]]:
    def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
        meta = {"name": name, "namespace": namespace}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": data}

    return [secret("no-password", {"username": "u"}), secret("no-username", {"password": "p"})]


def _boundary_writes(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = re.compile(
        r'^boundary_operator_boundary_requests_total\{code="\d+",method="(POST|PATCH|DELETE)"\} '
        r"(\S+)$",
        re.MULTILINE,
    )
    return int(sum(float(m.group(2)) for m in pattern.finditer(text)))


def _warnings(kubectl: Kubectl, namespace: str) -> dict[str, list[str]]:
    events = kubectl.get_json("events", "-n", namespace)["items"]
    found: dict[str, list[str]] = {}
    for event in events:
        # Only our operator's Events count: kube-apiserver's ClusterIP repair loop can warn about
        # the same Services ("ClusterIPNotAllocated") on a busy apiserver.
        if event.get("reportingComponent") != FIELD_MANAGER:
            continue
        if event["type"] == "Warning" and event["involvedObject"]["kind"] == "Service":
            found.setdefault(event["involvedObject"]["name"], []).append(
                f"{event['reason']}: {event['message']}"
            )
    return found


def test_each_bad_annotation_gets_one_warning_and_no_boundary_write(
    crds: None, stack_env: StackEnv, kubectl: Kubectl, tmp_path: Path
) -> None:
    namespace = f"badann-{uuid.uuid4().hex[:6]}"
    cluster = f"ba{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    with operator_under_chart(
        stack_env,
        namespace,
        f"bk-{cluster}",
        tmp_path,
        **scenario_values(stack_env, cluster, resyncSeconds=RESYNC_SECONDS),
    ) as (process, operator):
        for secret in _secrets(namespace):
            kubectl.apply(secret)
        # Logged in and through a first resync: from here on, every write would be ours to see.
        assert wait_for(lambda: "resync:" in process.log_tail(50), timeout=30), process.log_tail()
        writes_before = _boundary_writes(operator.metrics_port)
        assert writes_before > 0, "the login POST is counted: the metric is read right"
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [_service(namespace, i, e) for i, e in enumerate(CORPUS)],
            }
        )
        assert wait_for(lambda: len(_warnings(kubectl, namespace)) == len(CORPUS), timeout=60), (
            json.dumps(_warnings(kubectl, namespace), indent=1)
        )
        # Several resyncs later, still one Warning each: problems are reported once, not per pass.
        time.sleep(3 * RESYNC_SECONDS)
        warnings = _warnings(kubectl, namespace)
        for index, (_, _, _, expected) in enumerate(CORPUS):
            messages = warnings.get(f"bad-{index}", [])
            assert len(messages) == 1, (index, messages)
            assert messages[0].startswith("InvalidAnnotations: "), (index, messages)
            assert expected in messages[0], (index, messages)
        writes_after = _boundary_writes(operator.metrics_port)
        assert writes_after == writes_before, "an invalid Service caused a Boundary write"
        reasons = Counter(m.split(":")[0] for ms in warnings.values() for m in ms)
        assert reasons == Counter({"InvalidAnnotations": len(CORPUS)})
    kubectl("delete", "namespace", namespace, "--wait=false")
