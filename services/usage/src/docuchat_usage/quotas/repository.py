from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Uuid, any_, delete, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_usage.models import (
    Plan,
    QuotaState,
    Subscription,
    TenantPeriodUsage,
    UsageDocument,
)


def _any_of(tenant_ids: set[uuid.UUID]) -> Any:
    """``= ANY(array)``: one statement (and one prepared plan) whatever the number of tenants, where
    ``IN`` renders one parameter per tenant."""
    return any_(literal(list(tenant_ids), type_=ARRAY(Uuid())))


class QuotaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def plans_of(self, tenant_ids: set[uuid.UUID]) -> dict[uuid.UUID, Plan]:
        rows = await self.session.execute(
            select(Subscription.tenant_id, Plan)
            .join(Plan, Plan.id == Subscription.plan_id)
            .where(Subscription.tenant_id == _any_of(tenant_ids))
        )
        return {tenant_id: plan for tenant_id, plan in rows}

    async def period_tokens(
        self, tenant_ids: set[uuid.UUID], period: str, starts_on: date
    ) -> dict[uuid.UUID, int]:
        rows = await self.session.execute(
            select(TenantPeriodUsage.tenant_id, TenantPeriodUsage.tokens).where(
                TenantPeriodUsage.tenant_id == _any_of(tenant_ids),
                TenantPeriodUsage.period == period,
                TenantPeriodUsage.starts_on == starts_on,
            )
        )
        return {tenant_id: int(tokens) for tenant_id, tokens in rows}

    async def documents(self, tenant_ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
        rows = await self.session.execute(
            select(
                UsageDocument.tenant_id,
                func.count(),
                func.coalesce(func.sum(UsageDocument.size_bytes), 0),
            )
            .where(UsageDocument.tenant_id == _any_of(tenant_ids))
            .group_by(UsageDocument.tenant_id)
        )
        return {tenant_id: (int(n), int(size)) for tenant_id, n, size in rows}

    async def states_for_update(
        self, tenant_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[dict[str, Any], datetime]]:
        """Each tenant's last significant state and next reset, locked: two consumers evaluating
        one tenant publish in turn, never twice. Plain rows: metering asks for hundreds of
        tenants per batch and only compares them."""
        rows = await self.session.execute(
            select(QuotaState.tenant_id, QuotaState.state, QuotaState.next_reset_at)
            .where(QuotaState.tenant_id == _any_of(tenant_ids))
            .with_for_update()
        )
        return {tenant_id: (state, next_reset_at) for tenant_id, state, next_reset_at in rows}

    async def save_state(
        self, tenant_id: uuid.UUID, state: dict[str, Any], next_reset_at: datetime
    ) -> None:
        stmt = insert(QuotaState).values(
            tenant_id=tenant_id, state=state, next_reset_at=next_reset_at
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant_id"],
                set_={
                    "state": stmt.excluded.state,
                    "next_reset_at": stmt.excluded.next_reset_at,
                    "updated_at": func.now(),
                },
            )
        )

    async def due_for_reset(self, now: datetime, limit: int = 500) -> set[uuid.UUID]:
        rows = await self.session.scalars(
            select(QuotaState.tenant_id).where(QuotaState.next_reset_at <= now).limit(limit)
        )
        return set(rows)

    async def forget(self, tenant_id: uuid.UUID) -> None:
        await self.session.execute(delete(QuotaState).where(QuotaState.tenant_id == tenant_id))
