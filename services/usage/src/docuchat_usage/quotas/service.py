"""Quota state: what each tenant has used against its plan, and when that changes in a way the
enforcers (chat, ingest) must hear about.

``quota.changed`` goes out (through the outbox) when the *significant* part of the state
changes: the plan, which limits are spent, which are past the warning threshold, or the period
(a reset at midnight or month start UTC). Counts moving inside those bounds are not news: the
enforcers only need to know whether to refuse, and ``/usage`` serves the exact figures.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.catalog import QuotaChanged, QuotaChangedData, QuotaLimitState
from docuchat_common.events.outbox import Outbox
from docuchat_common.logging import get_logger
from docuchat_usage.models import Plan
from docuchat_usage.periods import day_of, month_of, next_midnight, next_month_start
from docuchat_usage.quotas.repository import QuotaRepository

log = get_logger(__name__)

WARNING_RATIO = 0.8
SOURCE = "usage"


def _limit(used: int, limit: int | None, resets_at: datetime | None) -> QuotaLimitState:
    return QuotaLimitState(
        used=used,
        limit=limit,
        remaining=None if limit is None else max(0, limit - used),
        resets_at=resets_at,
    )


def build_state(
    plan: Plan, *, day_tokens: int, month_tokens: int, documents: int, storage: int, now: datetime
) -> QuotaChangedData:
    limits = {
        "daily_tokens": _limit(day_tokens, plan.daily_tokens, next_midnight(now)),
        "monthly_tokens": _limit(month_tokens, plan.monthly_tokens, next_month_start(now)),
        "documents": _limit(documents, plan.documents, None),
        "storage_bytes": _limit(storage, plan.storage_bytes, None),
    }
    exceeded = [n for n, s in limits.items() if s.limit is not None and s.used >= s.limit]
    warnings = [
        n
        for n, s in limits.items()
        if s.limit is not None and n not in exceeded and s.used >= WARNING_RATIO * s.limit
    ]
    return QuotaChangedData(
        plan=plan.id,
        limits=limits,
        exceeded=exceeded,
        warnings=warnings,
        max_file_bytes=plan.max_file_bytes,
        knowledge_bases=plan.knowledge_bases,
        requests_per_minute=plan.requests_per_minute,
        allowed_models=list(plan.allowed_models or ["*"]),
    )


def significant(data: QuotaChangedData, now: datetime) -> dict[str, Any]:
    return {
        "plan": data.plan,
        "exceeded": sorted(data.exceeded),
        "warnings": sorted(data.warnings),
        "day": day_of(now).isoformat(),
        "month": month_of(now).isoformat(),
        "fixed": [
            data.max_file_bytes,
            data.knowledge_bases,
            data.requests_per_minute,
            data.allowed_models,
        ],
    }


class QuotaService:
    def __init__(self, session: AsyncSession, outbox: Outbox) -> None:
        self.session = session
        self.quotas = QuotaRepository(session)
        self.outbox = outbox

    async def current(
        self, tenant_ids: set[uuid.UUID], now: datetime | None = None
    ) -> dict[uuid.UUID, QuotaChangedData]:
        now = now or datetime.now(UTC)
        plans = await self.quotas.plans_of(tenant_ids)
        known = set(plans)
        if not known:
            return {}
        days = await self.quotas.period_tokens(known, "day", day_of(now))
        months = await self.quotas.period_tokens(known, "month", month_of(now))
        documents = await self.quotas.documents(known)
        return {
            t: build_state(
                plans[t],
                day_tokens=days.get(t, 0),
                month_tokens=months.get(t, 0),
                documents=documents.get(t, (0, 0))[0],
                storage=documents.get(t, (0, 0))[1],
                now=now,
            )
            for t in known
        }

    async def evaluate(
        self, tenant_ids: set[uuid.UUID], *, force: bool = False, now: datetime | None = None
    ) -> int:
        """Recompute the tenants' state; publish quota.changed where it changed (or always,
        with ``force``). Tenants without a subscription (unknown yet) are skipped. Returns how
        many events were published."""
        if not tenant_ids:
            return 0
        now = now or datetime.now(UTC)
        states = await self.quotas.states_for_update(tenant_ids)
        published = 0
        for tenant_id, data in (await self.current(tenant_ids, now)).items():
            summary = significant(data, now)
            previous = states.get(tenant_id)
            if force or previous is None or previous.state != summary:
                await self.outbox.add(
                    self.session, QuotaChanged(tenant_id=tenant_id, source=SOURCE, data=data)
                )
                published += 1
                if data.exceeded:
                    log.info("quota spent", limits=data.exceeded, plan=data.plan)
            reset_at = next_midnight(now)
            if previous is None or previous.state != summary or previous.next_reset_at != reset_at:
                await self.quotas.save_state(tenant_id, summary, reset_at)
        return published

    async def reset_due(self, now: datetime | None = None) -> int:
        """Tenants whose period ended: publish their new state (the day's limit lifted)."""
        now = now or datetime.now(UTC)
        due = await self.quotas.due_for_reset(now)
        return await self.evaluate(due, now=now) if due else 0
