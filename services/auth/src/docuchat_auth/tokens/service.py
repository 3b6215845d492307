"""Issuing tokens: RS256 access tokens, opaque refresh tokens, internal identity tokens."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

from docuchat_auth.accounts.schemas import TokenPair
from docuchat_auth.models import User
from docuchat_auth.settings import AuthSettings
from docuchat_auth.tokens.keys import KeyRing
from docuchat_auth.tokens.repository import RefreshTokenRepository
from docuchat_common.identity import INTERNAL_AUDIENCE, Identity

REFRESH_TOKEN_BYTES = 32


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


INTERNAL_TOKENS_CACHED = 10_000


class TokenService:
    def __init__(self, keys: KeyRing, settings: AuthSettings) -> None:
        self.keys = keys
        self.settings = settings
        # Internal tokens by their claims, reused for the first half of their life: the gateway
        # asks on every request, and an RSA signature each time cost more than the rest of
        # forward-auth. Same claims, same token; services see it live at least half its TTL.
        self._internal: dict[tuple[object, ...], tuple[str, float]] = {}

    def access_token(
        self, user: User, scopes: list[str] | None = None, session_id: uuid.UUID | None = None
    ) -> str:
        claims: dict[str, object] = {
            "sub": str(user.id),
            "tid": str(user.tenant_id),
            "role": user.role,
            "scopes": scopes or ["read", "write", "chat"],
        }
        if session_id is not None:
            claims["sid"] = str(session_id)
        return self.keys.sign(
            claims,
            audience=self.settings.jwt_audience,
            ttl_seconds=self.settings.access_token_ttl_seconds,
        )

    def internal_token(self, identity: Identity) -> str:
        """The identity the gateway forwards to services: short-lived, internal audience."""
        claims = {
            "sub": str(identity.user_id),
            "tid": str(identity.tenant_id),
            "role": identity.role,
            "scopes": sorted(identity.scopes),
            "via": identity.via,
            **({"sid": identity.session_id} if identity.session_id else {}),
        }
        key = tuple((name, tuple(v) if isinstance(v, list) else v) for name, v in claims.items())
        now = time.monotonic()
        cached = self._internal.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        ttl = self.settings.internal_token_ttl_seconds
        token = self.keys.sign(claims, audience=INTERNAL_AUDIENCE, ttl_seconds=ttl)
        if len(self._internal) >= INTERNAL_TOKENS_CACHED:
            self._internal.clear()  # a bound, not an LRU: refilled at one signature per caller
        self._internal[key] = (token, now + ttl / 2)
        return token

    async def issue_pair(
        self, user: User, refresh_tokens: RefreshTokenRepository, family_id: uuid.UUID | None = None
    ) -> TokenPair:
        refresh = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
        family_id = family_id or uuid.uuid4()
        await refresh_tokens.add(
            token_hash=hash_refresh_token(refresh),
            family_id=family_id,
            user_id=user.id,
            tenant_id=user.tenant_id,
            expires_at=datetime.now(UTC) + timedelta(days=self.settings.refresh_token_ttl_days),
        )
        return TokenPair(
            access_token=self.access_token(user, session_id=family_id),
            refresh_token=refresh,
            expires_in=self.settings.access_token_ttl_seconds,
        )
