from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from boundary_api.listing import Listing, list_all
from boundary_api.models import Target
from boundary_api.resources._base import (
    UNSET,
    ResourceClient,
    resource_path,
    without_empty,
    without_unset,
)


class Targets(ResourceClient):
    async def create_tcp(
        self,
        scope_id: str,
        name: str,
        *,
        address: str,
        default_port: int,
        description: str = "",
        egress_worker_filter: str = "",
        session_max_seconds: int | None = None,
        session_connection_limit: int | None = None,
        aliases: Sequence[str] = (),
        alias_scope_id: str = "global",
    ) -> Target:
        """Create a tcp target. `aliases` are created with it, in one call (`with_aliases`)."""
        body: dict[str, Any] = without_empty(
            {
                "type": "tcp",
                "scope_id": scope_id,
                "name": name,
                "description": description,
                "address": address,
                "egress_worker_filter": egress_worker_filter,
                "session_max_seconds": session_max_seconds,
                "session_connection_limit": session_connection_limit,
            }
        )
        body["attributes"] = {"default_port": default_port}
        if aliases:
            body["with_aliases"] = [{"value": v, "scope_id": alias_scope_id} for v in aliases]
        return Target.model_validate(await self._transport.request("POST", "targets", body=body))

    async def read(self, target_id: str) -> Target:
        answer = await self._transport.request("GET", resource_path("targets", target_id))
        return Target.model_validate(answer)

    async def update(
        self,
        target_id: str,
        version: int,
        *,
        name: str = UNSET,
        description: str = UNSET,
        address: str = UNSET,
        default_port: int = UNSET,
        egress_worker_filter: str | None = UNSET,
        session_max_seconds: int = UNSET,
        session_connection_limit: int = UNSET,
    ) -> Target:
        """Change the given fields. A stale `version` raises StaleVersion."""
        body = without_unset(
            {
                "version": version,
                "name": name,
                "description": description,
                "address": address,
                "egress_worker_filter": egress_worker_filter,
                "session_max_seconds": session_max_seconds,
                "session_connection_limit": session_connection_limit,
            }
        )
        if default_port is not UNSET:
            body["attributes"] = {"default_port": default_port}
        answer = await self._transport.request(
            "PATCH", resource_path("targets", target_id), body=body
        )
        return Target.model_validate(answer)

    async def delete(self, target_id: str) -> None:
        await self._transport.request("DELETE", resource_path("targets", target_id))

    async def list(
        self,
        scope_id: str = "global",
        *,
        recursive: bool = True,
        filter: str = "",
        list_token: str | None = None,
        page_size: int | None = None,
    ) -> Listing[Target]:
        params: dict[str, str | int | bool] = {"scope_id": scope_id, "recursive": recursive}
        if filter:
            params["filter"] = filter
        return await list_all(
            self._transport, "targets", Target, params, list_token=list_token, page_size=page_size
        )

    async def add_credential_sources(
        self, target_id: str, version: int, brokered: Sequence[str]
    ) -> Target:
        return await self._credential_sources(target_id, version, brokered, "add")

    async def remove_credential_sources(
        self, target_id: str, version: int, brokered: Sequence[str]
    ) -> Target:
        return await self._credential_sources(target_id, version, brokered, "remove")

    async def set_credential_sources(
        self, target_id: str, version: int, brokered: Sequence[str]
    ) -> Target:
        return await self._credential_sources(target_id, version, brokered, "set")

    async def _credential_sources(
        self, target_id: str, version: int, brokered: Sequence[str], verb: str
    ) -> Target:
        answer = await self._transport.request(
            "POST",
            resource_path("targets", target_id, f"{verb}-credential-sources"),
            body={"version": version, "brokered_credential_source_ids": list(brokered)},
        )
        return Target.model_validate(answer)
