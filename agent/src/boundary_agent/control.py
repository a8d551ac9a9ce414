"""The control API on 127.0.0.1 (and [::1]): the official client agent's endpoints and JSON
shapes, so that both `boundary-agent` and the official `boundary client-agent` commands work.
Each request is answered for the OS user on the other end of its connection."""

from __future__ import annotations

import contextlib
import datetime
import os
from typing import TYPE_CHECKING

from aiohttp import web

from boundary_agent import VERSION
from boundary_agent.config import join_host_port
from boundary_agent.peers import peer_uid
from boundary_api import BoundaryError

if TYPE_CHECKING:
    from boundary_agent.daemon import Agent


class ControlAPI:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._runner: web.AppRunner | None = None

    def _request_uid(self, request: web.Request) -> int | None:
        sock = request.transport.get_extra_info("socket") if request.transport else None
        return peer_uid(sock) if sock is not None else None

    async def _status(self, request: web.Request) -> web.Response:
        agent = self.agent
        user = agent.users.get(self._request_uid(request))
        body = {
            "boundary_addr": user.boundary_addr if user else agent.config.boundary_addr,
            "auth_token_id": user.token_id if user else "",
            "auth_token_expiry": user.expiration.isoformat() if user and user.expiration else None,
            "version": VERSION,
            "status": "paused" if agent.paused else "running",
            "errors": list(agent.health.errors),
            "warnings": [agent.pause_reason] if agent.pause_reason else [],
        }
        return web.json_response(body)

    async def _sessions(self, request: web.Request) -> web.Response:
        items = []
        # Another user's sessions are not theirs to see.
        for session in self.agent.sessions.of_user(self._request_uid(request)):
            auth = session.authorization
            items.append(
                {
                    "alias": session.alias,
                    "target_id": auth.target_id,
                    "local_address": join_host_port(session.local_address, session.local_port),
                    "expiration": auth.expiration.isoformat() if auth.expiration else None,
                    "connections_used": session.connections_used,
                    "connections_left": session.connections_left,
                    "session_authorization": {
                        "session_id": auth.session_id,
                        "created_time": (
                            auth.data.created_time or datetime.datetime.now(datetime.UTC)
                        ).isoformat(),
                        "credentials": [c.model_dump(mode="json") for c in auth.credentials],
                    },
                }
            )
        return web.json_response({"items": items})

    def _may_pause(self, request: web.Request) -> bool:
        """Pausing drops every user's sessions, so only root and the user the agent runs as may
        pause or resume it; another local user could otherwise cancel someone else's sessions."""
        uid = self._request_uid(request)
        return uid is not None and uid in (0, os.getuid())

    async def _pause(self, request: web.Request) -> web.Response:
        if not self._may_pause(request):
            return _denied("only root or the agent's own user may pause it")
        self.agent.pause()
        return web.json_response({})

    async def _resume(self, request: web.Request) -> web.Response:
        if not self._may_pause(request):
            return _denied("only root or the agent's own user may resume it")
        self.agent.resume()
        return web.json_response({})

    async def _tokens(self, request: web.Request) -> web.Response:
        uid = self._request_uid(request)
        if uid is None:
            return _denied("cannot tell which user is asking")
        body = await request.json()
        try:
            await self.agent.add_token(uid, str(body.get("boundary_addr", "")), str(body["token"]))
        except (KeyError, BoundaryError) as exc:
            return web.json_response(
                {"kind": "InvalidArgument", "message": f"token not accepted: {exc}"}, status=400
            )
        return web.json_response({})

    async def start(self, port: int) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/v1/status", self._status),
                web.get("/v1/sessions", self._sessions),
                web.post("/v1/pause", self._pause),
                web.post("/v1/resume", self._resume),
                web.post("/v1/tokens", self._tokens),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        with contextlib.suppress(OSError):  # the official CLI dials "localhost"
            await web.TCPSite(self._runner, "::1", port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _denied(message: str) -> web.Response:
    return web.json_response({"kind": "PermissionDenied", "message": message}, status=403)
