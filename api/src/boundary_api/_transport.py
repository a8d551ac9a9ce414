"""HTTP transport: one pool of connections with a bound on the calls in flight, explicit
timeouts, bearer token kept out of every repr, log line and exception, retries with jittered
backoff for idempotent calls only, and the controller's error bodies turned into typed
exceptions. The exchange itself is a wire's (boundary_api._wire: httpx or aiohttp)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from boundary_api._wire import Answer, Call, HttpLibrary, NoAnswer, make_wire
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
        http: HttpLibrary = "httpx",
    ) -> None:
        self._token = token
        self._on_attempt = on_attempt
        self.retries = retries
        self.backoff = backoff
        self.api_root = base_url.rstrip("/") + "/v1/"
        timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._wire = make_wire(
            http,
            self.api_root,
            timeout=timeout,
            verify=verify,
            max_connections=max_connections,
            transport=transport,
        )
        # Calls beyond the pool's size wait here, not in the library's pool: httpx's pool
        # spends time on every waiting request at each event (O(waiting x connections)), which
        # made a burst of a thousand calls cost several times the CPU per call.
        self._in_flight = asyncio.Semaphore(max_connections)
        self._pool_timeout = timeout.pool

    def __repr__(self) -> str:
        token = "set" if self._token else "unset"
        return f"<Transport {self.api_root} token={token}>"

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
        await self._wire.aclose()

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
        headers = {"Accept": "application/json"}
        if authenticated and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body, separators=(",", ":")).encode()
        call = Call(method, path, _query(params), content, headers)
        retries = self.retries if method in IDEMPOTENT_METHODS else 0
        attempt = 0
        while True:
            try:
                answer = await self._send(call)
            except NoAnswer as exc:
                self._observe(method, 0)
                if attempt < retries:
                    attempt += 1
                    await self._sleep(attempt, method, path, exc.kind)
                    continue
                raise Unavailable(
                    f"cannot reach the controller at {self.api_root}: {exc}",
                    method=method,
                    path=path,
                ) from exc.__cause__
            self._observe(method, answer.status)
            if answer.status == 429 and attempt < max(retries, self.retries):
                # Rate limited: the controller did not act on the request, so even a
                # non-idempotent call is safe to send again, after the time it asks for.
                attempt += 1
                await self._sleep(attempt, method, path, "HTTP 429", at_least=_retry_after(answer))
                continue
            if answer.status >= 500 and attempt < retries:
                attempt += 1
                await self._sleep(attempt, method, path, f"HTTP {answer.status}")
                continue
            if method == "DELETE" and answer.status == 404 and attempt > 0:
                # An earlier attempt whose answer was lost may have deleted it already.
                return {}
            return _decode(answer, method, path)

    async def _send(self, call: Call) -> Answer:
        """One exchange, once a place among the calls in flight is free (within the pool
        timeout, as the library's own pool would wait)."""
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._in_flight.acquire()
        except TimeoutError:
            raise NoAnswer(
                "PoolTimeout", f"no free connection within {self._pool_timeout:g} s"
            ) from None
        try:
            return await self._wire.send(call)
        finally:
            self._in_flight.release()

    def _observe(self, method: str, status: int) -> None:
        if self._on_attempt is not None:
            self._on_attempt(method, status)

    async def _sleep(
        self, attempt: int, method: str, path: str, why: str, at_least: float = 0.0
    ) -> None:
        delay = at_least + random.uniform(0, self.backoff * 2 ** (attempt - 1))  # noqa: S311
        log.info("retrying %s %s after %s (attempt %d, %.2fs)", method, path, why, attempt, delay)
        await asyncio.sleep(delay)


def _retry_after(answer: Answer) -> float:
    try:
        return min(60.0, float(answer.headers.get("Retry-After", "1")))
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


def _decode(answer: Answer, method: str, path: str) -> JSONObject:
    if answer.status == 429:
        raise _rate_limited(answer, method, path)
    success = 200 <= answer.status < 300
    if (answer.status == 204 or not answer.content) and success:
        return {}
    try:
        payload = json.loads(answer.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(
            f"answer is not JSON: {answer.content[:200].decode(errors='replace')!r}",
            status=answer.status,
            method=method,
            path=path,
        ) from exc
    if not isinstance(payload, dict):
        raise ProtocolError("answer is not a JSON object", method=method, path=path)
    if success:
        return payload
    raise error_from_body(payload, answer.status, method, path)


def _rate_limited(answer: Answer, method: str, path: str) -> RateLimited:
    return RateLimited(
        f"rate limited by the controller; retry after {_retry_after(answer):.0f} s",
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
