"""JWKS and the gateway's forward-auth endpoint."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request, Response

from docuchat_auth.accounts.repository import AccountRepository
from docuchat_auth.api_keys.repository import ApiKeyRepository
from docuchat_auth.api_keys.resolver import api_key_resolver
from docuchat_auth.api_keys.service import looks_like_api_key
from docuchat_auth.tokens.holders import TokenHolders
from docuchat_auth.tokens.keys import KeyRing
from docuchat_auth.tokens.service import TokenService
from docuchat_common.errors import Unauthorized
from docuchat_common.identity import IDENTITY_HEADER, TENANT_HEADER, bearer_token, verifier_from
from docuchat_common.service import DbSession, runtime_of

router = APIRouter(tags=["tokens"])

# Browsers cannot set headers on an EventSource or a WebSocket, so these two streams also take
# the access token as ``?access_token=``. Only these, only GET (the WebSocket upgrade too) and
# only access tokens: they live minutes, an API key lives until revoked and URLs get logged.
# The gateway's access log drops query strings; services redact it from their spans.
QUERY_TOKEN_PATHS = re.compile(r"^/api/v1/(sessions/[^/]+/ws|documents/[^/]+/events)$")
QUERY_TOKEN_PARAMETER = "access_token"  # noqa: S105 - a parameter's name, not a secret


def _query_token(request: Request) -> str | None:
    """The ``access_token`` of the client's URL (``X-Forwarded-Uri``) on a streaming route."""
    if request.headers.get("x-forwarded-method", "").upper() != "GET":
        return None
    url = urlsplit(request.headers.get("x-forwarded-uri", ""))
    if not QUERY_TOKEN_PATHS.match(url.path):
        return None
    values = parse_qs(url.query).get(QUERY_TOKEN_PARAMETER)
    if not values or not values[0].strip():
        return None
    token = values[0].strip()
    if looks_like_api_key(token):
        raise Unauthorized(
            "API keys are not accepted in a URL: send them in the Authorization header",
            code="invalid_credentials_location",
        )
    return token


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    keys: KeyRing = runtime_of(request).state["keys"]
    response.headers["Cache-Control"] = "public, max-age=300"
    return keys.jwks()


@router.get("/internal/forward-auth", include_in_schema=False)
async def forward_auth(request: Request, session: DbSession) -> Response:
    """Called by the gateway for every protected route: 200 plus the verified identity as a
    short-lived internal token, or 401 which the gateway returns to the client as is.

    Accepts access tokens and ``dck_`` API keys in ``Authorization``, and an access token as
    ``?access_token=`` on the two streaming routes (see ``QUERY_TOKEN_PATHS``). Browsers send
    CORS preflights without credentials, so an OPTIONS request (``X-Forwarded-Method``) passes
    without an identity.
    """
    if request.headers.get("x-forwarded-method", "").upper() == "OPTIONS":
        return Response(status_code=200)
    token = bearer_token(request) or _query_token(request)
    if token is None:
        raise Unauthorized("missing credentials")
    runtime = runtime_of(request)
    # The session connects lazily: only an API key or a token holder the caches cannot answer
    # (or a key due for its last_used_at write) costs a database round trip.
    if looks_like_api_key(token):
        resolver = api_key_resolver(runtime)
        identity = await resolver.resolve(token, ApiKeyRepository(session))
    else:
        identity = await verifier_from(request).identity(token)
        holders: TokenHolders = runtime.state["token_holders"]
        await holders.ensure_member(identity, AccountRepository(session))
    tokens: TokenService = runtime.state["tokens"]
    return Response(
        status_code=200,
        headers={
            IDENTITY_HEADER: tokens.internal_token(identity),
            # The gateway's per-tenant rate limit groups requests by this (never trusted by
            # services: they read the tenant from the signed identity only).
            TENANT_HEADER: str(identity.tenant_id),
        },
    )
