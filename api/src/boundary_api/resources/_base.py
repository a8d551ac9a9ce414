from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from boundary_api._transport import JSONObject, Transport


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[Any] = _Unset()
"""Marks an update argument that is left as it is (None would clear the field)."""


def resource_path(collection: str, resource_id: str, action: str = "") -> str:
    path = f"{collection}/{quote(resource_id, safe='')}"
    return f"{path}:{action}" if action else path


def without_unset(fields: dict[str, Any]) -> JSONObject:
    return {k: v for k, v in fields.items() if v is not UNSET}


def without_empty(fields: dict[str, Any]) -> JSONObject:
    return {k: v for k, v in fields.items() if v not in (None, "", UNSET)}


class ResourceClient:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport
