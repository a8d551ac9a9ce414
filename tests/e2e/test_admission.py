"""Every admission rule of BoundaryPKIWorker, through kubectl against the real apiserver: one
spec it accepts and one it rejects, with a message that names the field."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from boundary_devstack.clients import CommandFailed, Kubectl

REPO = Path(__file__).resolve().parents[2]
UPSTREAMS = {"initialUpstreams": ["controller.boundary:9201"]}
HCP = {"hcpBoundaryClusterID": "4a3a8bd1-3f32-4bd4-a3cc-8bbf2d4b2e56"}

# rule: (accepted spec, rejected spec, text the rejection must contain)
RULES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "registration is required": (
        {"registration": UPSTREAMS},
        {},
        "spec.registration: Required value",
    ),
    "exactly one upstream kind (both)": (
        {"registration": HCP},
        {"registration": {**HCP, **UPSTREAMS}},
        "exactly one of spec.registration.hcpBoundaryClusterID and "
        "spec.registration.initialUpstreams",
    ),
    "exactly one upstream kind (neither)": (
        {"registration": UPSTREAMS},
        {"registration": {}},
        "exactly one of spec.registration.hcpBoundaryClusterID",
    ),
    "hcp cluster id is a uuid": (
        {"registration": HCP},
        {"registration": {"hcpBoundaryClusterID": "my-cluster"}},
        "spec.registration.hcpBoundaryClusterID",
    ),
    "upstreams are host:port": (
        {"registration": UPSTREAMS},
        {"registration": {"initialUpstreams": ["no-port"]}},
        "spec.registration.initialUpstreams[0]",
    ),
    "upstreams not empty": (
        {"registration": UPSTREAMS},
        {"registration": {"initialUpstreams": []}},
        "spec.registration.initialUpstreams",
    ),
    "token and secret ref exclusive": (
        {"registration": {**UPSTREAMS, "activationTokenSecretRef": {"name": "tokens"}}},
        {
            "registration": {
                **UPSTREAMS,
                "activationTokenSecretRef": {"name": "tokens"},
                "controllerGeneratedActivationToken": "neslat_x",
            }
        },
        "mutually exclusive",
    ),
    "plain token is for one replica": (
        {
            "replicas": 1,
            "registration": {**UPSTREAMS, "controllerGeneratedActivationToken": "neslat_x"},
        },
        {
            "replicas": 2,
            "registration": {**UPSTREAMS, "controllerGeneratedActivationToken": "neslat_x"},
        },
        "spec.replicas",
    ),
    "secret ref key is for one replica": (
        {
            "replicas": 3,
            "registration": {**UPSTREAMS, "activationTokenSecretRef": {"name": "tokens"}},
        },
        {
            "replicas": 3,
            "registration": {
                **UPSTREAMS,
                "activationTokenSecretRef": {"name": "tokens", "key": "token"},
            },
        },
        "spec.replicas",
    ),
    "secret ref name is a DNS name": (
        {"registration": {**UPSTREAMS, "activationTokenSecretRef": {"name": "tokens"}}},
        {"registration": {**UPSTREAMS, "activationTokenSecretRef": {"name": "Bad_Name"}}},
        "spec.registration.activationTokenSecretRef.name",
    ),
    "replicas not negative": (
        {"replicas": 0, "registration": UPSTREAMS},
        {"replicas": -1, "registration": UPSTREAMS},
        "spec.replicas",
    ),
    "replicas at most 50": (
        {"replicas": 50, "registration": UPSTREAMS},
        {"replicas": 51, "registration": UPSTREAMS},
        "spec.replicas",
    ),
    "image has no spaces": (
        {"image": "repo/boundary:0.21.1", "registration": UPSTREAMS},
        {"image": "repo/boundary 0.21.1", "registration": UPSTREAMS},
        "spec.image",
    ),
    "public address is host:port": (
        {"publicAddress": "worker.example.com:9202", "registration": UPSTREAMS},
        {"publicAddress": "worker.example.com", "registration": UPSTREAMS},
        "spec.publicAddress",
    ),
    "public address may expand the pod's name and ordinal": (
        {"publicAddress": "w-$(POD_INDEX).example.com:3092$(POD_INDEX)", "registration": UPSTREAMS},
        {"publicAddress": "w-$(HOME).example.com:9202", "registration": UPSTREAMS},
        "spec.publicAddress",
    ),
    "drain timeout is a duration": (
        {"drain": {"timeout": "1h30m"}, "registration": UPSTREAMS},
        {"drain": {"timeout": "5 minutes"}, "registration": UPSTREAMS},
        "spec.drain.timeout",
    ),
    "drain timeout is at most 24h": (
        {"drain": {"timeout": "24h"}, "registration": UPSTREAMS},
        {"drain": {"timeout": "24h1s"}, "registration": UPSTREAMS},
        "spec.drain.timeout must be at most 24h",
    ),
    "tag keys draining and config_revision are reserved": (
        {"tags": {"drain": "x"}, "registration": UPSTREAMS},
        {"tags": {"draining": "true"}, "registration": UPSTREAMS},
        "spec.tags keys draining and config_revision are reserved",
    ),
    "NodePort needs a public address": (
        {
            "service": {"type": "NodePort"},
            "publicAddress": "10.0.0.1:30202",
            "registration": UPSTREAMS,
        },
        {"service": {"type": "NodePort"}, "registration": UPSTREAMS},
        "spec.publicAddress",
    ),
    "node port needs a NodePort or LoadBalancer Service": (
        {
            "service": {"type": "NodePort", "nodePort": 30920},
            "publicAddress": "10.0.0.1:30920",
            "registration": UPSTREAMS,
        },
        {"service": {"nodePort": 30920}, "registration": UPSTREAMS},
        "spec.service.nodePort",
    ),
    "node port is a port": (
        {"service": {"type": "LoadBalancer", "nodePort": 30920}, "registration": UPSTREAMS},
        {"service": {"type": "LoadBalancer", "nodePort": 70000}, "registration": UPSTREAMS},
        "spec.service.nodePort",
    ),
    "pods run as a non-root user": (
        {"podTemplate": {"securityContext": {"runAsUser": 12345}}, "registration": UPSTREAMS},
        {"podTemplate": {"securityContext": {"runAsUser": 0}}, "registration": UPSTREAMS},
        "spec.podTemplate.securityContext.runAsUser",
    ),
    "service type is known": (
        {"service": {"type": "LoadBalancer"}, "registration": UPSTREAMS},
        {"service": {"type": "ExternalName"}, "registration": UPSTREAMS},
        "spec.service.type",
    ),
    "cpu is a quantity": (
        {"resources": {"requests": {"cpu": "250m"}}, "registration": UPSTREAMS},
        {"resources": {"requests": {"cpu": "a lot"}}, "registration": UPSTREAMS},
        "spec.resources.requests.cpu",
    ),
    "memory is a quantity": (
        {"resources": {"limits": {"memory": "512Mi"}}, "registration": UPSTREAMS},
        {"resources": {"limits": {"memory": "512MB"}}, "registration": UPSTREAMS},
        "spec.resources.limits.memory",
    ),
    "storage size is a binary quantity": (
        {"resources": {"storage": {"size": "5Gi"}}, "registration": UPSTREAMS},
        {"resources": {"storage": {"size": "5 gigs"}}, "registration": UPSTREAMS},
        "spec.resources.storage.size",
    ),
    "storage class is a DNS name": (
        {"resources": {"storage": {"storageClassName": "fast-ssd"}}, "registration": UPSTREAMS},
        {"resources": {"storage": {"storageClassName": "Fast SSD"}}, "registration": UPSTREAMS},
        "spec.resources.storage.storageClassName",
    ),
    "tag keys are plain": (
        {"tags": {"env.name": "x"}, "registration": UPSTREAMS},
        {"tags": {"bad key": "x"}, "registration": UPSTREAMS},
        "spec.tags keys",
    ),
    "tag values are strings or string lists": (
        {"tags": {"env": ["a", "b"], "team": "c"}, "registration": UPSTREAMS},
        {"tags": {"env": [1, 2]}, "registration": UPSTREAMS},
        "spec.tags values",
    ),
    "tag values are not numbers": (
        {"tags": {"port": "3"}, "registration": UPSTREAMS},
        {"tags": {"port": 3}, "registration": UPSTREAMS},
        "spec.tags values",
    ),
    "operator env names are reserved": (
        {"podTemplate": {"env": [{"name": "HTTP_PROXY", "value": "x"}]}, "registration": UPSTREAMS},
        {
            "podTemplate": {"env": [{"name": "BOUNDARY_ADDR", "value": "x"}]},
            "registration": UPSTREAMS,
        },
        "spec.podTemplate.env[0]",
    ),
    "env names are valid": (
        {"podTemplate": {"env": [{"name": "A_B", "value": "x"}]}, "registration": UPSTREAMS},
        {"podTemplate": {"env": [{"name": "1A B", "value": "x"}]}, "registration": UPSTREAMS},
        "spec.podTemplate.env[0].name",
    ),
}


def _manifest(spec: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "metadata": {"name": name or f"adm-{uuid.uuid4().hex[:8]}", "namespace": "default"},
        "spec": spec,
    }


def _dry_run(kubectl: Kubectl, spec: dict[str, Any]) -> str:
    return kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(_manifest(spec)))


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_accepts_and_rejects(admission: None, kubectl: Kubectl, rule: str) -> None:
    accepted, rejected, message = RULES[rule]
    assert "created (server dry run)" in _dry_run(kubectl, accepted)
    with pytest.raises(CommandFailed) as caught:
        _dry_run(kubectl, rejected)
    assert message in caught.value.stderr, caught.value.stderr


def test_storage_is_immutable_once_created(admission: None, kubectl: Kubectl) -> None:
    name = f"adm-{uuid.uuid4().hex[:8]}"
    spec: dict[str, Any] = {"registration": UPSTREAMS, "resources": {"storage": {"size": "1Gi"}}}
    kubectl("create", "-f", "-", input_text=json.dumps(_manifest(spec, name)))
    try:
        same = copy.deepcopy(spec)
        same["replicas"] = 0
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            input_text=json.dumps(_manifest(same, name)),
        )
        bigger = copy.deepcopy(same)
        bigger["resources"]["storage"]["size"] = "2Gi"
        with pytest.raises(CommandFailed) as caught:
            kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "-",
                input_text=json.dumps(_manifest(bigger, name)),
            )
        assert "spec.resources.storage is immutable" in caught.value.stderr
    finally:
        kubectl("delete", "bpw", name, "-n", "default", "--wait=false")
