"""Kubernetes objects as the operator handles them: plain JSON (`Manifest`), with timestamps
written as the API writes them."""

from __future__ import annotations

import datetime
from typing import Any

Manifest = dict[str, Any]


def rfc3339(moment: datetime.datetime | None = None) -> str:
    """`moment` (default now) in UTC, to the second: the API's own timestamp form."""
    moment = moment or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def covers(live: object, desired: object) -> bool:
    """Whether the live object already holds everything in `desired`: every key of a mapping
    (the apiserver adds defaults and status beside them), lists item by item, values equal."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and covers(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(covers(a, b) for a, b in zip(live, desired, strict=True))
        )
    return live == desired
