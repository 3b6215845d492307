"""Access tokens for service tests that run without the auth service: a key ring of our own,
and the verifier a service under test should use instead of fetching auth's JWKS."""

from __future__ import annotations

import uuid
from pathlib import Path

from docuchat_auth.settings import AuthSettings
from docuchat_auth.tokens.keys import KeyRing
from docuchat_common.identity import JWKSCache, TokenVerifier


class Signer:
    def __init__(self, keys_dir: Path) -> None:
        self.keys = KeyRing.from_settings(AuthSettings(environment="test", keys_dir=keys_dir))

    def verifier(self) -> TokenVerifier:
        public = {k.kid: k.private_key.public_key() for k in self.keys.keys}
        return TokenVerifier(JWKSCache.static(public), issuer="docuchat-auth", audience="docuchat")

    def headers(
        self,
        tenant_id: uuid.UUID,
        user_id: uuid.UUID | None = None,
        role: str = "owner",
        scopes: tuple[str, ...] = ("read", "write", "chat"),
    ) -> dict[str, str]:
        claims = {
            "sub": str(user_id or uuid.uuid4()),
            "tid": str(tenant_id),
            "role": role,
            "scopes": list(scopes),
        }
        token = self.keys.sign(claims, audience="docuchat", ttl_seconds=300)
        return {"Authorization": f"Bearer {token}"}
