"""The workspace's import names, and the one rule about them: no package shadows `operator`."""

from __future__ import annotations

import importlib
import operator
import sysconfig
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "name", ["boundary_api", "boundary_operator", "boundary_agent", "boundary_devstack"]
)
def test_workspace_packages_import(name: str) -> None:
    assert importlib.import_module(name).__doc__


def test_operator_is_the_standard_library_module() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(operator.__file__).resolve().parent == stdlib
