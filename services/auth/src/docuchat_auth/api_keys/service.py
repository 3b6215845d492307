"""Managing a tenant's API keys. Services flush; the request commits."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import UTC, datetime

from docuchat_auth.api_keys.repository import ApiKeyRepository
from docuchat_auth.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyOut
from docuchat_auth.models import ApiKey
from docuchat_common.errors import NotFound
from docuchat_common.identity import Identity
from docuchat_common.pagination import decode_cursor, encode_cursor

KEY_PREFIX = "dck_"
KEY_BYTES = 32
# What the list shows so people can tell keys apart: "dck_" and 8 characters of the secret.
DISPLAY_PREFIX_LENGTH = 12
# token_urlsafe(32) is 43 characters of the URL-safe alphabet.
KEY_FORMAT = re.compile(r"^dck_[A-Za-z0-9_-]{43}$")


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_api_key(key: str) -> str:
    # Keys carry 256 random bits: a fast hash is enough, no salt or argon2 needed.
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked=key.revoked_at is not None,
    )


class ApiKeyService:
    def __init__(self, keys: ApiKeyRepository) -> None:
        self.keys = keys

    async def create(self, identity: Identity, body: ApiKeyCreate) -> ApiKeyCreated:
        secret = new_api_key()
        # A key created through another key, or by a user deleted since their token was issued,
        # has no user row to point at.
        creator = (
            identity.user_id
            if await self.keys.user_in_tenant(identity.user_id, identity.tenant_id)
            else None
        )
        key = await self.keys.add(
            tenant_id=identity.tenant_id,
            created_by=creator,
            name=body.name,
            prefix=secret[:DISPLAY_PREFIX_LENGTH],
            key_hash=hash_api_key(secret),
            scopes=sorted(set(body.scopes)),
            expires_at=body.expires_at,
        )
        return ApiKeyCreated(
            id=key.id,
            name=key.name,
            key=secret,
            prefix=key.prefix,
            scopes=list(key.scopes),
            created_at=key.created_at,
            expires_at=key.expires_at,
        )

    async def list(self, tenant_id: uuid.UUID, *, limit: int, cursor: str | None) -> ApiKeyList:
        after = decode_cursor(cursor) if cursor else None
        # One more than asked tells whether another page exists.
        rows = await self.keys.page(tenant_id, limit=limit + 1, after=after)
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return ApiKeyList(items=[api_key_out(k) for k in page], next_cursor=next_cursor)

    async def revoke(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        """Idempotent: revoking a revoked key keeps its first revocation time."""
        key = await self.keys.get_in_tenant(key_id, tenant_id)
        if key is None:
            # Another tenant's key is as absent as one that never existed.
            raise NotFound("API key not found", code="api_key_not_found")
        await self.keys.revoke(key, datetime.now(UTC))
