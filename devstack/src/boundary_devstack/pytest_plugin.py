"""Session-scoped pytest fixtures over the real local stack.

One stack serves the whole test session. Set BK_STACK_ENV to the env file of a stack that is
already running (`make stack` writes .stack/env) to reuse it instead of starting one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from boundary_devstack.clients import BoundaryCLI, Kubectl
from boundary_devstack.stack import LocalStack, StackEnv


def default_bin_dir() -> Path:
    if os.environ.get("STACK_BIN"):
        return Path(os.environ["STACK_BIN"])
    return Path(__file__).resolve().parents[3] / ".stack" / "bin"


_owned_stack: LocalStack | None = None


@pytest.fixture(scope="session")
def stack_env() -> Iterator[StackEnv]:
    global _owned_stack
    reuse = os.environ.get("BK_STACK_ENV")
    if reuse:
        yield StackEnv.read(Path(reuse))
        return
    stack = LocalStack(bin_dir=default_bin_dir())
    try:
        env = stack.start()
        _owned_stack = stack
        yield env
    finally:
        _owned_stack = None
        stack.stop()


@pytest.fixture(scope="session")
def local_stack(stack_env: StackEnv) -> LocalStack:
    """The session's own stack, whose components fault tests may stop and restart. Skips when
    the session reuses a stack (BK_STACK_ENV) that it must not disturb."""
    if _owned_stack is None:
        pytest.skip("fault injection needs the session's own stack (unset BK_STACK_ENV)")
    return _owned_stack


@pytest.fixture(scope="session")
def kubectl(stack_env: StackEnv) -> Kubectl:
    return Kubectl(stack_env)


@pytest.fixture(scope="session")
def boundary_cli(stack_env: StackEnv) -> BoundaryCLI:
    return BoundaryCLI(stack_env)
