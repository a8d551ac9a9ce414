from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from boundary_api import BoundaryClient
from boundary_devstack.clients import CommandFailed, Kubectl
from boundary_devstack.process import TEST_SESSION_VARIABLE, processes_marked
from boundary_devstack.stack import StackEnv, wait_for

pytest_plugins = ["boundary_devstack.pytest_plugin"]
REPO = Path(__file__).resolve().parents[1]
SESSION_MARKER = (TEST_SESSION_VARIABLE, uuid.uuid4().hex)


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Every process the session starts inherits a marker; at the end none may be left (the
    official CLI's cache daemon once outlived `make test`). Leftovers are killed, then
    reported."""
    name, value = SESSION_MARKER
    os.environ[name] = value
    yield
    marker = f"{name}={value}"
    deadline = time.monotonic() + 5
    while (left := processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind by the tests: {left}"


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    """The repository's CRDs and admission policy, applied and established."""
    kubectl("apply", "-f", str(REPO / "crds"))
    kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/boundarypkiworkers.workers.boundaryproject.io",
        "crd/boundarykubernetesaccesses.workers.boundaryproject.io",
    )


@pytest.fixture(scope="session")
def admission(crds: None, kubectl: Kubectl) -> None:
    """The CRDs, and the tag policy actually enforced: a new ValidatingAdmissionPolicy takes a
    moment before the apiserver applies it."""
    probe = {
        "apiVersion": "workers.boundaryproject.io/v1alpha1",
        "kind": "BoundaryPKIWorker",
        "metadata": {"name": "policy-probe", "namespace": "default"},
        "spec": {
            "registration": {"initialUpstreams": ["controller:9201"]},
            "tags": {"bad key": "x"},
        },
    }

    def policy_enforced() -> bool:
        try:
            kubectl("create", "--dry-run=server", "-f", "-", input_text=json.dumps(probe))
        except CommandFailed as refused:
            # Only the policy's own refusal counts; another failure (the CRD not served yet,
            # a timeout) means it is not enforced yet.
            return (
                "ValidatingAdmissionPolicy" in refused.stderr and "spec.tags keys" in refused.stderr
            )
        return False

    assert wait_for(policy_enforced, timeout=30)


@pytest_asyncio.fixture(loop_scope="session")
async def boundary(stack_env: StackEnv) -> AsyncIterator[BoundaryClient]:
    """A client of the real controller, logged in as the stack's admin."""
    env = stack_env.values
    async with BoundaryClient(env["BOUNDARY_ADDR"]) as client:
        await client.authenticate_password(
            env["BOUNDARY_AUTH_METHOD_ID"], env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"]
        )
        yield client
