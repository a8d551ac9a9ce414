"""Pydantic models of the controller's resources. Field names are the API's own (snake_case).
Unknown fields are ignored so newer controllers keep working; secrets are SecretStr/SecretBytes
so they never show in a repr or a log line."""

from __future__ import annotations

import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, SecretStr


class Resource(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ScopeInfo(Resource):
    id: str
    type: str = ""
    name: str = ""
    description: str = ""
    parent_scope_id: str = ""


class Scope(Resource):
    id: str
    scope_id: str = ""
    type: str = ""
    name: str = ""
    description: str = ""
    version: int = 0


class AuthToken(Resource):
    id: str
    token: SecretStr
    user_id: str
    auth_method_id: str = ""
    account_id: str = ""
    scope_id: str = ""
    expiration_time: datetime.datetime | None = None


class AuthTokenInfo(Resource):
    id: str
    user_id: str
    auth_method_id: str = ""
    scope_id: str = ""
    expiration_time: datetime.datetime | None = None


class Worker(Resource):
    id: str
    scope_id: str = "global"
    name: str = ""
    description: str = ""
    version: int = 0
    type: str = ""
    address: str = ""
    release_version: str = ""
    last_status_time: datetime.datetime | None = None
    active_connection_count: int = 0
    config_tags: dict[str, list[str]] = Field(default_factory=dict)
    api_tags: dict[str, list[str]] = Field(default_factory=dict)
    canonical_tags: dict[str, list[str]] = Field(default_factory=dict)
    local_storage_state: str = ""
    authorized_actions: list[str] = Field(default_factory=list)


class CreatedWorker(Worker):
    """A worker just created controller-led. The activation token is returned once and is
    single-use."""

    controller_generated_activation_token: SecretStr


class TargetAliasRef(Resource):
    id: str
    value: str


class Target(Resource):
    id: str
    scope_id: str
    type: str = "tcp"
    name: str = ""
    description: str = ""
    version: int = 0
    address: str = ""
    egress_worker_filter: str = ""
    ingress_worker_filter: str = ""
    session_max_seconds: int = 0
    session_connection_limit: int = 0
    attributes: dict[str, Any] = Field(default_factory=dict)
    aliases: list[TargetAliasRef] = Field(default_factory=list)
    brokered_credential_source_ids: list[str] = Field(default_factory=list)
    injected_application_credential_source_ids: list[str] = Field(default_factory=list)
    authorized_actions: list[str] = Field(default_factory=list)
    created_time: datetime.datetime | None = None
    updated_time: datetime.datetime | None = None

    @property
    def default_port(self) -> int | None:
        port = self.attributes.get("default_port")
        return int(port) if port is not None else None


class AliasAttributes(Resource):
    authorize_session_arguments: dict[str, str] = Field(default_factory=dict)


class Alias(Resource):
    id: str
    scope_id: str = "global"
    type: str = "target"
    value: str
    name: str = ""
    description: str = ""
    version: int = 0
    destination_id: str = ""
    attributes: AliasAttributes = Field(default_factory=AliasAttributes)

    @property
    def host_id(self) -> str:
        return self.attributes.authorize_session_arguments.get("host_id", "")


class CredentialStore(Resource):
    id: str
    scope_id: str
    type: str = ""
    name: str = ""
    description: str = ""
    version: int = 0


class Credential(Resource):
    """A stored credential. Static username_password credentials return the username but only
    an HMAC of the password; json credentials only an HMAC of their object."""

    id: str
    credential_store_id: str
    type: str = ""
    name: str = ""
    description: str = ""
    version: int = 0
    attributes: dict[str, Any] = Field(default_factory=dict)


class Role(Resource):
    """A role: grants for its principals. Listings leave `principal_ids` and `grant_strings`
    out (only reads and writes carry them); `grant_scope_ids` is in both."""

    id: str
    scope_id: str
    name: str = ""
    description: str = ""
    version: int = 0
    grant_scope_ids: list[str] = Field(default_factory=list)
    principal_ids: list[str] = Field(default_factory=list)
    grant_strings: list[str] = Field(default_factory=list)


class User(Resource):
    id: str
    scope_id: str
    name: str = ""
    description: str = ""
    version: int = 0


class Group(Resource):
    id: str
    scope_id: str
    name: str = ""
    description: str = ""
    version: int = 0
    member_ids: list[str] = Field(default_factory=list)


class ManagedGroup(Resource):
    """A group an OIDC or LDAP auth method fills from the identity provider's claims."""

    id: str
    auth_method_id: str = ""
    scope_id: str = ""
    type: str = ""
    name: str = ""
    description: str = ""
    version: int = 0


class WorkerInfo(Resource):
    address: str


class SessionAuthorizationData(Resource):
    """The decoded `authorization_token` of a session: what a client needs to reach a worker."""

    session_id: str
    target_id: str = ""
    type: str = ""
    connection_limit: int = 0
    endpoint_port: int = 0
    endpoint: str = ""
    host_id: str = ""
    created_time: datetime.datetime | None = None
    expiration: datetime.datetime | None = None
    certificate: bytes = Field(repr=False)
    """The session's TLS certificate (DER). The worker presents the same one."""
    private_key: SecretBytes
    """Ed25519 key: 32-byte seed followed by the 32-byte public key."""
    worker_addresses: list[str] = Field(default_factory=list)
    default_client_port: int = 0


class BrokeredCredential(Resource):
    credential_source: dict[str, Any] = Field(default_factory=dict)
    secret: dict[str, Any] = Field(default_factory=dict, repr=False)
    credential: dict[str, Any] = Field(default_factory=dict, repr=False)

    @property
    def username(self) -> str | None:
        value = self.credential.get("username") or self.secret.get("decoded", {}).get("username")
        return str(value) if value is not None else None

    @property
    def password(self) -> str | None:
        value = self.credential.get("password") or self.secret.get("decoded", {}).get("password")
        return str(value) if value is not None else None

    @property
    def decoded(self) -> dict[str, Any]:
        """The secret as an object: a json credential's own object; the fields of others."""
        decoded = self.secret.get("decoded")
        return dict(decoded) if isinstance(decoded, dict) else dict(self.credential)


class SessionAuthorization(Resource):
    session_id: str
    target_id: str
    user_id: str = ""
    type: str = ""
    endpoint: str = ""
    endpoint_port: int = 0
    connection_limit: int = 0
    expiration: datetime.datetime | None = None
    authorization_token: SecretStr
    credentials: list[BrokeredCredential] = Field(default_factory=list)
    data: SessionAuthorizationData
