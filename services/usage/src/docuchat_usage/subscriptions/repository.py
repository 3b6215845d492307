from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_usage.models import Subscription


class SubscriptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: uuid.UUID) -> Subscription | None:
        return await self.session.scalar(
            select(Subscription).where(Subscription.tenant_id == tenant_id)
        )

    async def create_if_missing(self, tenant_id: uuid.UUID, plan_id: str) -> bool:
        result = await self.session.execute(
            insert(Subscription)
            .values(tenant_id=tenant_id, plan_id=plan_id)
            .on_conflict_do_nothing(index_elements=[Subscription.tenant_id])
            .returning(Subscription.tenant_id)
        )
        return result.first() is not None

    async def set_plan(self, tenant_id: uuid.UUID, plan_id: str) -> None:
        """The tenant's plan, subscribing it if tenant.created has not arrived yet."""
        await self.session.execute(
            insert(Subscription)
            .values(tenant_id=tenant_id, plan_id=plan_id)
            .on_conflict_do_update(
                index_elements=[Subscription.tenant_id],
                set_={"plan_id": plan_id, "updated_at": func.now()},
            )
        )

    async def delete(self, tenant_id: uuid.UUID) -> None:
        await self.session.execute(delete(Subscription).where(Subscription.tenant_id == tenant_id))
