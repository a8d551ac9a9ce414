"""BoundaryPort: the narrow part of the controller API the operator and the agent call, as
protocols. BoundaryClient satisfies it; tests give the same client an in-memory controller
(boundary_devstack.fakes.FakeController) through its `transport`, so the fake sits behind the
real client's paths, error mapping and listings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from boundary_api.listing import Listing
from boundary_api.models import (
    Alias,
    AuthTokenInfo,
    CreatedWorker,
    Credential,
    CredentialStore,
    Group,
    ManagedGroup,
    Role,
    Scope,
    SessionAuthorization,
    Target,
    User,
    Worker,
)
from boundary_api.resources.workers import Tags


class WorkersPort(Protocol):
    async def create_controller_led(
        self, name: str, *, scope_id: str = ..., description: str = ...
    ) -> CreatedWorker: ...
    async def list(self, *, scope_id: str = ..., filter: str = ...) -> list[Worker]: ...
    async def read(self, worker_id: str) -> Worker: ...
    async def delete(self, worker_id: str) -> None: ...
    async def add_tags(self, worker_id: str, version: int, tags: Tags) -> Worker: ...
    async def remove_tags(self, worker_id: str, version: int, tags: Tags) -> Worker: ...


class TargetsPort(Protocol):
    async def create_tcp(
        self,
        scope_id: str,
        name: str,
        *,
        address: str,
        default_port: int,
        description: str = ...,
        egress_worker_filter: str = ...,
        session_max_seconds: int | None = ...,
        session_connection_limit: int | None = ...,
    ) -> Target: ...
    async def read(self, target_id: str) -> Target: ...
    async def update(
        self,
        target_id: str,
        version: int,
        *,
        name: str = ...,
        description: str = ...,
        address: str = ...,
        default_port: int = ...,
        egress_worker_filter: str | None = ...,
        session_max_seconds: int = ...,
        session_connection_limit: int = ...,
    ) -> Target: ...
    async def delete(self, target_id: str) -> None: ...
    async def list(
        self,
        scope_id: str = ...,
        *,
        recursive: bool = ...,
        filter: str = ...,
        list_token: str | None = ...,
        page_size: int | None = ...,
    ) -> Listing[Target]: ...
    async def set_credential_sources(
        self, target_id: str, version: int, brokered: Sequence[str]
    ) -> Target: ...


class AliasesPort(Protocol):
    async def create(
        self, value: str, *, destination_id: str = ..., description: str = ...
    ) -> Alias: ...
    async def read(self, alias_id: str) -> Alias: ...
    async def delete(self, alias_id: str) -> None: ...
    async def list(
        self,
        scope_id: str = ...,
        *,
        filter: str = ...,
        list_token: str | None = ...,
        page_size: int | None = ...,
    ) -> Listing[Alias]: ...


class CredentialStoresPort(Protocol):
    async def create_static(
        self, scope_id: str, *, name: str = ..., description: str = ...
    ) -> CredentialStore: ...
    async def read(self, store_id: str) -> CredentialStore: ...
    async def delete(self, store_id: str) -> None: ...


class CredentialsPort(Protocol):
    async def create_username_password(
        self,
        store_id: str,
        *,
        username: str,
        password: str,
        name: str = ...,
        description: str = ...,
    ) -> Credential: ...
    async def update_username_password(
        self,
        credential_id: str,
        version: int,
        *,
        username: str = ...,
        password: str = ...,
        name: str = ...,
        description: str = ...,
    ) -> Credential: ...
    async def create_json(
        self,
        store_id: str,
        *,
        object: dict[str, Any],
        name: str = ...,
        description: str = ...,
    ) -> Credential: ...
    async def update_json(
        self,
        credential_id: str,
        version: int,
        *,
        object: dict[str, Any] = ...,
        name: str = ...,
        description: str = ...,
    ) -> Credential: ...
    async def read(self, credential_id: str) -> Credential: ...
    async def delete(self, credential_id: str) -> None: ...


class ScopesPort(Protocol):
    async def read(self, scope_id: str) -> Scope: ...
    async def find_project(self, name_or_id: str) -> Scope: ...


Listed = TypeVar("Listed", bound=BaseModel)


class ScopedPort(Protocol[Listed]):
    """Read and list by scope, as roles, users and groups are."""

    async def read(self, resource_id: str) -> Listed: ...
    async def list(
        self,
        scope_id: str = ...,
        *,
        recursive: bool = ...,
        filter: str = ...,
        list_token: str | None = ...,
        page_size: int | None = ...,
    ) -> Listing[Listed]: ...


class RolesPort(ScopedPort[Role], Protocol):
    async def create(self, scope_id: str, *, name: str = ..., description: str = ...) -> Role: ...
    async def delete(self, resource_id: str) -> None: ...
    async def set_principals(
        self, role_id: str, version: int, principal_ids: Sequence[str]
    ) -> Role: ...
    async def set_grants(
        self, role_id: str, version: int, grant_strings: Sequence[str]
    ) -> Role: ...


class GroupsPort(ScopedPort[Group], Protocol): ...


class ManagedGroupsPort(Protocol):
    async def read(self, managed_group_id: str) -> ManagedGroup: ...


class AuthTokensPort(Protocol):
    async def read(self, token_id: str) -> AuthTokenInfo: ...
    async def delete(self, token_id: str) -> None: ...


class UsersPort(ScopedPort[User], Protocol):
    async def list_resolvable_aliases(
        self, user_id: str, *, list_token: str | None = ..., page_size: int | None = ...
    ) -> Listing[Alias]: ...


class SessionsPort(Protocol):
    async def authorize(self, target: str, *, host_id: str = ...) -> SessionAuthorization: ...


class BoundaryPort(Protocol):
    """What the operator (workers, targets, aliases, credentials, scopes, and for access by
    annotation roles, users, groups and managed groups) and the agent
    (auth-tokens read, users list-resolvable-aliases, targets read, authorize-session) call."""

    @property
    def workers(self) -> WorkersPort: ...
    @property
    def targets(self) -> TargetsPort: ...
    @property
    def aliases(self) -> AliasesPort: ...
    @property
    def credential_stores(self) -> CredentialStoresPort: ...
    @property
    def credentials(self) -> CredentialsPort: ...
    @property
    def scopes(self) -> ScopesPort: ...
    @property
    def roles(self) -> RolesPort: ...
    @property
    def groups(self) -> GroupsPort: ...
    @property
    def managed_groups(self) -> ManagedGroupsPort: ...
    @property
    def auth_tokens(self) -> AuthTokensPort: ...
    @property
    def users(self) -> UsersPort: ...
    @property
    def sessions(self) -> SessionsPort: ...

    @property
    def token_id(self) -> str | None: ...

    async def login_alive(self) -> bool: ...
    async def aclose(self) -> None: ...
