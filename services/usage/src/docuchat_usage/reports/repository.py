from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_usage.models import UsageBucket

KINDS = ("prompt", "completion", "embedding")


class ReportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def totals(
        self, tenant_id: uuid.UUID, since: datetime
    ) -> list[tuple[str, uuid.UUID, str, int]]:
        """(model, user, kind, tokens) since ``since`` (an hour boundary)."""
        rows = await self.session.execute(
            select(
                UsageBucket.model,
                UsageBucket.user_id,
                func.sum(UsageBucket.prompt_tokens),
                func.sum(UsageBucket.completion_tokens),
                func.sum(UsageBucket.embedding_tokens),
            )
            .where(UsageBucket.tenant_id == tenant_id, UsageBucket.hour >= since)
            .group_by(UsageBucket.model, UsageBucket.user_id)
        )
        return [
            (model, user, kind, int(tokens))
            for model, user, *amounts in rows
            for kind, tokens in zip(KINDS, amounts, strict=True)
            if tokens
        ]

    async def by_day(self, tenant_id: uuid.UUID, since: datetime) -> list[tuple[date, str, int]]:
        day = cast(func.timezone("UTC", UsageBucket.hour), Date)
        rows = await self.session.execute(
            select(
                day,
                func.sum(UsageBucket.prompt_tokens),
                func.sum(UsageBucket.completion_tokens),
                func.sum(UsageBucket.embedding_tokens),
            )
            .where(UsageBucket.tenant_id == tenant_id, UsageBucket.hour >= since)
            .group_by(day)
        )
        return [
            (on, kind, int(tokens))
            for on, *amounts in rows
            for kind, tokens in zip(KINDS, amounts, strict=True)
            if tokens
        ]
