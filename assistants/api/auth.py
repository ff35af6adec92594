"""Bearer-key check for `/v1`, answered the way OpenAI answered a bad key."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from assistants.api.errors import Handler, error_response

__all__ = ["bearer_auth"]


def bearer_auth(api_key: str) -> Middleware:
    expected = api_key.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return error_response(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if not hmac.compare_digest(given.strip().encode(), expected):
            # The key is never echoed back: it may be a secret meant for another service.
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
        return await handler(request)

    return check
