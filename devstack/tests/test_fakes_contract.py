"""The contract scenarios on the fakes (tests/e2e/test_fakes_contract.py runs the same ones on
the real controller and apiserver), plus what only a fake can show quickly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from boundary_api import BoundaryClient
from boundary_api.ports import BoundaryPort
from boundary_devstack.fakes import FakeController, FakeKube, contract
from boundary_devstack.fakes.boundary import PROJECT
from boundary_operator.kube import KubePort

BoundaryScenario = Callable[[BoundaryPort, str, str], Awaitable[None]]
KubeScenario = Callable[[KubePort, str, str], Awaitable[None]]


@pytest.mark.parametrize("scenario", contract.BOUNDARY_SCENARIOS, ids=lambda s: s.__name__)
async def test_boundary_scenario_on_the_fake(scenario: BoundaryScenario) -> None:
    controller = FakeController()
    boundary = await controller.login()
    await scenario(boundary, PROJECT, "fake")
    await boundary.aclose()


async def test_rate_limit_on_the_fake() -> None:
    controller = FakeController()

    async def fresh(**options: Any) -> BoundaryClient:
        return await controller.login(**options)

    await contract.list_calls_are_rate_limited_with_retry_after(fresh, PROJECT)


@pytest.mark.parametrize("scenario", contract.KUBE_SCENARIOS, ids=lambda s: s.__name__)
async def test_kube_scenario_on_the_fake(scenario: KubeScenario) -> None:
    await scenario(FakeKube(), "contract", "fake")


async def test_field_ownership_on_the_fake() -> None:
    kube = FakeKube()
    await contract.apply_owns_fields_per_manager(kube, kube.as_manager("other"), "contract", "fake")


async def test_bound_tokens_on_the_fake() -> None:
    kube = FakeKube()

    async def who(token: str) -> str | None:
        return kube.authenticate(token)

    await contract.tokens_bound_to_a_secret_die_with_it(kube, who, "contract", "fake")


async def test_revoked_token_on_the_fake() -> None:
    controller = FakeController()

    async def fresh(**options: Any) -> BoundaryClient:
        return await controller.login(**options)

    await contract.a_revoked_token_is_refused_with_403_and_found_dead(fresh, PROJECT)
