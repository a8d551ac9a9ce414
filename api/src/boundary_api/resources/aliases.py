from __future__ import annotations

from typing import Any

from boundary_api.listing import Listing, list_all
from boundary_api.models import Alias
from boundary_api.resources._base import (
    UNSET,
    ResourceClient,
    resource_path,
    without_empty,
    without_unset,
)


class Aliases(ResourceClient):
    async def create(
        self,
        value: str,
        *,
        destination_id: str = "",
        host_id: str = "",
        scope_id: str = "global",
        name: str = "",
        description: str = "",
    ) -> Alias:
        body: dict[str, Any] = without_empty(
            {
                "type": "target",
                "scope_id": scope_id,
                "value": value,
                "destination_id": destination_id,
                "name": name,
                "description": description,
            }
        )
        if host_id:
            body["attributes"] = {"authorize_session_arguments": {"host_id": host_id}}
        return Alias.model_validate(await self._transport.request("POST", "aliases", body=body))

    async def read(self, alias_id: str) -> Alias:
        answer = await self._transport.request("GET", resource_path("aliases", alias_id))
        return Alias.model_validate(answer)

    async def update(
        self,
        alias_id: str,
        version: int,
        *,
        value: str = UNSET,
        destination_id: str | None = UNSET,
        name: str = UNSET,
        description: str = UNSET,
    ) -> Alias:
        body = without_unset(
            {
                "version": version,
                "value": value,
                "destination_id": destination_id,
                "name": name,
                "description": description,
            }
        )
        answer = await self._transport.request(
            "PATCH", resource_path("aliases", alias_id), body=body
        )
        return Alias.model_validate(answer)

    async def delete(self, alias_id: str) -> None:
        await self._transport.request("DELETE", resource_path("aliases", alias_id))

    async def list(
        self,
        scope_id: str = "global",
        *,
        filter: str = "",
        list_token: str | None = None,
        page_size: int | None = None,
    ) -> Listing[Alias]:
        params: dict[str, str | int | bool] = {"scope_id": scope_id}
        if filter:
            params["filter"] = filter
        return await list_all(
            self._transport, "aliases", Alias, params, list_token=list_token, page_size=page_size
        )
