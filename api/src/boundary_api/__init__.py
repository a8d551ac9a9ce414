"""Typed asyncio client for the HashiCorp Boundary controller API."""

from boundary_api.client import BoundaryClient
from boundary_api.errors import (
    BoundaryError,
    Conflict,
    InvalidArgument,
    InvalidListToken,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    StaleVersion,
    Unauthenticated,
    Unavailable,
)
from boundary_api.listing import Listing
from boundary_api.models import (
    Alias,
    AuthToken,
    BrokeredCredential,
    CreatedWorker,
    Credential,
    CredentialStore,
    Role,
    Scope,
    SessionAuthorization,
    SessionAuthorizationData,
    Target,
    Worker,
)

__all__ = [
    "Alias",
    "AuthToken",
    "BoundaryClient",
    "BoundaryError",
    "BrokeredCredential",
    "Conflict",
    "CreatedWorker",
    "Credential",
    "CredentialStore",
    "InvalidArgument",
    "InvalidListToken",
    "Listing",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "RateLimited",
    "Role",
    "Scope",
    "SessionAuthorization",
    "SessionAuthorizationData",
    "StaleVersion",
    "Target",
    "Unauthenticated",
    "Unavailable",
    "Worker",
]
