"""Every admission rule of BoundaryKubernetesAccess, through kubectl against the real apiserver:
one spec it accepts and one it rejects, with a message that names the field; and the admission
policy that lets a person grant through Boundary only a role they may bind themselves."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from boundary_devstack.clients import CommandFailed, Kubectl
from boundary_devstack.stack import wait_for

NAMESPACE = f"bka-admission-{uuid.uuid4().hex[:6]}"
PERSON = f"alice-{uuid.uuid4().hex[:6]}"
"""May create BoundaryKubernetesAccesses in NAMESPACE and bind ClusterRole view there only."""
VALID: dict[str, Any] = {
    "alias": "ro.team.kube",
    "roleRef": {"kind": "ClusterRole", "name": "view"},
    "principals": {"users": ["u_1234567890"]},
}


def spec(**changes: Any) -> dict[str, Any]:
    return {k: v for k, v in {**VALID, **changes}.items() if v is not None}


# rule: (accepted spec, rejected spec, text the rejection must contain)
RULES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "alias is required": (spec(), spec(alias=None), "spec.alias: Required value"),
    "alias is DNS labels": (
        spec(alias="a-b.c1.kube"),
        spec(alias="Bad_Alias.kube"),
        "spec.alias",
    ),
    "alias does not end in digits": (
        spec(alias="kube.10a"),
        spec(alias="kube.10"),
        "spec.alias must not end in an all-digit label",
    ),
    "role kind is Role or ClusterRole": (
        spec(roleRef={"kind": "Role", "name": "pod-reader"}),
        spec(roleRef={"kind": "Group", "name": "x"}),
        "spec.roleRef.kind",
    ),
    "role name is required": (
        spec(),
        spec(roleRef={"kind": "ClusterRole"}),
        "spec.roleRef.name: Required value",
    ),
    "a Role is not bound cluster-wide": (
        spec(clusterWide=True),
        spec(roleRef={"kind": "Role", "name": "pod-reader"}, clusterWide=True),
        "spec.clusterWide: a Role binds only in its own namespace",
    ),
    "principals are required": (spec(), spec(principals=None), "spec.principals: Required"),
    "at least one principal": (
        spec(principals={"groups": ["g_1234567890"]}),
        spec(principals={"users": []}),
        "spec.principals: name at least one user, group or managed group",
    ),
    "user ids": (
        spec(principals={"users": ["u_abc123"]}),
        spec(principals={"users": ["alice"]}),
        "spec.principals.users[0]",
    ),
    "group ids": (
        spec(principals={"groups": ["g_abc123"]}),
        spec(principals={"groups": ["u_abc123"]}),
        "spec.principals.groups[0]",
    ),
    "managed group ids": (
        spec(principals={"managedGroups": ["mgldap_abc123", "mgoidc_x1"]}),
        spec(principals={"managedGroups": ["mg_abc123"]}),
        "spec.principals.managedGroups[0]",
    ),
    "one of worker name and filter (both)": (
        spec(worker={"name": "edge"}),
        spec(worker={"name": "edge", "filter": '"x" in "/tags/y"'}),
        "spec.worker: give exactly one of name and filter",
    ),
    "one of worker name and filter (neither)": (
        spec(worker={"filter": '"x" in "/tags/y"'}),
        spec(worker={}),
        "spec.worker: give exactly one of name and filter",
    ),
    "worker name is a DNS name": (
        spec(worker={"name": "edge-1"}),
        spec(worker={"name": "Edge 1"}),
        "spec.worker.name",
    ),
    "token lifetime at least 10 minutes": (
        spec(tokenLifetime="10m"),
        spec(tokenLifetime="9m59s"),
        "spec.tokenLifetime must be between 10m and 24h",
    ),
    "token lifetime at most a day": (
        spec(tokenLifetime="24h"),
        spec(tokenLifetime="24h1s"),
        "spec.tokenLifetime must be between 10m and 24h",
    ),
    "token lifetime is a duration": (
        spec(tokenLifetime="1h30m"),
        spec(tokenLifetime="1d"),
        "spec.tokenLifetime",
    ),
}


def manifest(body: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryKubernetesAccess",
        "metadata": {"name": name or f"adm-{uuid.uuid4().hex[:8]}", "namespace": NAMESPACE},
        "spec": body,
    }


def dry_run(kubectl: Kubectl, body: dict[str, Any], *extra: str, name: str | None = None) -> str:
    return kubectl(
        "create",
        "--dry-run=server",
        *extra,
        "-f",
        "-",
        input_text=json.dumps(manifest(body, name)),
    )


@pytest.fixture(scope="module")
def namespace(crds: None, kubectl: Kubectl) -> Iterator[str]:
    """The namespace, where PERSON may create accesses and bind ClusterRole view only; once the
    admission policy is enforced (a new one takes a moment)."""
    kubectl("create", "namespace", NAMESPACE)
    rbac = "rbac.authorization.k8s.io/v1"
    role = {
        "apiVersion": rbac,
        "kind": "Role",
        "metadata": {"name": "access-maker", "namespace": NAMESPACE},
        "rules": [
            {
                "apiGroups": ["workers.boundaryproject.io"],
                "resources": ["boundarykubernetesaccesses"],
                "verbs": ["create"],
            },
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["clusterroles"],
                "verbs": ["bind"],
                "resourceNames": ["view"],
            },
        ],
    }
    binding = {
        "apiVersion": rbac,
        "kind": "RoleBinding",
        "metadata": {"name": "access-maker", "namespace": NAMESPACE},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "access-maker",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": PERSON}],
    }
    kubectl.apply({"apiVersion": "v1", "kind": "List", "items": [role, binding]})
    admin = spec(roleRef={"kind": "ClusterRole", "name": "admin"})

    def enforced() -> bool:
        try:
            dry_run(kubectl, admin, f"--as={PERSON}")
        except CommandFailed as refused:
            return "you may not bind ClusterRole admin" in refused.stderr
        return False

    assert wait_for(enforced, timeout=30)
    yield NAMESPACE
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_accepts_and_rejects(namespace: str, kubectl: Kubectl, rule: str) -> None:
    accepted, rejected, message = RULES[rule]
    assert "created (server dry run)" in dry_run(kubectl, accepted)
    with pytest.raises(CommandFailed) as caught:
        dry_run(kubectl, rejected)
    assert message in caught.value.stderr, caught.value.stderr


def test_the_name_fits_a_label(namespace: str, kubectl: Kubectl) -> None:
    assert "created (server dry run)" in dry_run(kubectl, spec(), name="a" * 63)
    with pytest.raises(CommandFailed) as caught:
        dry_run(kubectl, spec(), name="a" * 64)
    assert "metadata.name must be at most 63 characters" in caught.value.stderr


def test_the_token_lifetime_defaults_to_an_hour(namespace: str, kubectl: Kubectl) -> None:
    created = json.loads(
        kubectl(
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
            input_text=json.dumps(manifest(spec())),
        )
    )
    assert (created["spec"]["tokenLifetime"], created["spec"]["clusterWide"]) == ("1h", False)


def test_a_person_grants_only_what_they_may_bind_themselves(
    namespace: str, kubectl: Kubectl
) -> None:
    as_person = f"--as={PERSON}"
    assert "created (server dry run)" in dry_run(kubectl, spec(), as_person)
    with pytest.raises(CommandFailed) as caught:
        dry_run(kubectl, spec(roleRef={"kind": "ClusterRole", "name": "admin"}), as_person)
    assert (
        f"spec.roleRef: you may not bind ClusterRole admin in namespace {NAMESPACE}"
        in caught.value.stderr
    )
    with pytest.raises(CommandFailed) as caught:
        dry_run(kubectl, spec(clusterWide=True), as_person)
    assert "spec.roleRef: you may not bind ClusterRole view cluster-wide" in caught.value.stderr
