"""Issuing tokens: RS256 access tokens, opaque refresh tokens, internal identity tokens."""

from __future__ import annotations

import hashlib
import secrets
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


class TokenService:
    def __init__(self, keys: KeyRing, settings: AuthSettings) -> None:
        self.keys = keys
        self.settings = settings

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
        return self.keys.sign(
            {
                "sub": str(identity.user_id),
                "tid": str(identity.tenant_id),
                "role": identity.role,
                "scopes": sorted(identity.scopes),
                "via": identity.via,
                **({"sid": identity.session_id} if identity.session_id else {}),
            },
            audience=INTERNAL_AUDIENCE,
            ttl_seconds=self.settings.internal_token_ttl_seconds,
        )

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
