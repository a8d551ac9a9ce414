from __future__ import annotations

from boundary_api.listing import Listing, list_all
from boundary_api.models import Alias, User
from boundary_api.resources._base import ScopedResource, resource_path


class Users(ScopedResource[User]):
    """Users (in global or an org)."""

    collection = "users"
    model = User

    async def list_resolvable_aliases(
        self, user_id: str, *, list_token: str | None = None, page_size: int | None = None
    ) -> Listing[Alias]:
        """The aliases this user may connect through. Pass the previous listing's token to get
        only the changes."""
        return await list_all(
            self._transport,
            resource_path("users", user_id, "list-resolvable-aliases"),
            Alias,
            {},
            list_token=list_token,
            page_size=page_size,
        )
