from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_chat.models import LLMSettings


class LLMSettingsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: uuid.UUID) -> LLMSettings | None:
        return await self.session.get(LLMSettings, tenant_id)

    async def get_or_new(self, tenant_id: uuid.UUID) -> LLMSettings:
        row = await self.get(tenant_id)
        if row is None:
            row = LLMSettings(tenant_id=tenant_id)
            self.session.add(row)
        return row

    async def save(self, row: LLMSettings) -> None:
        await self.session.flush()
        await self.session.refresh(row)

    async def with_keys(self) -> list[LLMSettings]:
        """Every tenant's settings that hold a key, locked until the transaction ends."""
        stmt = (
            select(LLMSettings)
            .where(LLMSettings.api_key_encrypted.is_not(None))
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.scalars(stmt)).all())
