"""Exceptions that say what happened. Each carries the controller's own message and kind, the
HTTP method and path (never the query string, never a token)."""

from __future__ import annotations

from collections.abc import Mapping


class BoundaryError(Exception):
    """Base of every error this client raises."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "",
        status: int | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.message = message
        self.kind = kind
        self.status = status
        self.method = method
        self.path = path
        where = f"{method} {path}: " if method else ""
        code = f" ({kind or 'HTTP'} {status})" if status else ""
        super().__init__(f"{where}{message}{code}")


class InvalidArgument(BoundaryError):
    """The controller rejected the request's content. `fields` maps each offending request
    field to the controller's description of the problem."""

    def __init__(
        self,
        message: str,
        *,
        fields: Mapping[str, str] | None = None,
        kind: str = "",
        status: int | None = None,
        method: str = "",
        path: str = "",
    ) -> None:
        self.fields = dict(fields or {})
        detail = "; ".join(f"{name}: {why}" for name, why in self.fields.items())
        super().__init__(
            f"{message} [{detail}]" if detail else message,
            kind=kind,
            status=status,
            method=method,
            path=path,
        )


class NotFound(BoundaryError):
    """No such resource, or not visible to this token."""


class Conflict(BoundaryError):
    """The request clashes with the resource's current state: a unique value already taken, or
    an update made against an older version."""


class StaleVersion(Conflict, NotFound):
    """An update carried a version that is no longer current. The controller answers this with
    404 ("not found or incorrect version provided"), so it is also a NotFound."""


class Unauthenticated(BoundaryError):
    """Wrong credentials, or a token that is missing, expired or revoked."""


class PermissionDenied(BoundaryError):
    """The token is valid but its grants do not allow this action."""


class Unavailable(BoundaryError):
    """The controller could not be reached or answered 5xx, after any retries. The cause is
    chained (`__cause__`) where there is one."""


class RateLimited(Unavailable):
    """The controller's request quota is used up (HTTP 429), after any retries."""


class InvalidListToken(BoundaryError):
    """A stored list token was refused. Listings recover by themselves by listing afresh; this
    surfaces only from low-level calls."""


class ProtocolError(BoundaryError):
    """The controller's answer was not what this client understands (bad JSON, bad token data)."""
