from __future__ import annotations

import uuid
from datetime import datetime

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
