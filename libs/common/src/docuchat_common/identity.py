"""Who is calling: RS256 tokens verified against the auth service's JWKS.

The gateway's forward-auth turns a user's access token or API key into a short-lived internal
token in ``X-DocuChat-Identity`` (the gateway drops any client-sent copy). Services never trust
a header's content: they verify its signature with the JWKS (cached, refetched on an unknown
``kid`` so key rotation needs no restart), its issuer, audience and expiry. A caller may also
present an access token directly as ``Authorization: Bearer`` (service to service, tests).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import httpx
import jwt
from cachetools import TLRUCache
from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from docuchat_common.context import bind_tenant
from docuchat_common.errors import Forbidden, ServiceUnavailable, Unauthorized

IDENTITY_HEADER = "X-DocuChat-Identity"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The caller's tenant id, set by the gateway after forward-auth for rate limiting only.
TENANT_HEADER = "X-DocuChat-Tenant"
INTERNAL_AUDIENCE = "docuchat-internal"
ALGORITHMS = ["RS256"]
# Verified tokens remembered per verifier: a client sends the same token with every request, and
# decoding one (base64 checks, an RSA signature, claims) is a good part of a small request's
# CPU, at the gateway's forward-auth and again in the service. A remembered token still ends at
# its expiry; no longer than VERIFIED_TOKEN_MAX_SECONDS either, so a key withdrawn from the JWKS
# stops counting within that (services already keep fetched keys for minutes).
VERIFIED_TOKENS_CACHED = 10_000
VERIFIED_TOKEN_MAX_SECONDS = 60.0

Role = Literal["owner", "admin", "member"]
ROLE_RANK: dict[str, int] = {"member": 1, "admin": 2, "owner": 3}


@dataclass(frozen=True)
class Identity:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    token_id: str | None = None
    via: Literal["access_token", "api_key"] = "access_token"
    # The refresh-token family (login session) an access token belongs to, when it has one.
    session_id: str | None = None
    raw_token: str | None = field(default=None, repr=False, compare=False)

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def at_least(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[role]


class JWKSCache:
    """Fetches and caches the auth service's public keys by ``kid``."""

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float = 300,
        min_refetch_interval: float = 5,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.min_refetch_interval = min_refetch_interval
        self._client = client
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def static(cls, keys: dict[str, Any]) -> JWKSCache:
        """A cache that never fetches: for the key owner itself."""
        cache = cls("static://", ttl_seconds=float("inf"), min_refetch_interval=float("inf"))
        cache._keys = dict(keys)
        cache._fetched_at = time.monotonic()
        return cache

    async def _fetch(self) -> None:
        client = self._client or httpx.AsyncClient(timeout=5)
        try:
            response = await client.get(self.url)
            response.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(response.json())
        finally:
            if self._client is None:
                await client.aclose()
        self._keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
        self._fetched_at = time.monotonic()

    async def get(self, kid: str) -> Any:
        age = time.monotonic() - self._fetched_at
        if kid in self._keys and age < self.ttl_seconds:
            return self._keys[kid]
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            stale = age >= self.ttl_seconds
            # An unknown kid triggers a refetch (rotation), but not more often than the floor,
            # so garbage tokens cannot make us hammer the auth service.
            if stale or (kid not in self._keys and age >= self.min_refetch_interval):
                try:
                    await self._fetch()
                except (httpx.HTTPError, ValueError, jwt.PyJWKError) as exc:
                    if not self._keys:
                        raise ServiceUnavailable("identity keys are unavailable") from exc
        if kid not in self._keys:
            raise Unauthorized("token signed by an unknown key", code="invalid_token")
        return self._keys[kid]


def _verified_until(_key: Any, claims: dict[str, Any], now: float) -> float:
    return min(float(claims["exp"]), now + VERIFIED_TOKEN_MAX_SECONDS)


