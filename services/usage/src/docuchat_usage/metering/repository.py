"""SQL for metering: hourly buckets, period totals and indexed documents (upserts)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_usage.models import TenantPeriodUsage, UsageBucket, UsageDocument


@dataclass(frozen=True)
class BucketKey:
    tenant_id: uuid.UUID
    hour: datetime
    user_id: uuid.UUID
    model: str
    kind: str


@dataclass(frozen=True)
class PeriodKey:
    tenant_id: uuid.UUID
    period: str
    starts_on: date


class MeteringRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_to_buckets(self, amounts: Iterable[tuple[BucketKey, int, int]]) -> None:
        rows = [
            {
                "tenant_id": k.tenant_id,
                "hour": k.hour,
                "user_id": k.user_id,
                "model": k.model,
                "kind": k.kind,
                "tokens": tokens,
                "events": events,
            }
            for k, tokens, events in amounts
        ]
        if not rows:
            return
        # One statement, many parameter sets: compiled once and cached (a multi-VALUES literal
        # would be compiled anew for every batch, which costs more than running it).
        stmt = insert(UsageBucket)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant_id", "hour", "user_id", "model", "kind"],
                set_={
                    "tokens": UsageBucket.tokens + stmt.excluded.tokens,
                    "events": UsageBucket.events + stmt.excluded.events,
                },
            ),
            rows,
        )

    async def add_to_periods(self, amounts: Iterable[tuple[PeriodKey, int]]) -> None:
        rows = [
            {"tenant_id": k.tenant_id, "period": k.period, "starts_on": k.starts_on, "tokens": n}
            for k, n in amounts
        ]
        if not rows:
            return
        stmt = insert(TenantPeriodUsage)
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant_id", "period", "starts_on"],
                set_={"tokens": TenantPeriodUsage.tokens + stmt.excluded.tokens},
            ),
            rows,
        )

    async def document_indexed(
        self, tenant_id: uuid.UUID, document_id: uuid.UUID, size_bytes: int
    ) -> None:
        # A reindexed document is still one document: the row is replaced, never doubled.
        stmt = insert(UsageDocument).values(
            tenant_id=tenant_id, document_id=document_id, size_bytes=size_bytes
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant_id", "document_id"],
                set_={"size_bytes": stmt.excluded.size_bytes},
            )
        )

    async def document_deleted(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(UsageDocument).where(
                UsageDocument.tenant_id == tenant_id, UsageDocument.document_id == document_id
            )
        )

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        for model in (UsageBucket, TenantPeriodUsage, UsageDocument):
            await self.session.execute(delete(model).where(model.tenant_id == tenant_id))
