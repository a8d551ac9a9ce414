"""Ownership markers and settings parsing: pure logic."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from boundary_api import Worker
from boundary_operator import naming
from boundary_operator.settings import OperatorSettings
from boundary_operator.workers.tokens import Identity


def test_worker_names_are_lowercase_and_safe() -> None:
    assert naming.boundary_worker_name("Prod", "Net", "Edge_GW", 2) == "prod-net-edge-gw-2"


def test_only_our_descriptions_are_recognised() -> None:
    ours = Identity("c", "ns", "edge", "uid-1")
    mine = Worker(id="w_1", description=ours.description(3))
    assert ours.owned_ordinal(mine) == 3
    for description in ("", "hand made", ours.description(3).replace("uid-1", "uid-2")):
        assert ours.owned_ordinal(Worker(id="w_2", description=description)) is None


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOUNDARY_OPERATOR_NAMESPACES", "a, b,,c")
    monkeypatch.setenv("BOUNDARY_ADDR", "http://127.0.0.1:9200")
    monkeypatch.setenv("BOUNDARY_TOKEN", "at_abc")
    settings = OperatorSettings()
    assert settings.namespaces == ["a", "b", "c"]
    assert settings.has_controller_credentials
    assert "at_abc" not in repr(settings)


def test_bad_cluster_name_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOUNDARY_OPERATOR_CLUSTER_NAME", "no spaces please")
    with pytest.raises(ValidationError, match="BOUNDARY_OPERATOR_CLUSTER_NAME"):
        OperatorSettings()
