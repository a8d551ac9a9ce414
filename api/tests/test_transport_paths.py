"""The transport's retry paths, through the real client with httpx.MockTransport in place of the
network: 429 with Retry-After (even for a POST, which the controller did not act on), 5xx
retried only for idempotent calls, a DELETE whose earlier attempt was lost answering 404, and
every attempt counted for metrics."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from boundary_api import BoundaryClient, NotFound, RateLimited, Unavailable
from boundary_api.models import Alias, Target

TARGET = {"id": "ttcp_1", "scope_id": "p_1", "name": "db", "version": 1}


def client(
    answers: list[httpx.Response | Exception],
    seen: list[httpx.Request],
    attempts: list[tuple[str, int]] | None = None,
    retries: int = 2,
) -> BoundaryClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    observe: Callable[[str, int], None] | None = (
        (lambda m, s: attempts.append((m, s))) if attempts is not None else None
    )
    return BoundaryClient(
        "http://controller.test",
        token="at_1234567890_secret",
        retries=retries,
        backoff=0.0,
        transport=httpx.MockTransport(handle),
        on_attempt=observe,
    )


def limited(after: str = "0") -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": after})


async def test_429_is_retried_after_retry_after_even_for_a_post() -> None:
    seen: list[httpx.Request] = []
    boundary = client([limited(), httpx.Response(200, json=TARGET)], seen)
    target = await boundary.targets.create_tcp("p_1", "db", address="db", default_port=5432)
    assert isinstance(target, Target)
    assert [r.method for r in seen] == ["POST", "POST"]
    assert seen[0].headers["Authorization"] == "Bearer at_1234567890_secret"


async def test_429_beyond_the_retries_raises_rate_limited_with_the_wait() -> None:
    seen: list[httpx.Request] = []
    boundary = client([limited("0"), limited("0"), limited("7")], seen)
    with pytest.raises(RateLimited, match="retry after 7 s") as caught:
        await boundary.targets.read("ttcp_1")
    assert caught.value.status == 429
    assert len(seen) == 3


async def test_5xx_is_retried_for_a_get_and_counted() -> None:
    seen: list[httpx.Request] = []
    attempts: list[tuple[str, int]] = []
    answers: list[httpx.Response | Exception] = [
        httpx.Response(503, json={"kind": "Unavailable", "message": "busy"}),
        httpx.ConnectError("refused"),
        httpx.Response(200, json=TARGET),
    ]
    boundary = client(answers, seen, attempts)
    assert (await boundary.targets.read("ttcp_1")).id == "ttcp_1"
    assert attempts == [("GET", 503), ("GET", 0), ("GET", 200)]


async def test_5xx_is_never_retried_for_a_post() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [
        httpx.Response(500, json={"kind": "Internal", "message": "boom"})
    ]
    boundary = client(answers, seen)
    with pytest.raises(Unavailable, match="boom"):
        await boundary.aliases.create("db.test", destination_id="ttcp_1")
    assert len(seen) == 1


async def test_a_delete_whose_first_answer_was_lost_accepts_404() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [
        httpx.ReadTimeout("lost"),
        httpx.Response(404, json={"kind": "NotFound", "message": "Resource not found."}),
    ]
    boundary = client(answers, seen)
    await boundary.targets.delete("ttcp_1")
    assert [r.method for r in seen] == ["DELETE", "DELETE"]


async def test_a_first_delete_answering_404_is_not_found() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [
        httpx.Response(404, json={"kind": "NotFound", "message": "Resource not found."})
    ]
    boundary = client(answers, seen)
    with pytest.raises(NotFound):
        await boundary.targets.delete("ttcp_1")


async def test_an_unreachable_controller_names_the_address_never_the_token() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [httpx.ConnectError("refused")] * 3
    boundary = client(answers, seen)
    with pytest.raises(Unavailable) as caught:
        await boundary.targets.read("ttcp_1")
    assert "controller.test" in str(caught.value)
    assert "secret" not in str(caught.value)
    assert len(seen) == 3


async def test_an_answer_without_a_list_token_is_a_whole_listing_even_to_a_token() -> None:
    """The controller answers a user who may reach no target at all with an empty, complete
    listing and no list token, whatever token was sent (measured on 0.21.1: it returns before
    reading the token). That is the whole list, so the aliases known so far are gone."""
    seen: list[httpx.Request] = []
    nothing = {"response_type": "complete", "sort_by": "created_time", "sort_dir": "desc"}
    boundary = client([httpx.Response(200, json=nothing)], seen)
    listing = await boundary.users.list_resolvable_aliases("u_1", list_token="earlier")
    assert seen[0].url.params["list_token"] == "earlier"
    assert (listing.full, listing.items, listing.list_token) == (True, [], "")
    view = {"alt_1": Alias(id="alt_1", value="db.example", destination_id="ttcp_1")}
    listing.apply_to(view)
    assert view == {}
