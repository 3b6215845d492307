from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.models import RefreshToken


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        token_hash: str,
        family_id: uuid.UUID,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        expires_at: datetime,
    ) -> None:
        self.session.add(
            RefreshToken(
                id=uuid.uuid4(),
                token_hash=token_hash,
                family_id=family_id,
                user_id=user_id,
                tenant_id=tenant_id,
                expires_at=expires_at,
            )
        )
        await self.session.flush()

    async def get_for_update(self, token_hash: str) -> RefreshToken | None:
        """The token row, locked: two concurrent refreshes with one token cannot both win."""
        return await self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )

    async def mark_used(self, token: RefreshToken) -> None:
        token.used_at = datetime.now(UTC)
        await self.session.flush()

    async def revoke_family(self, family_id: uuid.UUID) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )

    async def revoke_user(
        self, user_id: uuid.UUID, *, except_family: uuid.UUID | None = None
    ) -> None:
        """Every session of the user ends (but ``except_family``, the caller's own)."""
        stmt = (
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        if except_family is not None:
            stmt = stmt.where(RefreshToken.family_id != except_family)
        await self.session.execute(stmt)
