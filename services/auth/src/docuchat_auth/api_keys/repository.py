from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.models import ApiKey, User


class ApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        tenant_id: uuid.UUID,
        created_by: uuid.UUID | None,
        name: str,
        prefix: str,
        key_hash: str,
        scopes: list[str],
        expires_at: datetime | None,
    ) -> ApiKey:
        key = ApiKey(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            created_by=created_by,
            name=name,
            prefix=prefix,
            key_hash=key_hash,
            scopes=scopes,
            expires_at=expires_at,
        )
        self.session.add(key)
        await self.session.flush()
        # created_at is the database's clock; read it back rather than lazy-load it later.
        await self.session.refresh(key, ["created_at"])
        return key

    async def user_in_tenant(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(User.id).where(User.id == user_id, User.tenant_id == tenant_id)
        )
        return found is not None

    async def page(
        self,
        tenant_id: uuid.UUID,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> list[ApiKey]:
        """Newest first; ``after`` is the (created_at, id) of the last key already seen."""
        stmt = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
        if after is not None:
            stmt = stmt.where(tuple_(ApiKey.created_at, ApiKey.id) < tuple_(*after))
        stmt = stmt.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def get_in_tenant(self, key_id: uuid.UUID, tenant_id: uuid.UUID) -> ApiKey | None:
        return await self.session.scalar(
            select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id)
        )

    async def revoke(self, key: ApiKey, at: datetime) -> None:
        if key.revoked_at is None:
            key.revoked_at = at
            await self.session.flush()

    async def find_usable(self, key_hash: str, now: datetime) -> ApiKey | None:
        """The key with this hash, unless it is revoked or expired."""
        return await self.session.scalar(
            select(ApiKey).where(
                ApiKey.key_hash == key_hash,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        )

    async def mark_used(self, key_id: uuid.UUID, now: datetime, *, interval: timedelta) -> None:
        """Set last_used_at unless another replica did within ``interval``: at most one write
        per key and interval, however many replicas serve it."""
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key_id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - interval),
            )
            .values(last_used_at=now)
        )
