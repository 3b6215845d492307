from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_usage.models import UsageBucket


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
                UsageBucket.kind,
                func.sum(UsageBucket.tokens),
            )
            .where(UsageBucket.tenant_id == tenant_id, UsageBucket.hour >= since)
            .group_by(UsageBucket.model, UsageBucket.user_id, UsageBucket.kind)
        )
        return [(m, u, k, int(t)) for m, u, k, t in rows]

    async def by_day(self, tenant_id: uuid.UUID, since: datetime) -> list[tuple[date, str, int]]:
        day = cast(func.timezone("UTC", UsageBucket.hour), Date)
        rows = await self.session.execute(
            select(day, UsageBucket.kind, func.sum(UsageBucket.tokens))
            .where(UsageBucket.tenant_id == tenant_id, UsageBucket.hour >= since)
            .group_by(day, UsageBucket.kind)
        )
        return [(d, k, int(t)) for d, k, t in rows]
