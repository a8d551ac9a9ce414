"""A stand-in for the few Boundary client calls the agent makes (read a token, list resolvable
aliases, read a target, authorize a session), answered from memory, with failures on demand.

Only for driving the agent's own logic into its error paths in unit tests: what the agent does
against the real controller is proven by tests/e2e and tests/chaos."""

from __future__ import annotations

import collections
import datetime
from dataclasses import dataclass, field
from typing import cast

from boundary_api import Alias, BoundaryClient, BoundaryError, Target
from boundary_api.listing import Listing
from boundary_api.models import AuthTokenInfo

USER_ID = "u_1234567890"


def alias(value: str, target_id: str = "ttcp_1234567890") -> Alias:
    return Alias(id=f"alt_{abs(hash(value)) % 10**10:010d}", value=value, destination_id=target_id)


def token(suffix: str = "a") -> str:
    return f"at_{suffix * 10}_{'s' * 40}"


@dataclass
class StubController:
    """What one controller would answer; set an `*_error` to make that call fail."""

    aliases: list[Alias] = field(default_factory=list)
    target_port: int = 8080
    user_id: str = USER_ID
    expiration: datetime.datetime | None = None
    token_error: Exception | None = None
    list_error: Exception | None = None
    target_error: BoundaryError | None = None
    authorize_error: BoundaryError | None = None
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    clients: list[StubClient] = field(default_factory=list)

    def connect(self, addr: str, token: str) -> BoundaryClient:
        """A ClientFactory: what the agent calls instead of BoundaryClient(addr, token=...)."""
        client = StubClient(self, addr)
        self.clients.append(client)
        return cast(BoundaryClient, client)

    def _call(self, name: str, error: Exception | None) -> None:
        self.calls[name] += 1
        if error is not None:
            raise error


class StubClient:
    def __init__(self, controller: StubController, addr: str) -> None:
        self.addr = addr
        self.closed = False
        self.auth_tokens = _AuthTokens(controller)
        self.users = _Users(controller)
        self.targets = _Targets(controller)
        self.sessions = _Sessions(controller)

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class _AuthTokens:
    controller: StubController

    async def read(self, token_id: str) -> AuthTokenInfo:
        self.controller._call("auth_tokens.read", self.controller.token_error)
        return AuthTokenInfo(
            id=token_id, user_id=self.controller.user_id, expiration_time=self.controller.expiration
        )


@dataclass
class _Users:
    controller: StubController

    async def list_resolvable_aliases(
        self, user_id: str, *, list_token: str | None = None
    ) -> Listing[Alias]:
        self.controller._call("users.list_resolvable_aliases", self.controller.list_error)
        return Listing(items=list(self.controller.aliases), list_token="lt_stub")


@dataclass
class _Targets:
    controller: StubController

    async def read(self, target_id: str) -> Target:
        self.controller._call("targets.read", self.controller.target_error)
        return Target(
            id=target_id,
            scope_id="p_1234567890",
            attributes={"default_port": self.controller.target_port},
        )


@dataclass
class _Sessions:
    controller: StubController

    async def authorize(self, target: str, *, host_id: str = "") -> object:
        self.controller._call("sessions.authorize", self.controller.authorize_error)
        raise AssertionError("the stub authorizes no session: set authorize_error")