class TokenVerifier:
    def __init__(
        self, jwks: JWKSCache, *, issuer: str, audience: str, leeway_seconds: float = 5
    ) -> None:
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        # Wall-clock time, as the tokens' ``exp``.
        self._verified: TLRUCache[tuple[str, str], dict[str, Any]] = TLRUCache(
            maxsize=VERIFIED_TOKENS_CACHED, ttu=_verified_until, timer=time.time
        )

    async def verify(self, token: str, *, audience: str | None = None) -> dict[str, Any]:
        audience = audience or self.audience
        claims = self._verified.get((token, audience))
        if claims is None:
            claims = await self._decode(token, audience)
            self._verified[token, audience] = claims
        return dict(claims)

    async def _decode(self, token: str, audience: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token", code="invalid_token") from exc
        if header.get("alg") not in ALGORITHMS:
            raise Unauthorized("token algorithm not accepted", code="invalid_token")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise Unauthorized("token has no key id", code="invalid_token")
        key = await self.jwks.get(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=self.leeway_seconds,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token", code="invalid_token") from exc
        return claims

    async def identity(self, token: str, *, audience: str | None = None) -> Identity:
        claims = await self.verify(token, audience=audience)
        try:
            return Identity(
                user_id=uuid.UUID(claims["sub"]),
                tenant_id=uuid.UUID(claims["tid"]),
                role=str(claims["role"]),
                scopes=frozenset(claims.get("scopes", [])),
                token_id=claims.get("jti"),
                via="api_key" if claims.get("via") == "api_key" else "access_token",
                session_id=claims.get("sid"),
                raw_token=token,
            )
        except (KeyError, ValueError) as exc:
            raise Unauthorized("token lacks identity claims", code="invalid_token") from exc


def bearer_token(connection: HTTPConnection) -> str | None:
    """The ``Authorization: Bearer`` credential of a request or a WebSocket, if any."""
    header = connection.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def verifier_from(request: Request) -> TokenVerifier:
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("app.state.token_verifier is not configured")
    return verifier


async def current_identity(request: Request) -> Identity:
    verifier = verifier_from(request)
    internal = request.headers.get(IDENTITY_HEADER)
    if internal:
        identity = await verifier.identity(internal, audience=INTERNAL_AUDIENCE)
    else:
        token = bearer_token(request)
        if token is None:
            raise Unauthorized("missing credentials")
        if token.startswith("dck_"):
            # API keys are resolved by the gateway's forward-auth, never by a service.
            raise Unauthorized("API keys are accepted through the gateway only")
        identity = await verifier.identity(token)
    bind_tenant(identity.tenant_id)
    request.state.identity = identity
    return identity


CurrentIdentity = Annotated[Identity, Depends(current_identity)]


def require(
    role: Role | None = None, scope: str | tuple[str, ...] | None = None
) -> Callable[[Identity, Request], Awaitable[Identity]]:
    """A guard: the caller has at least ``role``, and an API key caller has ``scope`` (or one
    of the scopes, given several)."""
    scopes = (scope,) if isinstance(scope, str) else scope

    async def guard(identity: CurrentIdentity, request: Request) -> Identity:
        if role is not None and not identity.at_least(role):
            raise Forbidden(f"requires the {role} role", code="insufficient_role")
        if scopes and identity.via == "api_key" and not any(identity.has_scope(s) for s in scopes):
            wanted = " or ".join(repr(s) for s in scopes)
            raise Forbidden(f"API key lacks the {wanted} scope", code="insufficient_scope")
        count_request(request, identity)
        return identity

    return guard


def count_request(request: Request, identity: Identity) -> None:
    """Services that hold the quota state (chat, ingest) enforce the plan's request rate on
    requests that make work (uploads, questions, searches); reads and polls are free."""
    runtime = getattr(request.app.state, "runtime", None)
    quota = runtime.state.get("quota") if runtime is not None else None
    if quota is not None and request.method not in SAFE_METHODS:
        quota.check_rate(identity.tenant_id)


def require_role(role: Role) -> Callable[[Identity, Request], Awaitable[Identity]]:
    return require(role=role)


def require_scope(scope: str) -> Callable[[Identity, Request], Awaitable[Identity]]:
    return require(scope=scope)
