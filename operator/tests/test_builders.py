"""The manifest builders against golden files, and the rendered worker.hcl against pyhcl.

Regenerate the golden files after an intended change with UPDATE_GOLDEN=1."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import hcl  # type: ignore[import-untyped]
import pytest

from boundary_operator.workers import builders
from boundary_operator.workers.spec import WorkerSpec

GOLDEN = Path(__file__).parent / "golden"

CASES: dict[str, dict[str, Any]] = {
    "minimal": {"registration": {"initialUpstreams": ["controller.boundary:9201"]}},
    "full": {
        "replicas": 3,
        "image": "registry.example/boundary-worker:0.21.1",
        "registration": {"hcpBoundaryClusterID": "4a3a8bd1-3f32-4bd4-a3cc-8bbf2d4b2e56"},
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
            "storage": {"storageClassName": "fast", "size": "2Gi"},
        },
        "tags": {"type": ["edge", "kubernetes"], "region": "eu-west-1", "zz": ["1", "2"]},
        "service": {
            "type": "LoadBalancer",
            "nodePort": 30920,
            "annotations": {"lb.example/internal": "true"},
        },
        "podTemplate": {
            "labels": {"team": "net"},
            "annotations": {"a": "b"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "edge", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {}},
            "priorityClassName": "high",
            "securityContext": {"runAsUser": 12345, "runAsGroup": 0},
            "env": [{"name": "HTTP_PROXY", "value": "http://proxy:3128"}],
        },
    },
}


def context(case: str, **overrides: Any) -> builders.WorkerContext:
    return builders.WorkerContext(
        name="edge",
        namespace="net",
        uid="0b1c2d3e-0000-4000-8000-000000000000",
        spec=WorkerSpec.model_validate(CASES[case]),
        default_image="hashicorp/boundary:0.21.1",
        **overrides,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_match_golden_files(case: str) -> None:
    manifests = builders.build_all(context(case), {"edge-0": "neslat_fake"})
    rendered = {f"{m['kind']}-{m['metadata']['name']}.json": builders.dumps(m) for m in manifests}
    rendered["worker.hcl"] = builders.render_worker_hcl(context(case))
    directory = GOLDEN / case
    if os.environ.get("UPDATE_GOLDEN"):
        # Rewriting the golden files makes this test pass whatever the builders do: never in CI.
        assert not os.environ.get("CI"), "UPDATE_GOLDEN is for a developer's machine, not CI"
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (directory / name).write_text(text)
    assert sorted(p.name for p in directory.iterdir()) == sorted(rendered)
    for name, text in rendered.items():
        assert (directory / name).read_text() == text, f"{case}/{name} differs"


@pytest.mark.parametrize("case", sorted(CASES))
def test_worker_hcl_parses_and_carries_the_settings(case: str) -> None:
    parsed = hcl.loads(builders.render_worker_hcl(context(case)))
    worker = parsed["worker"]
    assert worker["controller_generated_activation_token"] == (
        "file:///opt/boundary/token/activation-token"
    )
    assert worker["public_addr"] == "env://BOUNDARY_WORKER_PUBLIC_ADDR"
    assert worker["auth_storage_path"] == "/opt/boundary/data/auth"
    assert parsed["disable_mlock"] is True
    # pyhcl folds repeated `listener "tcp"` blocks into the last one (Boundary's HCL keeps a
    # list), so each block is parsed on its own.
    text = builders.render_worker_hcl(context(case))
    blocks = re.findall(r'listener "tcp" \{.*?\n\}', text, flags=re.DOTALL)
    listeners = [hcl.loads(block)["listener"]["tcp"] for block in blocks]
    assert {(lst["purpose"], lst["address"]) for lst in listeners} == {
        ("proxy", "0.0.0.0:9202"),
        ("ops", "0.0.0.0:9203"),
    }
    assert worker["tags"]["namespace"] == ["net"]
    assert worker["tags"]["boundary_pki_worker"] == ["edge"]
    assert "kubernetes" in worker["tags"]["type"]


def test_tags_merge_with_defaults_in_a_stable_order() -> None:
    tags = builders.worker_tags(context("full"))
    assert [k for k, _ in tags] == sorted(k for k, _ in tags)
    assert dict(tags)["type"] == ["edge", "kubernetes"]
    assert dict(tags)["region"] == ["eu-west-1"]


def test_no_token_in_the_config_map_and_one_key_per_pod_in_the_secret() -> None:
    ctx = context("minimal")
    config = json.dumps(builders.build_config_map(ctx))
    assert "neslat" not in config
    secret = builders.build_token_secret(ctx, {"edge-1": "b", "edge-0": "a"})
    assert list(secret["data"]) == ["edge-0", "edge-1"]


def with_spec(base: builders.WorkerContext, spec: dict[str, Any]) -> builders.WorkerContext:
    return builders.WorkerContext(
        name=base.name,
        namespace=base.namespace,
        uid=base.uid,
        default_image=base.default_image,
        spec=WorkerSpec.model_validate(spec),
    )


def test_reloadable_changes_do_not_roll_pods_but_change_the_revision() -> None:
    base = context("minimal")
    upstreams = {"initialUpstreams": ["controller.boundary:9201"]}
    retagged = with_spec(base, {"registration": upstreams, "tags": {"new": "tag"}})
    moved = with_spec(base, {"registration": {"initialUpstreams": ["other:9201"]}})
    template = builders.build_stateful_set(base)["spec"]["template"]
    for changed in (retagged, moved):
        assert builders.build_stateful_set(changed)["spec"]["template"] == template
        assert builders.config_revision(changed) != builders.config_revision(base)
        assert builders.render_worker_hcl(changed) != builders.render_worker_hcl(base)
    revision = dict(builders.worker_tags(retagged))["config_revision"]
    assert revision == [builders.config_revision(retagged)]


def test_other_changes_roll_pods() -> None:
    base = context("minimal")
    upstreams = {"initialUpstreams": ["controller.boundary:9201"]}
    template = builders.build_stateful_set(base)["spec"]["template"]
    for spec in (
        {"registration": {"hcpBoundaryClusterID": "4a3a8bd1-3f32-4bd4-a3cc-8bbf2d4b2e56"}},
        {"registration": upstreams, "image": "other/boundary:1"},
        {"registration": upstreams, "publicAddress": "w-$(POD_INDEX).example:9202"},
        {"registration": upstreams, "drain": {"timeout": "1m"}},
    ):
        assert builders.build_stateful_set(with_spec(base, spec))["spec"]["template"] != template


def test_drain_timeout_sets_the_grace_period_and_the_supervisor_deadline() -> None:
    base = context("minimal")
    default = builders.build_stateful_set(base)["spec"]["template"]["spec"]
    assert default["terminationGracePeriodSeconds"] == 300 + builders.STOP_MARGIN_SECONDS
    upstreams = {"initialUpstreams": ["controller.boundary:9201"]}
    ctx = with_spec(base, {"registration": upstreams, "drain": {"timeout": "1h30m"}})
    pod = builders.build_stateful_set(ctx)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5400 + builders.STOP_MARGIN_SECONDS
    (container,) = pod["containers"]
    assert "-drain-timeout 5400s" in container["command"][2]


def test_selector_never_changes_with_image() -> None:
    a = builders.build_stateful_set(context("minimal"))
    b = builders.build_stateful_set(context("full"))
    assert a["spec"]["selector"] == b["spec"]["selector"]


def test_public_address_follows_the_service() -> None:
    assert builders.public_address(context("minimal")) == (
        "$(POD_NAME).edge-workers.net.svc.cluster.local:9202"
    )
    assert (
        builders.public_address(context("full", load_balancer_address="203.0.113.7"))
        == "203.0.113.7:9202"
    )
