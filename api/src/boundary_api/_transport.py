"""HTTP transport: one pooled httpx client, explicit timeouts, bearer token kept out of every
repr, log line and exception, retries with jittered backoff for idempotent calls only, and the
controller's error bodies turned into typed exceptions."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from boundary_api.errors import (
    BoundaryError,
    Conflict,
    InvalidArgument,
    InvalidListToken,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    StaleVersion,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("boundary_api")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
AttemptObserver = Callable[[str, int], None]
"""Called after every HTTP attempt, retries included, with the method and the status code (0 when
no answer came). Metrics hang off it; it must not raise."""
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
JSONObject = dict[str, Any]


class Transport:
    def __init__(
        self,
        base_url: str,
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
        self._token = token
        self._on_attempt = on_attempt
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/v1/",
            timeout=timeout,
            verify=verify,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"Accept": "application/json"},
            transport=transport,
        )

    def __repr__(self) -> str:
        token = "set" if self._token else "unset"
        return f"<Transport {self._http.base_url} token={token}>"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    @property
    def token_id(self) -> str | None:
        """The id of the token in use (at_<10 characters>: the part before its secret)."""
        if not self._token or not self._token.startswith("at_"):
            return None
        return "_".join(self._token.split("_")[:2])

    def set_token(self, token: str | None) -> None:
        self._token = token

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        body: JSONObject | None = None,
        authenticated: bool = True,
    ) -> JSONObject:
        """Send one API call; return the decoded JSON object ({} for 204)."""
        headers = {}
        if authenticated and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        retries = self.retries if method in IDEMPOTENT_METHODS else 0
        attempt = 0
        while True:
            try:
                # A leading "/" keeps "workers:create:controller-led" from reading as a URL
                # with the scheme "workers"; httpx still puts it under base_url's /v1/.
                response = await self._http.request(
                    method, "/" + path, params=_query(params), json=body, headers=headers
                )
            except httpx.TransportError as exc:
                self._observe(method, 0)
                if attempt < retries:
                    attempt += 1
                    await self._sleep(attempt, method, path, type(exc).__name__)
                    continue
                raise Unavailable(
                    f"cannot reach the controller at {self._http.base_url}: "
                    f"{type(exc).__name__}: {exc}",
                    method=method,
                    path=path,
                ) from exc
            self._observe(method, response.status_code)
            if response.status_code == 429 and attempt < max(retries, self.retries):
                # Rate limited: the controller did not act on the request, so even a
                # non-idempotent call is safe to send again, after the time it asks for.
                attempt += 1
                await self._sleep(
                    attempt, method, path, "HTTP 429", at_least=_retry_after(response)
                )
                continue
            if response.status_code >= 500 and attempt < retries:
                attempt += 1
                await self._sleep(attempt, method, path, f"HTTP {response.status_code}")
                continue
            if method == "DELETE" and response.status_code == 404 and attempt > 0:
                # An earlier attempt whose answer was lost may have deleted it already.
                return {}
            return _decode(response, method, path)

    def _observe(self, method: str, status: int) -> None:
        if self._on_attempt is not None:
            self._on_attempt(method, status)

    async def _sleep(
        self, attempt: int, method: str, path: str, why: str, at_least: float = 0.0
    ) -> None:
        delay = at_least + random.uniform(0, self.backoff * 2 ** (attempt - 1))  # noqa: S311
        log.info("retrying %s %s after %s (attempt %d, %.2fs)", method, path, why, attempt, delay)
        await asyncio.sleep(delay)


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(60.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _query(params: Mapping[str, str | int | bool] | None) -> dict[str, str] | None:
    if not params:
        return None
    return {
        k: (str(v).lower() if isinstance(v, bool) else str(v))
        for k, v in params.items()
        if v is not None and v != ""
    }


def _decode(response: httpx.Response, method: str, path: str) -> JSONObject:
    if response.status_code == 429:
        raise _rate_limited(response, method, path)
    if (response.status_code == 204 or not response.content) and response.is_success:
        return {}
    try:
        payload = response.json()
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"answer is not JSON: {response.text[:200]!r}",
            status=response.status_code,
            method=method,
            path=path,
        ) from exc
    if not isinstance(payload, dict):
        raise ProtocolError("answer is not a JSON object", method=method, path=path)
    if response.is_success:
        return payload
    raise error_from_body(payload, response.status_code, method, path)


def _rate_limited(response: httpx.Response, method: str, path: str) -> RateLimited:
    return RateLimited(
        f"rate limited by the controller; retry after {_retry_after(response):.0f} s",
        kind="ResourceExhausted",
        status=429,
        method=method,
        path=path,
    )


def error_from_body(payload: JSONObject, status: int, method: str, path: str) -> BoundaryError:
    kind = str(payload.get("kind", ""))
    message = str(payload.get("message") or f"HTTP {status}")
    if status == 400 and kind == "InvalidArgument" and "must be unique" not in message:
        fields = {
            f.get("name", "?"): f.get("description", "")
            for f in (payload.get("details") or {}).get("request_fields") or []
        }
        return InvalidArgument(
            message, fields=fields, kind=kind, status=status, method=method, path=path
        )
    exception: type[BoundaryError]
    if status == 400 and kind == "invalid list token":
        # Expired, or issued under other grants ("grants have changed since list token was
        # issued": a role gave the user more or less).
        exception = InvalidListToken
    elif status == 400 and kind == "InvalidArgument":
        # The controller reports a taken unique value (a name, an alias) as InvalidArgument.
        exception = Conflict
    elif status == 404 and "incorrect version" in message:
        exception = StaleVersion
    elif status == 404:
        exception = NotFound
    elif status == 409:
        exception = Conflict
    elif status == 401:
        exception = Unauthenticated
    elif status == 403:
        exception = PermissionDenied
    elif status >= 500:
        exception = Unavailable
    else:
        exception = BoundaryError
    return exception(message, kind=kind, status=status, method=method, path=path)
