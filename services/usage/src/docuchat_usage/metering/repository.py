"""SQL for metering: hourly buckets, period totals and indexed documents (upserts)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, text
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
        rows = list(amounts)
        if not rows:
            return
        # One statement over arrays (unnest): one round trip and no per-row parameter work,
        # whatever the batch size. Metering throughput is bound by this upsert.
        await self.session.execute(
            text(
                """
                INSERT INTO usage_buckets (tenant_id, hour, user_id, model, kind, tokens, events)
                SELECT * FROM unnest(
                    CAST(:tenants AS uuid[]), CAST(:hours AS timestamptz[]),
                    CAST(:users AS uuid[]), CAST(:models AS varchar[]),
                    CAST(:kinds AS varchar[]), CAST(:tokens AS bigint[]), CAST(:events AS int[])
                )
                ON CONFLICT (tenant_id, hour, user_id, model, kind) DO UPDATE SET
                    tokens = usage_buckets.tokens + excluded.tokens,
                    events = usage_buckets.events + excluded.events
                """
            ),
            {
                "tenants": [k.tenant_id for k, _, _ in rows],
                "hours": [k.hour for k, _, _ in rows],
                "users": [k.user_id for k, _, _ in rows],
                "models": [k.model for k, _, _ in rows],
                "kinds": [k.kind for k, _, _ in rows],
                "tokens": [tokens for _, tokens, _ in rows],
                "events": [events for _, _, events in rows],
            },
        )

    async def add_to_periods(self, amounts: Iterable[tuple[PeriodKey, int]]) -> None:
        rows = list(amounts)
        if not rows:
            return
        await self.session.execute(
            text(
                """
                INSERT INTO tenant_period_usage (tenant_id, period, starts_on, tokens)
                SELECT * FROM unnest(
                    CAST(:tenants AS uuid[]), CAST(:periods AS varchar[]),
                    CAST(:starts AS date[]), CAST(:tokens AS bigint[])
                )
                ON CONFLICT (tenant_id, period, starts_on) DO UPDATE SET
                    tokens = tenant_period_usage.tokens + excluded.tokens
                """
            ),
            {
                "tenants": [k.tenant_id for k, _ in rows],
                "periods": [k.period for k, _ in rows],
                "starts": [k.starts_on for k, _ in rows],
                "tokens": [n for _, n in rows],
            },
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
