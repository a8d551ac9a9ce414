"""Paginated listing against the real controller: 2,500 targets over several pages, delta
refresh with removed_ids, and a refused list token that restarts the listing by itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from boundary_api import BoundaryClient, Target
from boundary_devstack.clients import BoundaryCLI
from boundary_devstack.stack import StackEnv

TARGET_COUNT = 2500


@pytest.fixture(scope="module")
def bulk_project(boundary_cli: BoundaryCLI, stack_env: StackEnv) -> Iterator[str]:
    """A project of its own, so one scope delete removes every target made here."""
    created = boundary_cli(
        "scopes",
        "create",
        "-scope-id",
        stack_env.values["BOUNDARY_ORG_ID"],
        "-name",
        f"bulk-{uuid.uuid4().hex[:8]}",
    )
    project_id: str = created["item"]["id"]
    yield project_id
    boundary_cli("scopes", "delete", "-id", project_id)


async def _create_many(stack_env: StackEnv, project: str, count: int) -> list[Target]:
    # A creating POST is not retried, and on a busy 2-core machine the dev controller can take
    # longer than the default 30 s to answer one: this bulk load gets its own patient client.
    env = stack_env.values
    async with BoundaryClient(env["BOUNDARY_ADDR"], timeout=180.0) as patient:
        await patient.authenticate_password(
            env["BOUNDARY_AUTH_METHOD_ID"], env["BOUNDARY_LOGIN_NAME"], env["BOUNDARY_PASSWORD"]
        )
        limit = asyncio.Semaphore(8)

        async def one(index: int) -> Target:
            async with limit:
                return await patient.targets.create_tcp(
                    project, f"bulk-{index:05d}", address="db.internal", default_port=5432
                )

        return await asyncio.gather(*(one(i) for i in range(count)))


async def test_listing_follows_pages_and_refreshes_by_delta(
    boundary: BoundaryClient, bulk_project: str, stack_env: StackEnv
) -> None:
    created = await _create_many(stack_env, bulk_project, TARGET_COUNT)

    listing = await boundary.targets.list(bulk_project, recursive=False, page_size=1000)
    assert listing.full
    assert listing.pages >= 3
    assert {t.id for t in listing.items} == {t.id for t in created}
    assert listing.list_token

    gone, changed = created[0], created[1]
    await boundary.targets.delete(gone.id)
    await boundary.targets.update(changed.id, changed.version, description="changed")
    delta = await boundary.targets.list(
        bulk_project, recursive=False, list_token=listing.list_token
    )
    assert not delta.full
    assert gone.id in delta.removed_ids
    # A refresh re-sends everything changed since 30 s before the previous listing (the
    # controller's RefreshReadLookbackDuration), so items are upserts, not only news.
    by_id = {t.id: t for t in delta.items}
    assert by_id[changed.id].description == "changed"
    assert gone.id not in by_id

    view = {t.id: t for t in listing.items}
    delta.apply_to(view)
    assert len(view) == TARGET_COUNT - 1
    assert view[changed.id].description == "changed"


async def test_refused_list_token_restarts_with_a_full_listing(
    boundary: BoundaryClient, bulk_project: str
) -> None:
    listing = await boundary.targets.list(
        bulk_project, recursive=False, list_token="not-a-real-token"
    )
    assert listing.full
    assert len(listing.items) >= TARGET_COUNT - 1
