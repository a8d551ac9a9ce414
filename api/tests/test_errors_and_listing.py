"""Pure logic: mapping controller error bodies to exceptions, and merging listings."""

from __future__ import annotations

import pytest

from boundary_api._transport import Transport, _query, error_from_body
from boundary_api.errors import (
    BoundaryError,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    StaleVersion,
    Unauthenticated,
    Unavailable,
)
from boundary_api.listing import Listing, _is_list_token_refusal
from boundary_api.models import Alias


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected"),
    [
        (404, "NotFound", "Resource not found.", NotFound),
        (404, "NotFound", 'Target "t" not found or incorrect version provided.', StaleVersion),
        (
            400,
            "InvalidArgument",
            "second resource with the same field value that must be unique",
            Conflict,
        ),
        (401, "Unauthenticated", "Unauthenticated, or invalid token.", Unauthenticated),
        (403, "PermissionDenied", "Forbidden.", PermissionDenied),
        (409, "AlreadyExists", "exists", Conflict),
        (500, "Internal", "boom", Unavailable),
        (418, "", "teapot", BoundaryError),
    ],
)
def test_error_kinds(status: int, kind: str, message: str, expected: type[Exception]) -> None:
    error = error_from_body({"kind": kind, "message": message}, status, "GET", "targets/t")
    assert type(error) is expected
    assert error.message == message
    assert str(error).startswith("GET targets/t: ")


def test_invalid_argument_lists_every_field() -> None:
    body = {
        "kind": "InvalidArgument",
        "message": "Error in provided request.",
        "details": {
            "request_fields": [
                {"name": "name", "description": "too long"},
                {"name": "attributes.default_port", "description": "cannot be zero"},
            ]
        },
    }
    error = error_from_body(body, 400, "POST", "targets")
    assert isinstance(error, InvalidArgument)
    assert error.fields == {"name": "too long", "attributes.default_port": "cannot be zero"}
    assert "attributes.default_port: cannot be zero" in str(error)


@pytest.mark.parametrize("caught_as", [Conflict, NotFound])
def test_a_stale_version_answer_is_caught_as_conflict_and_as_not_found(
    caught_as: type[Exception],
) -> None:
    # The sync catches NotFound for objects gone, Conflict for clashes: a stale version is both.
    body = {"kind": "NotFound", "message": 'Target "t" not found or incorrect version provided.'}
    with pytest.raises(caught_as):
        raise error_from_body(body, 404, "PATCH", "targets/t")


def test_list_token_refusals_are_recognised() -> None:
    internal = Unavailable("handlers.ParseListToken: unknown, unknown: error #0: proto: ...")
    expired = InvalidArgument("list token expired")
    other = InvalidArgument("Error in provided request.")
    assert _is_list_token_refusal(internal)
    assert _is_list_token_refusal(expired)
    assert not _is_list_token_refusal(other)


def _alias(alias_id: str, value: str) -> Alias:
    return Alias(id=alias_id, value=value)


def test_full_listing_replaces_the_view() -> None:
    view = {"old": _alias("old", "old.example")}
    Listing(items=[_alias("a", "a.example")], list_token="t").apply_to(view)
    assert list(view) == ["a"]


def test_delta_listing_upserts_and_removes() -> None:
    view = {"a": _alias("a", "a.example"), "b": _alias("b", "b.example")}
    delta = Listing(
        items=[_alias("a", "renamed.example"), _alias("c", "c.example")],
        list_token="t2",
        removed_ids=["b", "never-seen"],
        full=False,
    )
    delta.apply_to(view)
    assert {k: v.value for k, v in view.items()} == {"a": "renamed.example", "c": "c.example"}


def test_query_lowercases_booleans_and_drops_empty() -> None:
    assert _query({"recursive": True, "filter": "", "scope_id": "global"}) == {
        "recursive": "true",
        "scope_id": "global",
    }


async def test_transport_repr_hides_the_token() -> None:
    transport = Transport("http://127.0.0.1:1", token="at_secretvalue")
    try:
        assert "at_secretvalue" not in repr(transport)
        assert "token=set" in repr(transport)
    finally:
        await transport.aclose()
