from __future__ import annotations

from collections.abc import Sequence

from boundary_api.listing import Listing, list_all
from boundary_api.models import Role
from boundary_api.resources._base import ResourceClient, resource_path, without_empty


class Roles(ResourceClient):
    """Roles: grants given to principals (users, groups, managed groups). A role created in a
    project grants within that project ("this") unless its grant scopes say otherwise."""

    async def create(self, scope_id: str, *, name: str = "", description: str = "") -> Role:
        body = without_empty({"scope_id": scope_id, "name": name, "description": description})
        return Role.model_validate(await self._transport.request("POST", "roles", body=body))

    async def read(self, role_id: str) -> Role:
        answer = await self._transport.request("GET", resource_path("roles", role_id))
        return Role.model_validate(answer)

    async def delete(self, role_id: str) -> None:
        await self._transport.request("DELETE", resource_path("roles", role_id))

    async def list(
        self,
        scope_id: str,
        *,
        recursive: bool = False,
        filter: str = "",
        list_token: str | None = None,
    ) -> Listing[Role]:
        params: dict[str, str | int | bool] = {"scope_id": scope_id, "recursive": recursive}
        if filter:
            params["filter"] = filter
        return await list_all(self._transport, "roles", Role, params, list_token=list_token)

    async def set_grants(self, role_id: str, version: int, grants: Sequence[str]) -> Role:
        """Replace the role's grant strings (`ids=ttcp_...;actions=authorize-session`)."""
        return await self._action(role_id, "set-grants", version, grant_strings=list(grants))

    async def set_principals(
        self, role_id: str, version: int, principal_ids: Sequence[str]
    ) -> Role:
        """Replace the role's principals: user (u_), group (g_) and managed group (mg...) ids."""
        return await self._action(
            role_id, "set-principals", version, principal_ids=list(principal_ids)
        )

    async def _action(
        self, role_id: str, action: str, version: int, **fields: Sequence[str]
    ) -> Role:
        answer = await self._transport.request(
            "POST", resource_path("roles", role_id, action), body={"version": version, **fields}
        )
        return Role.model_validate(answer)
