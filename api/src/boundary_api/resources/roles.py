from __future__ import annotations

from collections.abc import Sequence

from boundary_api.models import Role
from boundary_api.resources._base import ScopedResource, resource_path


class Roles(ScopedResource[Role]):
    """Roles. A new one has no principals or grants, and its grants apply to its own scope
    (`grant_scope_ids` is `["this"]`). Listings leave principals and grants out: read a role
    for those."""

    collection = "roles"
    model = Role

    async def set_principals(
        self, role_id: str, version: int, principal_ids: Sequence[str]
    ) -> Role:
        """Exactly these users, groups and managed groups. The controller answers a stale
        `version`, and an id that does not exist, with a 500 (Unavailable)."""
        return await self._action(
            role_id, "set-principals", {"version": version, "principal_ids": list(principal_ids)}
        )

    async def set_grants(self, role_id: str, version: int, grant_strings: Sequence[str]) -> Role:
        """Exactly these grants (e.g. `ids=ttcp_1;actions=read`)."""
        return await self._action(
            role_id, "set-grants", {"version": version, "grant_strings": list(grant_strings)}
        )

    async def _action(self, role_id: str, action: str, body: dict[str, object]) -> Role:
        answer = await self._transport.request(
            "POST", resource_path("roles", role_id, action), body=body
        )
        return Role.model_validate(answer)
