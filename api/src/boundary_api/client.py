"""BoundaryClient: the one entry point."""

from __future__ import annotations

from types import TracebackType

import httpx

from boundary_api._transport import DEFAULT_TIMEOUT, AttemptObserver, Transport
from boundary_api.errors import BoundaryError, NotFound, PermissionDenied, Unauthenticated
from boundary_api.models import AuthToken
from boundary_api.resources.aliases import Aliases
from boundary_api.resources.auth import AuthMethods, AuthTokens
from boundary_api.resources.credentials import Credentials, CredentialStores
from boundary_api.resources.groups import Groups, ManagedGroups
from boundary_api.resources.roles import Roles
from boundary_api.resources.scopes import Scopes
from boundary_api.resources.sessions import Sessions
from boundary_api.resources.targets import Targets
from boundary_api.resources.users import Users
from boundary_api.resources.workers import Workers


class BoundaryClient:
    """An asyncio client of one Boundary controller.

        async with BoundaryClient("http://127.0.0.1:9200") as boundary:
            await boundary.authenticate_password("ampw_...", "admin", "password")
            target = await boundary.targets.read("ttcp_...")

    One connection pool serves every call. Every call has a timeout (`timeout`, default 30 s,
    5 s to connect). Idempotent calls (GET, DELETE) are retried `retries` times with jittered
    exponential backoff on transport errors and 5xx answers; others never are. `on_attempt`,
    if given, sees every HTTP attempt's method and status (0: no answer), for metrics.
    `transport` replaces the network (an in-memory controller in tests).
    """

    def __init__(
        self,
        addr: str,
        *,
        token: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.2,
        verify: str | bool = True,
        max_connections: int = 64,
        on_attempt: AttemptObserver | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.addr = addr.rstrip("/")
        self._transport = Transport(
            self.addr,
            token=token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            verify=verify,
            max_connections=max_connections,
            on_attempt=on_attempt,
            transport=transport,
        )
        self.auth_methods = AuthMethods(self._transport)
        self.auth_tokens = AuthTokens(self._transport)
        self.workers = Workers(self._transport)
        self.targets = Targets(self._transport)
        self.aliases = Aliases(self._transport)
        self.sessions = Sessions(self._transport)
        self.users = Users(self._transport)
        self.credential_stores = CredentialStores(self._transport)
        self.credentials = Credentials(self._transport)
        self.scopes = Scopes(self._transport)
        self.roles = Roles(self._transport)
        self.groups = Groups(self._transport)
        self.managed_groups = ManagedGroups(self._transport)

    def __repr__(self) -> str:
        token = "with token" if self._transport.has_token else "no token"
        return f"<BoundaryClient {self.addr} {token}>"

    async def authenticate_password(
        self, auth_method_id: str, login_name: str, password: str
    ) -> AuthToken:
        return await self.auth_methods.authenticate_password(auth_method_id, login_name, password)

    @property
    def token_id(self) -> str | None:
        """The id of the auth token in use, if any (never the token itself)."""
        return self._transport.token_id

    async def login_alive(self) -> bool:
        """Whether the token in use still works. The controller answers a revoked or expired
        token as it answers anyone unknown, with 403 like a missing grant: reading the token
        itself (a grant every user has) tells the two apart."""
        token_id = self.token_id
        if token_id is None:
            return False
        try:
            await self.auth_tokens.read(token_id)
        except (NotFound, PermissionDenied, Unauthenticated):
            return False
        except BoundaryError:
            return True  # cannot tell now (the controller is away); the next refusal asks again
        return True

    def use_token(self, token: str | None) -> None:
        self._transport.set_token(token)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> BoundaryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
