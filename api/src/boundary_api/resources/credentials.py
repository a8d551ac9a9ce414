from __future__ import annotations

from typing import Any

from boundary_api.listing import Listing, list_all
from boundary_api.models import Credential, CredentialStore
from boundary_api.resources._base import (
    UNSET,
    ResourceClient,
    resource_path,
    without_empty,
    without_unset,
)


class CredentialStores(ResourceClient):
    async def create_static(
        self, scope_id: str, *, name: str = "", description: str = ""
    ) -> CredentialStore:
        body = without_empty(
            {"type": "static", "scope_id": scope_id, "name": name, "description": description}
        )
        answer = await self._transport.request("POST", "credential-stores", body=body)
        return CredentialStore.model_validate(answer)

    async def read(self, store_id: str) -> CredentialStore:
        answer = await self._transport.request("GET", resource_path("credential-stores", store_id))
        return CredentialStore.model_validate(answer)

    async def delete(self, store_id: str) -> None:
        await self._transport.request("DELETE", resource_path("credential-stores", store_id))

    async def list(
        self, scope_id: str, *, recursive: bool = False, list_token: str | None = None
    ) -> Listing[CredentialStore]:
        params: dict[str, str | int | bool] = {"scope_id": scope_id, "recursive": recursive}
        return await list_all(
            self._transport, "credential-stores", CredentialStore, params, list_token=list_token
        )


class Credentials(ResourceClient):
    async def create_username_password(
        self,
        store_id: str,
        *,
        username: str,
        password: str,
        name: str = "",
        description: str = "",
    ) -> Credential:
        body = without_empty(
            {
                "type": "username_password",
                "credential_store_id": store_id,
                "name": name,
                "description": description,
            }
        )
        body["attributes"] = {"username": username, "password": password}
        answer = await self._transport.request("POST", "credentials", body=body)
        return Credential.model_validate(answer)

    async def update_username_password(
        self,
        credential_id: str,
        version: int,
        *,
        username: str = UNSET,
        password: str = UNSET,
        name: str = UNSET,
        description: str = UNSET,
    ) -> Credential:
        body = without_unset({"version": version, "name": name, "description": description})
        attributes = without_unset({"username": username, "password": password})
        if attributes:
            body["attributes"] = attributes
        answer = await self._transport.request(
            "PATCH", resource_path("credentials", credential_id), body=body
        )
        return Credential.model_validate(answer)

    async def create_json(
        self,
        store_id: str,
        *,
        object: dict[str, Any],
        name: str = "",
        description: str = "",
    ) -> Credential:
        """A json credential: `object` is brokered to sessions as it is."""
        body = without_empty(
            {
                "type": "json",
                "credential_store_id": store_id,
                "name": name,
                "description": description,
            }
        )
        body["attributes"] = {"object": object}
        answer = await self._transport.request("POST", "credentials", body=body)
        return Credential.model_validate(answer)

    async def update_json(
        self,
        credential_id: str,
        version: int,
        *,
        object: dict[str, Any] = UNSET,
        name: str = UNSET,
        description: str = UNSET,
    ) -> Credential:
        """Replace the object (in place: the id and the targets using it stay)."""
        body = without_unset({"version": version, "name": name, "description": description})
        if object is not UNSET:
            body["attributes"] = {"object": object}
        answer = await self._transport.request(
            "PATCH", resource_path("credentials", credential_id), body=body
        )
        return Credential.model_validate(answer)

    async def read(self, credential_id: str) -> Credential:
        answer = await self._transport.request("GET", resource_path("credentials", credential_id))
        return Credential.model_validate(answer)

    async def delete(self, credential_id: str) -> None:
        await self._transport.request("DELETE", resource_path("credentials", credential_id))

    async def list(self, store_id: str, *, list_token: str | None = None) -> Listing[Credential]:
        params: dict[str, str | int | bool] = {"credential_store_id": store_id}
        return await list_all(
            self._transport, "credentials", Credential, params, list_token=list_token
        )
