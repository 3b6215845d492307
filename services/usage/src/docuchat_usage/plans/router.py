from __future__ import annotations

from fastapi import APIRouter

from docuchat_common.service import DbSession
from docuchat_usage.plans.repository import PlanRepository
from docuchat_usage.plans.schemas import PlanList
from docuchat_usage.plans.service import PlanService

router = APIRouter(prefix="/api/v1/plans", tags=["plans"])


@router.get("", response_model=PlanList)
async def list_plans(session: DbSession) -> PlanList:
    """The plan catalog with its limits (public)."""
    return PlanList(items=await PlanService(PlanRepository(session)).catalog())
