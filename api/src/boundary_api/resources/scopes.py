from __future__ import annotations

from boundary_api.errors import NotFound
from boundary_api.listing import list_all
from boundary_api.models import Scope
from boundary_api.resources._base import ResourceClient, resource_path


class Scopes(ResourceClient):
    async def read(self, scope_id: str) -> Scope:
        answer = await self._transport.request("GET", resource_path("scopes", scope_id))
        return Scope.model_validate(answer)

    async def list(
        self, parent_scope_id: str = "global", *, recursive: bool = False
    ) -> list[Scope]:
        params: dict[str, str | int | bool] = {"scope_id": parent_scope_id, "recursive": recursive}
        return (await list_all(self._transport, "scopes", Scope, params)).items

    async def find_by_name(self, name: str, *, parent_scope_id: str = "global") -> Scope:
        """The org (under global) or project (under an org) with this name."""
        for scope in await self.list(parent_scope_id):
            if scope.name == name:
                return scope
        raise NotFound(f"no scope named {name!r} under {parent_scope_id}")

    async def find_project(self, name_or_id: str) -> Scope:
        """A project by id (p_...) or by name, searched across every org."""
        if name_or_id.startswith("p_"):
            return await self.read(name_or_id)
        for scope in await self.list("global", recursive=True):
            if scope.type == "project" and scope.name == name_or_id:
                return scope
        raise NotFound(f"no project named {name_or_id!r}")
