from __future__ import annotations

from boundary_api.listing import list_all
from boundary_api.models import CreatedWorker, Worker
from boundary_api.resources._base import (
    UNSET,
    ResourceClient,
    resource_path,
    without_empty,
    without_unset,
)

Tags = dict[str, list[str]]


class Workers(ResourceClient):
    async def create_controller_led(
        self, name: str, *, scope_id: str = "global", description: str = ""
    ) -> CreatedWorker:
        """Register a worker ahead of time. The answer carries the single-use activation token
        the worker presents on first contact (`controller_generated_activation_token`)."""
        answer = await self._transport.request(
            "POST",
            "workers:create:controller-led",
            body=without_empty(
                {"scope_id": scope_id, "name": name.lower(), "description": description}
            ),
        )
        return CreatedWorker.model_validate(answer)

    async def read(self, worker_id: str) -> Worker:
        answer = await self._transport.request("GET", resource_path("workers", worker_id))
        return Worker.model_validate(answer)

    async def list(self, *, scope_id: str = "global", filter: str = "") -> list[Worker]:
        params: dict[str, str | int | bool] = {"scope_id": scope_id}
        if filter:
            params["filter"] = filter
        listing = await list_all(self._transport, "workers", Worker, params)
        return listing.items

    async def update(
        self, worker_id: str, version: int, *, name: str = UNSET, description: str = UNSET
    ) -> Worker:
        body = {"version": version, "name": name, "description": description}
        answer = await self._transport.request(
            "PATCH",
            resource_path("workers", worker_id),
            body=without_unset(body),
        )
        return Worker.model_validate(answer)

    async def delete(self, worker_id: str) -> None:
        await self._transport.request("DELETE", resource_path("workers", worker_id))

    async def set_tags(self, worker_id: str, version: int, tags: Tags) -> Worker:
        return await self._tags(worker_id, version, tags, "set-worker-tags")

    async def add_tags(self, worker_id: str, version: int, tags: Tags) -> Worker:
        return await self._tags(worker_id, version, tags, "add-worker-tags")

    async def remove_tags(self, worker_id: str, version: int, tags: Tags) -> Worker:
        return await self._tags(worker_id, version, tags, "remove-worker-tags")

    async def _tags(self, worker_id: str, version: int, tags: Tags, action: str) -> Worker:
        answer = await self._transport.request(
            "POST",
            resource_path("workers", worker_id, action),
            body={"version": version, "api_tags": tags},
        )
        return Worker.model_validate(answer)
