from __future__ import annotations

from typing import Any, ClassVar, Final, Generic, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from boundary_api._transport import JSONObject, Transport
from boundary_api.listing import Listing, list_all

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[Any] = _Unset()
"""Marks an update argument that is left as it is (None would clear the field)."""


def resource_path(collection: str, resource_id: str, action: str = "") -> str:
    path = f"{collection}/{quote(resource_id, safe='')}"
    return f"{path}:{action}" if action else path


def without_unset(fields: dict[str, Any]) -> JSONObject:
    return {k: v for k, v in fields.items() if v is not UNSET}


def without_empty(fields: dict[str, Any]) -> JSONObject:
    return {k: v for k, v in fields.items() if v not in (None, "", UNSET)}


class ResourceClient:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport


class ScopedResource(ResourceClient, Generic[ModelT]):
    """A collection whose resources take only a scope, a name and a description at creation,
    and are listed by scope (roles, users, groups)."""

    collection: ClassVar[str]
    model: type[ModelT]

    async def create(self, scope_id: str, *, name: str = "", description: str = "") -> ModelT:
        body = without_empty({"scope_id": scope_id, "name": name, "description": description})
        answer = await self._transport.request("POST", self.collection, body=body)
        return self.model.model_validate(answer)

    async def read(self, resource_id: str) -> ModelT:
        answer = await self._transport.request("GET", resource_path(self.collection, resource_id))
        return self.model.model_validate(answer)

    async def delete(self, resource_id: str) -> None:
        await self._transport.request("DELETE", resource_path(self.collection, resource_id))

    async def list(
        self,
        scope_id: str = "global",
        *,
        recursive: bool = True,
        filter: str = "",
        list_token: str | None = None,
        page_size: int | None = None,
    ) -> Listing[ModelT]:
        """Every one in the scope (and below it, `recursive`) that `filter` (a Boundary filter
        expression on `/item/...`) admits; pass the previous listing's token to get only the
        changes."""
        params: dict[str, str | int | bool] = {"scope_id": scope_id, "recursive": recursive}
        if filter:
            params["filter"] = filter
        return await list_all(
            self._transport,
            self.collection,
            self.model,
            params,
            list_token=list_token,
            page_size=page_size,
        )
