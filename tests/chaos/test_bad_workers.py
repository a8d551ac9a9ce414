"""A corpus of invalid BoundaryPKIWorker specs, each sent to the real apiserver (server-side dry
run, strict field validation, the CRD's OpenAPI and CEL rules and the admission policy): every
one is rejected, and the message names the field that is wrong. Nothing is created."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from boundary_devstack.clients import CommandFailed, Kubectl

REPO = Path(__file__).resolve().parents[2]
UP = {"initialUpstreams": ["controller.boundary:9201"]}
HCP_ID = "4a3a8bd1-3f32-4bd4-a3cc-8bbf2d4b2e56"

# (spec, text naming the field that the rejection must contain)
CORPUS: list[tuple[Any, str]] = [
    ({"registration": UP, "replicas": "two"}, "spec.replicas"),
    ({"registration": UP, "replicas": 1.5}, "spec.replicas"),
    ({"registration": UP, "replicas": -3}, "spec.replicas"),
    ({"registration": UP, "replicas": 51}, "spec.replicas"),
    ({"registration": UP, "replicas": None, "image": ""}, "spec.image"),
    ({"registration": UP, "image": 7}, "spec.image"),
    ({"registration": UP, "image": "x" * 513}, "spec.image"),
    ({"registration": UP, "image": "repo/image:tag with space"}, "spec.image"),
    ({"registration": "controller:9201"}, "spec.registration"),
    (
        {"registration": {"initialUpstreams": "controller:9201"}},
        "spec.registration.initialUpstreams",
    ),
    ({"registration": {"initialUpstreams": [9201]}}, "spec.registration.initialUpstreams[0]"),
    ({"registration": {"initialUpstreams": ["h:1"] * 17}}, "spec.registration.initialUpstreams"),
    (
        {"registration": {"initialUpstreams": ["host:port"]}},
        "spec.registration.initialUpstreams[0]",
    ),
    ({"registration": {"initialUpstreams": ["a" * 260 + ":1"]}}, "initialUpstreams[0]"),
    ({"registration": {"hcpBoundaryClusterID": HCP_ID.upper()}}, "hcpBoundaryClusterID"),
    ({"registration": {"hcpBoundaryClusterID": 42}}, "spec.registration.hcpBoundaryClusterID"),
    (
        {"registration": {**UP, "controllerGeneratedActivationToken": ""}},
        "spec.registration.controllerGeneratedActivationToken",
    ),
    (
        {"registration": {**UP, "activationTokenSecretRef": {"key": "k"}}},
        "spec.registration.activationTokenSecretRef.name",
    ),
    (
        {"registration": {**UP, "activationTokenSecretRef": {"name": "Tokens_Secret"}}},
        "spec.registration.activationTokenSecretRef.name",
    ),
    (
        {"registration": {**UP, "activationTokenSecretRef": {"name": "t", "key": "a/b"}}},
        "spec.registration.activationTokenSecretRef.key",
    ),
    (
        {"registration": {**UP, "controllerGeneratedActivationToken": "neslat_x"}, "replicas": 3},
        "spec.replicas",
    ),
    ({"registration": UP, "publicAddress": "worker.example.com"}, "spec.publicAddress"),
    ({"registration": UP, "publicAddress": "worker example:9202"}, "spec.publicAddress"),
    ({"registration": UP, "service": {"type": "NodePort"}}, "spec.publicAddress"),
    ({"registration": UP, "service": {"type": "ExternalName"}}, "spec.service.type"),
    ({"registration": UP, "service": {"annotations": {"a": 1}}}, "spec.service.annotations.a"),
    (
        {"registration": UP, "resources": {"requests": {"cpu": "lots"}}},
        "spec.resources.requests.cpu",
    ),
    (
        {"registration": UP, "resources": {"limits": {"memory": "1GB"}}},
        "spec.resources.limits.memory",
    ),
    ({"registration": UP, "resources": {"storage": {"size": "1G"}}}, "spec.resources.storage.size"),
    (
        {"registration": UP, "resources": {"storage": {"storageClassName": "Fast SSD"}}},
        "spec.resources.storage.storageClassName",
    ),
    ({"registration": UP, "tags": ["type=edge"]}, "spec.tags"),
    ({"registration": UP, "tags": {"region": 5}}, "spec.tags"),
    ({"registration": UP, "tags": {"bad key!": "x"}}, "spec.tags"),
    ({"registration": UP, "tags": {"region": ["eu", 3]}}, "spec.tags"),
    (
        {"registration": UP, "podTemplate": {"env": [{"value": "x"}]}},
        "spec.podTemplate.env[0].name",
    ),
    (
        {"registration": UP, "podTemplate": {"env": [{"name": "BOUNDARY_ADDR"}]}},
        "spec.podTemplate.env[0]",
    ),
    ({"registration": UP, "podTemplate": {"env": [{"name": "1 BAD"}]}}, "env[0].name"),
    ({"registration": UP, "podTemplate": {"labels": {"a": True}}}, "spec.podTemplate.labels.a"),
    ({"registration": UP, "podTemplate": {"tolerations": {}}}, "spec.podTemplate.tolerations"),
    ({"registration": UP, "replica": 2}, 'unknown field "spec.replica"'),
    ({"registration": {**UP, "upstreams": ["x:1"]}}, 'unknown field "spec.registration.upstreams"'),
    ({}, "spec.registration"),
    ("not an object", "spec"),
]


@pytest.mark.parametrize(("spec", "field"), CORPUS, ids=[str(i) for i in range(len(CORPUS))])
def test_invalid_spec_is_rejected_naming_the_field(
    admission: None, kubectl: Kubectl, spec: Any, field: str
) -> None:
    manifest = {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "metadata": {"name": "corpus", "namespace": "default"},
        "spec": spec,
    }
    with pytest.raises(CommandFailed) as rejected:
        kubectl(
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            "-",
            input_text=json.dumps(manifest),
        )
    assert field in rejected.value.stderr, rejected.value.stderr
