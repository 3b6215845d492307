"""JWKS and the gateway's forward-auth endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from docuchat_auth.api_keys.repository import ApiKeyRepository
from docuchat_auth.api_keys.resolver import api_key_resolver
from docuchat_auth.api_keys.service import looks_like_api_key
from docuchat_auth.tokens.keys import KeyRing
from docuchat_auth.tokens.service import TokenService
from docuchat_common.errors import Unauthorized
from docuchat_common.identity import IDENTITY_HEADER, TENANT_HEADER, verifier_from
from docuchat_common.service import DbSession, runtime_of

router = APIRouter(tags=["tokens"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    keys: KeyRing = runtime_of(request).state["keys"]
    response.headers["Cache-Control"] = "public, max-age=300"
    return keys.jwks()


@router.get("/internal/forward-auth", include_in_schema=False)
async def forward_auth(request: Request, session: DbSession) -> Response:
    """Called by the gateway for every protected route: 200 plus the verified identity as a
    short-lived internal token, or 401 which the gateway returns to the client as is.

    Accepts access tokens and ``dck_`` API keys. Browsers send CORS preflights without
    credentials, so an OPTIONS request (``X-Forwarded-Method``) passes without an identity.
    """
    if request.headers.get("x-forwarded-method", "").upper() == "OPTIONS":
        return Response(status_code=200)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing credentials")
    token = token.strip()
    runtime = runtime_of(request)
    # The session connects lazily: only an API key the cache cannot answer (or one due for
    # its last_used_at write) costs a database round trip; access tokens never do.
    if looks_like_api_key(token):
        resolver = api_key_resolver(runtime)
        identity = await resolver.resolve(token, ApiKeyRepository(session))
    else:
        identity = await verifier_from(request).identity(token)
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
