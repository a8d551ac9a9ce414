"""Paginated listings with list tokens.

A listing follows pages until the controller says `complete`. Keep its `list_token` and pass it
back later to get only what changed since (items created or updated, and `removed_ids`). If the
controller refuses a stored token (expired, from another controller, or issued before the
user's grants changed), the listing restarts from scratch by itself and says so with
`full=True`, so callers replace their view instead of merging into it; so does an answer that
comes back without a list token.

A refresh also re-sends items changed up to 30 s before the previous listing (the controller
looks back that far to catch transactions that committed late), so treat refreshed items as
upserts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from boundary_api._transport import Transport
from boundary_api.errors import InvalidArgument, InvalidListToken, Unavailable

log = logging.getLogger("boundary_api")

MAX_PAGE_SIZE = 1000


ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass
class Listing(Generic[ModelT]):
    items: list[ModelT]
    list_token: str
    removed_ids: list[str] = field(default_factory=list)
    full: bool = True
    """True when this listing holds everything (a first listing, or one restarted after a
    refused token); False when it holds only changes since the token passed in."""
    pages: int = 1

    def apply_to(self, view: MutableMapping[str, ModelT]) -> None:
        """Bring a dict of items by id up to date with this listing."""
        if self.full:
            view.clear()
        for item in self.items:
            view[getattr(item, "id")] = item  # noqa: B009 - every listed resource has an id
        for removed in self.removed_ids:
            view.pop(removed, None)


def _is_list_token_refusal(exc: InvalidArgument | InvalidListToken | Unavailable) -> bool:
    # A malformed token answers 500 Internal ("handlers.ParseListToken: ..."), a foreign one
    # 400 InvalidArgument naming the list token; an expired one, or one issued under other
    # grants, 400 "invalid list token" (InvalidListToken).
    text = exc.message.lower().replace(" ", "").replace("_", "")
    return "listtoken" in text


async def list_all(
    transport: Transport,
    path: str,
    model: type[ModelT],
    params: Mapping[str, str | int | bool],
    *,
    list_token: str | None = None,
    page_size: int | None = None,
) -> Listing[ModelT]:
    try:
        return await _follow_pages(transport, path, model, params, list_token, page_size)
    except (InvalidArgument, InvalidListToken, Unavailable) as exc:
        refused = isinstance(exc, InvalidListToken) or _is_list_token_refusal(exc)
        if not list_token or not refused:
            raise
        log.info("list token for %s refused (%s); listing afresh", path, exc.message)
        return await _follow_pages(transport, path, model, params, None, page_size)


async def _follow_pages(
    transport: Transport,
    path: str,
    model: type[ModelT],
    params: Mapping[str, str | int | bool],
    list_token: str | None,
    page_size: int | None,
) -> Listing[ModelT]:
    query: dict[str, str | int | bool] = dict(params)
    if page_size:
        query["page_size"] = min(page_size, MAX_PAGE_SIZE)
    items: dict[str, ModelT] = {}
    removed: list[str] = []
    token = list_token
    pages = 0
    while True:
        if token:
            query["list_token"] = token
        page = await transport.request("GET", path, params=query)
        pages += 1
        for raw in page.get("items") or []:
            item = model.model_validate(raw)
            items[getattr(item, "id")] = item  # noqa: B009
        removed.extend(page.get("removed_ids") or [])
        next_token = page.get("list_token") or ""
        if page.get("response_type", "complete") in ("complete", "") or not next_token:
            token = next_token
            break
        if next_token == token:
            raise InvalidListToken(f"{path}: the controller returned the same list token twice")
        token = next_token
    # An item deleted while we paged shows up in both lists; it is gone.
    for gone in removed:
        items.pop(gone, None)
    return Listing(
        items=list(items.values()),
        list_token=token or "",
        removed_ids=removed,
        # An answer with no list token did not use ours: it is everything. The controller
        # answers so when the caller may see nothing at all (a user without any permitted
        # target listing resolvable aliases, measured on 0.21.1).
        full=not list_token or not token,
        pages=pages,
    )
