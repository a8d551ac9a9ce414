from __future__ import annotations

from boundary_api.models import AuthToken, AuthTokenInfo
from boundary_api.resources._base import ResourceClient, resource_path


class AuthTokens(ResourceClient):
    async def read(self, token_id: str) -> AuthTokenInfo:
        """Who a token belongs to and when it expires (never the token itself)."""
        answer = await self._transport.request("GET", resource_path("auth-tokens", token_id))
        return AuthTokenInfo.model_validate(answer)

    async def delete(self, token_id: str) -> None:
        """Revoke a token (a logout): every later call with it is refused."""
        await self._transport.request("DELETE", resource_path("auth-tokens", token_id))


class AuthMethods(ResourceClient):
    async def authenticate_password(
        self, auth_method_id: str, login_name: str, password: str
    ) -> AuthToken:
        """Log in with a password account and use the new token for every later call."""
        answer = await self._transport.request(
            "POST",
            resource_path("auth-methods", auth_method_id, "authenticate"),
            body={
                "command": "login",
                "attributes": {"login_name": login_name, "password": password},
            },
            authenticated=False,
        )
        token = AuthToken.model_validate(answer.get("attributes") or {})
        self._transport.set_token(token.token.get_secret_value())
        return token
