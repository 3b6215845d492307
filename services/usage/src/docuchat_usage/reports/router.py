from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from docuchat_common.identity import CurrentIdentity
from docuchat_common.service import DbSession, Runtime
from docuchat_usage.reports.schemas import DayUsage, UsageSummary, Window
from docuchat_usage.reports.service import ReportService

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])


@router.get("", response_model=UsageSummary)
async def usage_summary(
    identity: CurrentIdentity, session: DbSession, runtime: Runtime, window: Window = "24h"
) -> UsageSummary:
    """Tokens in the window by kind, model and user; documents; limits and what remains."""
    return await ReportService(session, runtime.outbox).summary(identity.tenant_id, window)


@router.get("/history", response_model=list[DayUsage])
async def usage_history(
    identity: CurrentIdentity,
    session: DbSession,
    runtime: Runtime,
    granularity: Literal["day"] = "day",
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> list[DayUsage]:
    """Tokens per UTC day, oldest first, every day of the range included."""
    return await ReportService(session, runtime.outbox).history(identity.tenant_id, days)
