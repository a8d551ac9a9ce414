"""Service annotations to desired targets: pure rules, every problem found before any call."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from boundary_operator.services.desired import (
    Principal,
    SyncSettings,
    alias_problem,
    desired_targets,
)
from boundary_operator.services.ownership import Owner

SETTINGS = SyncSettings(cluster_name="prod", default_scope="p_1234567890")


def svc(annotations: dict[str, str], ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "db",
            "namespace": "data",
            "uid": "u-1",
            "annotations": {"boundaryproject.io/expose": "true", **annotations},
        },
        "spec": {
            "clusterIP": "10.96.0.20",
            "ports": ports
            or [
                {"name": "pg", "port": 5432, "protocol": "TCP"},
                {"name": "metrics", "port": 9187},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ],
        },
    }


def secret(**data: str) -> dict[str, Any]:
    return {
        "metadata": {"resourceVersion": "7"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_defaults_give_one_target_per_tcp_port() -> None:
    desired = desired_targets(svc({}), SETTINGS, secrets={}, worker_names=set())
    assert desired.problems == []
    assert [(t.port, t.alias) for t in desired.targets] == [
        (5432, "db.data.prod"),
        (9187, "metrics.db.data.prod"),
    ]
    target = desired.targets[0]
    assert target.address == "db.data.svc.cluster.local"
    assert target.scope == "p_1234567890"
    assert target.egress_worker_filter == (
        '"data" in "/tags/namespace" and "kubernetes" in "/tags/type"'
        ' and "true" not in "/tags/draining"'
    )


def test_annotations_select_ports_worker_scope_limits_and_credentials() -> None:
    desired = desired_targets(
        svc(
            {
                "boundaryproject.io/alias": "pg.example",
                "boundaryproject.io/ports": "pg",
                "boundaryproject.io/worker": "edge",
                "boundaryproject.io/scope": "Databases",
                "boundaryproject.io/credentials-secret": "creds",
                "boundaryproject.io/session-max-seconds": "600",
                "boundaryproject.io/session-connection-limit": "-1",
            }
        ),
        SyncSettings(cluster_name="prod", address_mode="clusterip"),
        secrets={"creds": secret(username="app", password="pw")},
        worker_names={"edge"},
    )
    assert desired.problems == []
    [target] = desired.targets
    assert (target.alias, target.port, target.scope, target.address) == (
        "pg.example",
        5432,
        "Databases",
        "10.96.0.20",
    )
    assert target.egress_worker_filter.startswith('"edge" in "/tags/boundary_pki_worker"')
    assert target.egress_worker_filter.endswith(' and "true" not in "/tags/draining"')
    assert (target.session_max_seconds, target.session_connection_limit) == (600, -1)
    assert target.credentials is not None
    assert (target.credentials.username, target.credentials.resource_version) == ("app", "7")
    assert "pw" not in repr(target)


def test_every_problem_is_reported_at_once_and_nothing_is_desired() -> None:
    desired = desired_targets(
        svc(
            {
                "boundaryproject.io/alias": "Bad_Alias.example",
                "boundaryproject.io/ports": "pg,nope",
                "boundaryproject.io/worker": "ghost",
                "boundaryproject.io/credentials-secret": "creds",
                "boundaryproject.io/session-max-seconds": "soon",
            }
        ),
        SyncSettings(cluster_name="prod"),
        secrets={"creds": secret(username="app")},
        worker_names=set(),
    )
    assert desired.targets == []
    text = " | ".join(desired.problems)
    for fragment in (
        "'nope'",
        "Bad_Alias",
        "'ghost'",
        "lacks password",
        "'soon'",
        "no project given",
    ):
        assert fragment in text


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("db.example", True),
        ("a", True),
        ("x" * 63 + ".io", True),
        ("Upper.example", False),
        ("under_score.io", False),
        ("host.123", False),
        ("-lead.io", False),
        ("a..b", False),
        ("x" * 64 + ".io", False),
        ("a." * 127 + "b", False),
    ],
)
def test_alias_syntax(value: str, ok: bool) -> None:
    assert (alias_problem(value) is None) is ok


def test_ownership_marker_round_trips_and_ignores_others() -> None:
    owner = Owner("prod", "data", "db", "u-1", "pg")
    assert Owner.parse(owner.description("secret-rv=7")) == owner
    assert Owner.parse("made by hand") is None
    assert Owner.parse("boundary-k8s cluster=prod") is None


def test_grant_annotations_give_principals_by_id_or_name_in_order_without_repeats() -> None:
    desired = desired_targets(
        svc(
            {
                "boundaryproject.io/grant-groups": " ops , g_1234567890,mgoidc_abc,ops,",
                "boundaryproject.io/grant-users": "u_auth, Alice Smith",
            }
        ),
        SETTINGS,
        secrets={},
        worker_names=set(),
    )
    assert desired.problems == []
    assert desired.grants == (
        Principal("group", "ops"),
        Principal("group", "g_1234567890"),
        Principal("group", "mgoidc_abc"),
        Principal("user", "u_auth"),
        Principal("user", "Alice Smith"),
    )
    assert [p.is_id for p in desired.grants] == [False, True, True, True, False]
    no_grants = desired_targets(svc({}), SETTINGS, secrets={}, worker_names=set())
    assert no_grants.grants is None
    emptied = svc({"boundaryproject.io/grant-users": ""})
    assert desired_targets(emptied, SETTINGS, secrets={}, worker_names=set()).grants == ()


def test_grant_annotations_refuse_ids_of_the_wrong_kind_and_everyone() -> None:
    desired = desired_targets(
        svc(
            {
                "boundaryproject.io/grant-groups": "u_1234567890",
                "boundaryproject.io/grant-users": "g_1234567890,u_anon,u_recovery",
            }
        ),
        SETTINGS,
        secrets={},
        worker_names=set(),
    )
    assert desired.targets == []
    assert desired.problems == [
        "boundaryproject.io/grant-groups: 'u_1234567890' is a user id; users go in "
        "boundaryproject.io/grant-users",
        "boundaryproject.io/grant-users: 'g_1234567890' is a group id; groups go in "
        "boundaryproject.io/grant-groups",
        "boundaryproject.io/grant-users: 'u_anon' is anyone, logged in or not: access is not "
        "granted to it",
        "boundaryproject.io/grant-users: 'u_recovery' (the recovery KMS user) cannot hold a role",
    ]


def test_a_role_owner_has_no_port() -> None:
    owner = Owner("prod", "data", "db", "u-1")
    assert owner.description() == "boundary-k8s cluster=prod namespace=data service=db uid=u-1"
    assert Owner.parse(owner.description()) == owner
