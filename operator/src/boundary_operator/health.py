"""The liveness endpoint, `GET /healthz` on BOUNDARY_OPERATOR_HEALTH_PORT (0: off), for the
process's whole life. Ours rather than kopf's: kopf's exists only while kopf runs, and a standby
replica does not run kopf, yet it is alive. It answers from the event loop, so a loop that hangs
fails the probe; the body says whether this replica leads or stands by."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web


async def serve_health(port: int, role: Callable[[], str]) -> web.AppRunner | None:
    """Start serving; the caller cleans the runner up. None when the port is 0."""
    if not port:
        return None

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text=f"ok: {role()}\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()  # noqa: S104 - the kubelet probes it
    return runner
