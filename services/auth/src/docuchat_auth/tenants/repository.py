from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_auth.models import OneTimeSecret, Tenant, User


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, tenant_id: uuid.UUID) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id)

    async def delete(self, tenant: Tenant) -> None:
        # Users, keys, sessions and secrets go with it (ON DELETE CASCADE).
        await self.session.delete(tenant)
        await self.session.flush()

    async def set_plan(self, tenant_id: uuid.UUID, plan: str) -> None:
        await self.session.execute(update(Tenant).where(Tenant.id == tenant_id).values(plan=plan))

    async def members_page(
        self, tenant_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[User]:
        stmt = select(User).where(User.tenant_id == tenant_id)
        if after is not None:
            stmt = stmt.where((User.created_at, User.id) > after)  # type: ignore[operator]
        stmt = stmt.order_by(User.created_at, User.id).limit(limit)
        return list((await self.session.scalars(stmt)).all())

    async def member(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
        return await self.session.scalar(
            select(User).where(User.tenant_id == tenant_id, User.id == user_id)
        )

    async def add_member(self, user: User) -> None:
        self.session.add(user)
        await self.session.flush()  # the invitation's secret references the row

    async def add_secret(self, secret: OneTimeSecret) -> None:
        self.session.add(secret)
        await self.session.flush()
