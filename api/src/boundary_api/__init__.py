"""Typed asyncio client for the HashiCorp Boundary controller API."""

from boundary_api._wire import HttpLibrary
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
    "HttpLibrary",
    "InvalidArgument",
    "InvalidListToken",
    "Listing",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "RateLimited",
    "Scope",
    "SessionAuthorization",
    "SessionAuthorizationData",
    "StaleVersion",
    "Target",
    "Unauthenticated",
    "Unavailable",
    "Worker",
]
