from __future__ import annotations

from docuchat_usage.models import Plan
from docuchat_usage.plans.repository import PlanRepository
from docuchat_usage.plans.schemas import PlanLimits, PlanOut


def plan_out(plan: Plan) -> PlanOut:
    return PlanOut(
        id=plan.id,
        name=plan.name,
        description=plan.description,
        limits=PlanLimits.model_validate(plan),
    )


class PlanService:
    def __init__(self, plans: PlanRepository) -> None:
        self.plans = plans

    async def catalog(self) -> list[PlanOut]:
        return [plan_out(p) for p in await self.plans.list()]
