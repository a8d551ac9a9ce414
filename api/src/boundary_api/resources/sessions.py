from __future__ import annotations

from typing import Any

from boundary_api.authdata import decode_authorization_token
from boundary_api.models import SessionAuthorization
from boundary_api.resources._base import ResourceClient, resource_path


class Sessions(ResourceClient):
    async def authorize(self, target: str, *, host_id: str = "") -> SessionAuthorization:
        """Authorize a session to a target, given its id or an alias value. The answer holds the
        decoded authorization data (session certificate, private key, worker addresses) and any
        brokered credentials."""
        body: dict[str, Any] = {"host_id": host_id} if host_id else {}
        answer = await self._transport.request(
            "POST", resource_path("targets", target, "authorize-session"), body=body
        )
        item = answer.get("item", answer)
        data = decode_authorization_token(str(item.get("authorization_token", "")))
        return SessionAuthorization.model_validate({**item, "data": data})

    async def read(self, session_id: str) -> dict[str, Any]:
        return await self._transport.request("GET", resource_path("sessions", session_id))

    async def cancel(self, session_id: str) -> dict[str, Any]:
        current = await self.read(session_id)
        return await self._transport.request(
            "POST",
            resource_path("sessions", session_id, "cancel"),
            body={"version": current.get("version", 0)},
        )
