"""JWKS and the gateway's forward-auth endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from docuchat_auth.tokens.keys import KeyRing
from docuchat_auth.tokens.service import TokenService
from docuchat_common.errors import Unauthorized
from docuchat_common.identity import IDENTITY_HEADER, verifier_from
from docuchat_common.service import runtime_of

router = APIRouter(tags=["tokens"])


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    keys: KeyRing = runtime_of(request).state["keys"]
    response.headers["Cache-Control"] = "public, max-age=300"
    return keys.jwks()


@router.get("/internal/forward-auth", include_in_schema=False)
async def forward_auth(request: Request) -> Response:
    """Called by the gateway for every protected route: 200 plus the verified identity as a
    short-lived internal token, or 401 which the gateway returns to the client as is."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing credentials")
    token = token.strip()
    if token.startswith("dck_"):
        raise Unauthorized("API keys are not enabled yet", code="invalid_api_key")
    identity = await verifier_from(request).identity(token)
    tokens: TokenService = runtime_of(request).state["tokens"]
    return Response(status_code=200, headers={IDENTITY_HEADER: tokens.internal_token(identity)})
