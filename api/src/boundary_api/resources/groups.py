from __future__ import annotations

from collections.abc import Sequence

from boundary_api.models import Group, ManagedGroup
from boundary_api.resources._base import ResourceClient, ScopedResource, resource_path


class Groups(ScopedResource[Group]):
    collection = "groups"
    model = Group

    async def set_members(self, group_id: str, version: int, member_ids: Sequence[str]) -> Group:
        answer = await self._transport.request(
            "POST",
            resource_path("groups", group_id, "set-members"),
            body={"version": version, "member_ids": list(member_ids)},
        )
        return Group.model_validate(answer)


class ManagedGroups(ResourceClient):
    async def read(self, managed_group_id: str) -> ManagedGroup:
        answer = await self._transport.request(
            "GET", resource_path("managed-groups", managed_group_id)
        )
        return ManagedGroup.model_validate(answer)
