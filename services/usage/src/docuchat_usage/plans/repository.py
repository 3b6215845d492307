from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_usage.models import Plan


class PlanRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self) -> list[Plan]:
        return list((await self.session.scalars(select(Plan).order_by(Plan.position))).all())

    async def get(self, plan_id: str) -> Plan | None:
        return await self.session.get(Plan, plan_id)
