"""A logged-in Boundary client built from the operator settings."""

from __future__ import annotations

import httpx

from boundary_api import BoundaryClient, HttpLibrary
from boundary_operator.metrics import count_boundary_attempt
from boundary_operator.settings import OperatorSettings

HTTP: HttpLibrary = "aiohttp"
"""A Service sync bursts a thousand calls at once: aiohttp carries them for a fraction of
httpx's CPU per call (bench.operator_services), CPU the controller shares."""


async def connect(settings: OperatorSettings) -> BoundaryClient:
    """Log in (password, or the given token). Raises boundary_api errors on failure; the caller
    turns them into conditions and retries with backoff."""
    client = BoundaryClient(
        settings.boundary_addr,
        verify=settings.boundary_ca_cert or True,
        # An unreachable controller shows in conditions and Events within ~20 s (two tries).
        retries=1,
        timeout=httpx.Timeout(10.0, connect=5.0),
        on_attempt=count_boundary_attempt,
        http=HTTP,
    )
    token = settings.boundary_token.get_secret_value()
    try:
        if token:
            client.use_token(token)
        else:
            await client.authenticate_password(
                settings.boundary_auth_method_id,
                settings.boundary_login_name,
                settings.boundary_password.get_secret_value(),
            )
    except BaseException:
        await client.aclose()
        raise
    return client
