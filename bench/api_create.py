"""boundary_api: create N tcp targets, each with an alias, at concurrency 1 and 8, in calls per
second; baseline: the official `boundary targets create tcp` CLI doing the same creates at the
same concurrency in the same run. (At 32, `boundary dev` on a 2-core machine once left a create
unanswered for over 30 s.)

    uv run python -m bench.api_create [--count 1000] [--runs 1]

Uses BK_STACK_ENV's running stack when set, otherwise starts one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from bench.results import Row, row, write
from boundary_api import BoundaryClient
from boundary_devstack.clients import BoundaryCLI
from boundary_devstack.pytest_plugin import default_bin_dir
from boundary_devstack.stack import LocalStack, StackEnv

SATURATED_TIMEOUT = 120.0
"""Seconds a create may take while the bench keeps the controller saturated."""


@contextlib.contextmanager
def stack() -> Iterator[StackEnv]:
    if os.environ.get("BK_STACK_ENV"):
        yield StackEnv.read(Path(os.environ["BK_STACK_ENV"]))
        return
    with LocalStack(bin_dir=default_bin_dir()) as local:
        yield local.start()


def new_project(cli: BoundaryCLI, env: StackEnv) -> str:
    created = cli(
        "scopes",
        "create",
        "-scope-id",
        env.values["BOUNDARY_ORG_ID"],
        "-name",
        f"bench-{uuid.uuid4().hex[:8]}",
    )
    return str(created["item"]["id"])


async def with_client(env: StackEnv, project: str, count: int, concurrency: int) -> float:
    values = env.values
    # A throughput run: a call the saturated controller answers slowly counts as slow, not as
    # a failure (the library's default 30 s read timeout was hit at concurrency 32).
    async with BoundaryClient(
        values["BOUNDARY_ADDR"], max_connections=concurrency, timeout=SATURATED_TIMEOUT
    ) as client:
        await client.authenticate_password(
            values["BOUNDARY_AUTH_METHOD_ID"],
            values["BOUNDARY_LOGIN_NAME"],
            values["BOUNDARY_PASSWORD"],
        )
        limit = asyncio.Semaphore(concurrency)
        tag = uuid.uuid4().hex[:6]

        async def one(i: int) -> None:
            async with limit:
                await client.targets.create_tcp(
                    project,
                    f"api-{i}",
                    address="db.internal",
                    default_port=5432,
                    aliases=[f"api-{i}.{tag}.bench"],
                )

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return count / (time.perf_counter() - started)


async def with_cli(cli: BoundaryCLI, project: str, count: int, concurrency: int) -> float:
    cli.login()
    env = cli.env()  # the admin token travels in the environment, as env://BK_BOUNDARY_TOKEN
    limit = asyncio.Semaphore(concurrency)
    tag = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        async with limit:
            process = await asyncio.create_subprocess_exec(
                cli.binary,
                "targets",
                "create",
                "tcp",
                "-scope-id",
                project,
                "-name",
                f"cli-{i}",
                "-address",
                "db.internal",
                "-default-port",
                "5432",
                "-with-alias-value",
                f"cli-{i}.{tag}.bench",
                "-with-alias-scope-id",
                "global",
                "-token",
                "env://BK_BOUNDARY_TOKEN",
                "-format",
                "json",
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"boundary targets create failed: {stderr.decode()[:300]}")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return count / (time.perf_counter() - started)


def measure(count: int, runs: int, concurrencies: list[int]) -> list[Row]:
    rows = []
    with stack() as env:
        cli = BoundaryCLI(env)
        for concurrency in concurrencies:
            ours, theirs = [], []
            for _ in range(runs):
                ours.append(
                    asyncio.run(with_client(env, new_project(cli, env), count, concurrency))
                )
                theirs.append(asyncio.run(with_cli(cli, new_project(cli, env), count, concurrency)))
                print(
                    f"concurrency {concurrency}: boundary_api {ours[-1]:.1f}/s, "
                    f"boundary CLI {theirs[-1]:.1f}/s",
                    flush=True,
                )
            rows.append(
                row(
                    "boundary_api",
                    f"target+alias creates, concurrency {concurrency}",
                    "calls/s",
                    ours,
                    "boundary CLI (targets create tcp -with-alias-value)",
                    theirs,
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    rows = measure(args.count, args.runs, args.concurrency)
    write(rows, Path(__file__).resolve().parent / "results", "api_create")
    print((Path(__file__).resolve().parent / "results" / "api_create.md").read_text())


if __name__ == "__main__":
    main()
