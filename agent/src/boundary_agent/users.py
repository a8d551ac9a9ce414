"""The OS users logged in to the agent: each one's Boundary client and auth token, and the
resolvable aliases its Boundary user may connect through, kept up to date with list tokens.
This module knows nothing of sessions or listeners: the agent acts on what a refresh returns."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from boundary_agent.health import Health
from boundary_agent.logins import LoginStore, LoginStoreError, StoredLogin
from boundary_api import Alias, BoundaryClient, BoundaryError, Unauthenticated


@dataclass
class User:
    uid: int
    boundary_addr: str
    client: BoundaryClient = field(repr=False)
    token_id: str
    user_id: str
    expiration: datetime.datetime | None
    alias_view: dict[str, Alias] = field(default_factory=dict)
    """Resolvable aliases by id, as listings update them."""
    aliases: dict[str, Alias] = field(default_factory=dict)
    """The same, by alias value."""
    list_token: str | None = None

    @property
    def identity(self) -> tuple[str, str]:
        """Which controller and which Boundary user: a change of either ends the OS user's
        sessions."""
        return self.boundary_addr, self.user_id


class Refresh(enum.Enum):
    UPDATED = "updated"
    """The alias listing is current."""
    FAILED = "failed"
    """The controller did not answer; the user keeps the aliases it had."""
    LOGGED_OUT = "logged out"
    """The token expired or was rejected: the user is gone."""


ClientFactory = Callable[[str, str], BoundaryClient]
"""(controller address, auth token) -> a client of that controller using that token."""


def boundary_client(addr: str, token: str) -> BoundaryClient:
    return BoundaryClient(addr, token=token)


class Users:
    def __init__(
        self,
        health: Health,
        connect: ClientFactory = boundary_client,
        store: LoginStore | None = None,
    ) -> None:
        """`store`: where logins are kept across restarts; None: in memory only."""
        self.health = health
        self.by_uid: dict[int, User] = {}
        self._connect = connect
        self._store = store

    def restore(self) -> int:
        """Open the login store and log in again everyone it holds (no controller call: the
        first refresh checks each token). Returns how many; LoginStoreError when the store
        cannot be used."""
        if self._store is None:
            return 0
        self._store.open()
        logins, problems = self._store.load()
        for problem in problems:
            self.health.record_error(problem)
        for login in logins:
            self.by_uid[login.uid] = User(
                uid=login.uid,
                boundary_addr=login.boundary_addr,
                client=self._connect(login.boundary_addr, login.token),
                token_id=login.token_id,
                user_id=login.user_id,
                expiration=login.expiration,
            )
        return len(logins)

    def get(self, uid: int | None) -> User | None:
        return self.by_uid.get(uid) if uid is not None else None

    def __iter__(self) -> Iterator[User]:
        return iter(list(self.by_uid.values()))

    def __len__(self) -> int:
        return len(self.by_uid)

    async def login(self, uid: int, boundary_addr: str, token: str) -> User:
        """Log a local user in with an auth token, replacing its previous login. The token is
        checked with the controller first: a rejected one changes nothing."""
        token_id = "_".join(token.split("_")[:2])
        client = self._connect(boundary_addr, token)
        try:
            info = await client.auth_tokens.read(token_id)
        except BaseException:
            await client.aclose()
            raise
        user = User(
            uid=uid,
            boundary_addr=client.addr,
            client=client,
            token_id=token_id,
            user_id=info.user_id,
            expiration=info.expiration_time,
        )
        old = self.by_uid.get(uid)
        if old is not None:
            await old.client.aclose()
        self.by_uid[uid] = user
        self._keep(user, token)
        return user

    def _keep(self, user: User, token: str) -> None:
        if self._store is None:
            return
        login = StoredLogin(
            uid=user.uid,
            boundary_addr=user.boundary_addr,
            token_id=user.token_id,
            user_id=user.user_id,
            expiration=user.expiration,
            token=token,
        )
        try:
            self._store.save(login)
        except OSError as exc:
            self.health.record_error(
                f"the login of uid {user.uid} is not kept across restarts: "
                f"login_store: {exc.strerror or exc}"
            )
        except LoginStoreError as exc:
            self.health.record_error(f"the login of uid {user.uid} is not kept: {exc}")

    async def logout(self, user: User) -> None:
        self.by_uid.pop(user.uid, None)
        await user.client.aclose()
        if self._store is not None:
            try:
                self._store.remove(user.uid)
            except OSError as exc:
                self.health.record_error(
                    f"the ended login of uid {user.uid} is still in login_store: "
                    f"{exc.strerror or exc}"
                )

    async def refresh(self, user: User) -> Refresh:
        """Bring the user's resolvable aliases up to date; log it out when its token has expired
        or is rejected."""
        if user.expiration and user.expiration <= datetime.datetime.now(datetime.UTC):
            self.health.record_error(f"auth token {user.token_id} expired; log in again")
            await self.logout(user)
            return Refresh.LOGGED_OUT
        try:
            listing = await user.client.users.list_resolvable_aliases(
                user.user_id, list_token=user.list_token
            )
        except Unauthenticated:
            self.health.record_error(
                f"failed to refresh alias cache: token {user.token_id} rejected"
            )
            await self.logout(user)
            return Refresh.LOGGED_OUT
        except BoundaryError as exc:
            self.health.controller_failed(f"failed to refresh alias cache: {exc}")
            return Refresh.FAILED
        self.health.controller_answered()
        listing.apply_to(user.alias_view)
        user.list_token = listing.list_token
        user.aliases = {a.value: a for a in user.alias_view.values()}
        return Refresh.UPDATED

    async def close(self) -> None:
        for user in self:
            await user.client.aclose()
