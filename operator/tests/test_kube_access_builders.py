"""BoundaryKubernetesAccess's pure parts: the spec's rules (each naming its field), the
Kubernetes objects and the TokenRequest against golden files, the Boundary names, filter,
grants and markers, and when a token is rotated.

Regenerate the golden files after an intended change with UPDATE_GOLDEN=1."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

import pytest

from boundary_operator.kubeaccess import builders
from boundary_operator.kubeaccess.builders import AccessContext, TokenState
from boundary_operator.kubeaccess.spec import KubeAccessSpec, duration_seconds, spec_problems

GOLDEN = Path(__file__).parent / "golden" / "kube-access"
SPEC: dict[str, Any] = {
    "alias": "ro.team-a.kube",
    "roleRef": {"kind": "ClusterRole", "name": "view"},
    "principals": {"users": ["u_1234567890"], "managedGroups": ["mgoidc_abc"]},
}
T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def context(**spec: Any) -> AccessContext:
    return AccessContext(
        name="ro",
        namespace="team-a",
        uid="0b1c2d3e-0000-4000-8000-000000000000",
        cluster="prod",
        spec=KubeAccessSpec.model_validate({**SPEC, **spec}),
    )


def state(**overrides: Any) -> TokenState:
    values: dict[str, Any] = {
        "serial": 3,
        "service_account_uid": "sa-uid",
        "issued": T0,
        "expires": T0 + datetime.timedelta(hours=1),
        "digest": "d1",
    }
    return TokenState(**{**values, **overrides})


def test_objects_match_golden_files() -> None:
    ctx = context()
    cluster_wide = context(clusterWide=True)
    secret = builders.build_bound_secret(ctx, 3)
    secret["metadata"]["uid"] = "secret-uid"
    rendered = {
        "ServiceAccount.json": builders.build_service_account(ctx),
        "RoleBinding.json": builders.build_binding(ctx),
        "ClusterRoleBinding.json": builders.build_binding(cluster_wide),
        "Secret.json": builders.build_bound_secret(ctx, 3),
        "TokenRequest.json": builders.build_token_request(ctx, secret),
        "credential.json": builders.credential_object(
            ctx, "TOKEN", state(), "-----BEGIN CERTIFICATE-----\n"
        ),
        "boundary.json": {
            "name": ctx.boundary_name,
            "description": ctx.description(),
            "credential_description": ctx.description(**state().fields()),
            "egress_filter": ctx.egress_filter,
            "grants": builders.grants("ttcp_1234567890"),
        },
    }
    texts = {
        name: json.dumps(value, indent=2, sort_keys=True) + "\n" for name, value in rendered.items()
    }
    if os.environ.get("UPDATE_GOLDEN"):
        # Rewriting the golden files makes this test pass whatever the builders do: never in CI.
        assert not os.environ.get("CI"), "UPDATE_GOLDEN is for a developer's machine, not CI"
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (GOLDEN / name).write_text(text)
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(texts)
    for name, text in texts.items():
        assert (GOLDEN / name).read_text() == text, f"kube-access/{name} differs"


def test_egress_filter_per_worker_choice() -> None:
    assert context().egress_filter == (
        '"team-a" in "/tags/namespace" and "kubernetes" in "/tags/type"'
    )
    assert context(worker={"name": "edge"}).egress_filter == (
        '"edge" in "/tags/boundary_pki_worker" and "team-a" in "/tags/namespace"'
    )
    assert context(worker={"filter": '"x" in "/tags/y"'}).egress_filter == '"x" in "/tags/y"'


def test_ownership_markers_are_recognised_only_for_this_resource() -> None:
    ctx = context()
    assert ctx.owns(ctx.description())
    assert ctx.owns(ctx.description(**state().fields()))
    for foreign in ("", "hand made", ctx.description().replace("uid=0b1c", "uid=ffff")):
        assert not ctx.owns(foreign)
    other_cluster = AccessContext("ro", "team-a", ctx.uid, "staging", ctx.spec)
    assert not ctx.owns(other_cluster.description())


def test_token_state_round_trips_through_the_description() -> None:
    ctx = context()
    assert TokenState.parse(ctx.description(**state().fields())) == state()
    assert TokenState.parse(ctx.description()) is None
    assert (
        TokenState.parse(ctx.description(serial="x", sa="a", issued=1, expires=2, digest="d"))
        is None
    )


def test_rotation_at_two_thirds_and_the_grace_after() -> None:
    token = state()
    assert token.rotate_at == T0 + datetime.timedelta(minutes=40)
    assert token.revoke_after == T0 + datetime.timedelta(minutes=50)

    def reason(now: datetime.datetime, **kw: Any) -> str | None:
        args: dict[str, Any] = {
            "service_account_uid": "sa-uid",
            "bound_secret_exists": True,
            "digest": "d1",
            "requested": False,
            **kw,
        }
        return builders.rotation_reason(token, now, **args)

    assert reason(T0 + datetime.timedelta(minutes=39)) is None
    assert reason(T0 + datetime.timedelta(minutes=40)) is not None
    assert reason(T0, requested=True) == "rotation requested"
    assert reason(T0, service_account_uid="other") == "the ServiceAccount was made again"
    assert "bound Secret" in str(reason(T0, bound_secret_exists=False))
    assert "CA" in str(reason(T0, digest="d2"))
    assert (
        builders.rotation_reason(
            None, T0, service_account_uid="", bound_secret_exists=False, digest="", requested=False
        )
        == "no token yet"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1h", 3600), ("10m", 600), ("1h30m", 5400), ("600s", 600), ("2h0m10s", 7210)],
)
def test_durations(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "1d", "h", "1.5h", "-10m", "10 m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        duration_seconds(text)


# (spec changes, text the problem must contain)
BAD_SPECS: list[tuple[dict[str, Any], str]] = [
    ({"alias": "Bad_Alias"}, "spec.alias: must be lowercase DNS labels"),
    ({"alias": "kube.10"}, "spec.alias: must not end in an all-digit label"),
    ({"tokenLifetime": "5m"}, "spec.tokenLifetime: must be between 10m and 24h"),
    ({"tokenLifetime": "25h"}, "spec.tokenLifetime: must be between 10m and 24h"),
    ({"tokenLifetime": "1d"}, "spec.tokenLifetime: '1d' is not a duration"),
    ({"principals": {}}, "spec.principals: name at least one user"),
    ({"principals": {"users": ["g_1"]}}, "spec.principals: users: 'g_1' is not an id starting u_"),
    ({"worker": {}}, "spec.worker: give exactly one of name and filter"),
    ({"worker": {"name": "a", "filter": "b"}}, "spec.worker: give exactly one"),
    ({"roleRef": {"kind": "Group", "name": "x"}}, "spec.roleRef.kind"),
    ({"roleRef": {"kind": "Role", "name": "x"}, "clusterWide": True}, "clusterWide: a Role binds"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_SPECS, ids=[m for _, m in BAD_SPECS])
def test_bad_specs_name_the_field(changes: dict[str, Any], message: str) -> None:
    spec, problems = spec_problems({**SPEC, **changes})
    assert spec is None
    assert message in problems


def test_defaults() -> None:
    spec, problems = spec_problems(SPEC)
    assert spec is not None, problems
    assert (spec.token_lifetime, spec.lifetime_seconds, spec.cluster_wide) == ("1h", 3600, False)
    assert spec.principals.ids() == ["mgoidc_abc", "u_1234567890"]
