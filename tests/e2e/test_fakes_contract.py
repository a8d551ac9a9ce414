"""The contract scenarios on the real controller and apiserver: the same ones
devstack/tests/test_fakes_contract.py runs on the fakes, so the fakes the lifecycle tests trust
cannot drift from the real programs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from boundary_api import BoundaryClient
from boundary_api.ports import BoundaryPort
from boundary_devstack.clients import Kubectl
from boundary_devstack.fakes import contract
from boundary_devstack.stack import StackEnv
from boundary_operator.kube import KubeClient, KubePort, load_kubeconfig

BoundaryScenario = Callable[[BoundaryPort, str, str], Awaitable[None]]
KubeScenario = Callable[[KubePort, str, str], Awaitable[None]]
NAMESPACE = f"contract-{uuid.uuid4().hex[:6]}"


async def login(stack_env: StackEnv, **options: Any) -> BoundaryClient:
    env = stack_env.values
    client = BoundaryClient(env["BOUNDARY_ADDR"], **options)
    await client.authenticate_password(
        env["BOUNDARY_AUTH_METHOD_ID"], env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"]
    )
    return client


@pytest.mark.parametrize("scenario", contract.BOUNDARY_SCENARIOS, ids=lambda s: s.__name__)
async def test_boundary_scenario_on_the_real_controller(
    scenario: BoundaryScenario, stack_env: StackEnv
) -> None:
    boundary = await login(stack_env)
    try:
        await scenario(boundary, stack_env.values["BOUNDARY_PROJECT_ID"], uuid.uuid4().hex[:8])
    finally:
        await boundary.aclose()


async def test_revoked_token_on_the_real_controller(stack_env: StackEnv) -> None:
    async def fresh(**options: Any) -> BoundaryClient:
        return await login(stack_env, **options)

    await contract.a_revoked_token_is_refused_with_403_and_found_dead(
        fresh, stack_env.values["BOUNDARY_PROJECT_ID"]
    )


async def test_rate_limit_on_the_real_controller(stack_env: StackEnv) -> None:
    async def fresh(**options: Any) -> BoundaryClient:
        return await login(stack_env, **options)

    await contract.list_calls_are_rate_limited_with_retry_after(
        fresh, stack_env.values["BOUNDARY_PROJECT_ID"]
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def kube(stack_env: StackEnv, kubectl: Kubectl) -> AsyncIterator[KubeClient]:
    kubectl("create", "namespace", NAMESPACE)
    client = KubeClient(load_kubeconfig(stack_env.values["KUBECONFIG"]))
    yield client
    await client.aclose()
    kubectl("delete", "namespace", NAMESPACE, "--wait=false")


@pytest.mark.parametrize("scenario", contract.KUBE_SCENARIOS, ids=lambda s: s.__name__)
async def test_kube_scenario_on_the_real_apiserver(
    scenario: KubeScenario, kube: KubeClient
) -> None:
    await scenario(kube, NAMESPACE, uuid.uuid4().hex[:8])


async def test_field_ownership_on_the_real_apiserver(kube: KubeClient, stack_env: StackEnv) -> None:
    other = KubeClient(load_kubeconfig(stack_env.values["KUBECONFIG"]), field_manager="other")
    try:
        await contract.apply_owns_fields_per_manager(kube, other, NAMESPACE, uuid.uuid4().hex[:8])
    finally:
        await other.aclose()


async def test_bound_tokens_on_the_real_apiserver(
    kube: KubeClient, kubectl: Kubectl, tmp_path: Path
) -> None:
    cluster = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))["clusters"][
        0
    ]

    async def who(token: str) -> str | None:
        """kubectl auth whoami with only this token."""
        config = tmp_path / "token.kubeconfig"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": cluster["cluster"]}],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "c",
                }
            )
        )
        config.chmod(0o600)
        answer = await asyncio.to_thread(
            subprocess.run,
            [kubectl.binary, "--kubeconfig", str(config), "auth", "whoami", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if answer.returncode != 0:
            assert "Unauthorized" in answer.stderr or "logged in" in answer.stderr, answer.stderr
            return None
        username: str = json.loads(answer.stdout)["status"]["userInfo"]["username"]
        return username

    await contract.tokens_bound_to_a_secret_die_with_it(kube, who, NAMESPACE, uuid.uuid4().hex[:8])
