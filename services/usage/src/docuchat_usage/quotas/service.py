"""Quota state: what each tenant has used against its plan, and when that changes in a way the
enforcers (chat, ingest) must hear about.

``quota.changed`` goes out (through the outbox) when the *significant* part of the state
changes: the plan, which limits are spent, which are past the warning threshold, or the period
(a reset at midnight or month start UTC). Counts moving inside those bounds are not news: the
enforcers only need to know whether to refuse, and ``/usage`` serves the exact figures.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Usage:
    """A tenant's figures against its plan, as plain numbers: most evaluations end at comparing
    their significant part with the last one, so the event is built only when it goes out."""

    plan: Plan
    day_tokens: int
    month_tokens: int
    documents: int
    storage: int

    def limits(self) -> dict[str, tuple[int, int | None]]:
        plan = self.plan
        return {
            "daily_tokens": (self.day_tokens, plan.daily_tokens),
            "monthly_tokens": (self.month_tokens, plan.monthly_tokens),
            "documents": (self.documents, plan.documents),
            "storage_bytes": (self.storage, plan.storage_bytes),
        }

    def exceeded_and_warnings(self) -> tuple[list[str], list[str]]:
        exceeded, warnings = [], []
        for name, (used, limit) in self.limits().items():
            if limit is None:
                continue
            if used >= limit:
                exceeded.append(name)
            elif used >= WARNING_RATIO * limit:
                warnings.append(name)
        return exceeded, warnings

    def significant(self, now: datetime) -> dict[str, Any]:
        """What the enforcers must hear about when it changes (see the module's docstring)."""
        exceeded, warnings = self.exceeded_and_warnings()
        plan = self.plan
        return {
            "plan": plan.id,
            "exceeded": sorted(exceeded),
            "warnings": sorted(warnings),
            "day": day_of(now).isoformat(),
            "month": month_of(now).isoformat(),
            "fixed": [
                plan.max_file_bytes,
                plan.knowledge_bases,
                plan.requests_per_minute,
                list(plan.allowed_models or ["*"]),
            ],
        }

    def state(self, now: datetime) -> QuotaChangedData:
        resets = {
            "daily_tokens": next_midnight(now),
            "monthly_tokens": next_month_start(now),
        }
        exceeded, warnings = self.exceeded_and_warnings()
        plan = self.plan
        return QuotaChangedData(
            plan=plan.id,
            limits={
                name: QuotaLimitState(
                    used=used,
                    limit=limit,
                    remaining=None if limit is None else max(0, limit - used),
                    resets_at=resets.get(name),
                )
                for name, (used, limit) in self.limits().items()
            },
            exceeded=exceeded,
            warnings=warnings,
            max_file_bytes=plan.max_file_bytes,
            knowledge_bases=plan.knowledge_bases,
            requests_per_minute=plan.requests_per_minute,
            allowed_models=list(plan.allowed_models or ["*"]),
        )


class QuotaService:
    def __init__(self, session: AsyncSession, outbox: Outbox) -> None:
        self.session = session
        self.quotas = QuotaRepository(session)
        self.outbox = outbox

    async def usage(self, tenant_ids: set[uuid.UUID], now: datetime) -> dict[uuid.UUID, Usage]:
        """The figures of the tenants that have a plan (unknown ones are left out)."""
        plans = await self.quotas.plans_of(tenant_ids)
        known = set(plans)
        if not known:
            return {}
        days = await self.quotas.period_tokens(known, "day", day_of(now))
        months = await self.quotas.period_tokens(known, "month", month_of(now))
        documents = await self.quotas.documents(known)
        return {
            t: Usage(
                plans[t],
                day_tokens=days.get(t, 0),
                month_tokens=months.get(t, 0),
                documents=documents.get(t, (0, 0))[0],
                storage=documents.get(t, (0, 0))[1],
            )
            for t in known
        }

    async def current(
        self, tenant_ids: set[uuid.UUID], now: datetime | None = None
    ) -> dict[uuid.UUID, QuotaChangedData]:
        now = now or datetime.now(UTC)
        return {t: usage.state(now) for t, usage in (await self.usage(tenant_ids, now)).items()}

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
        reset_at = next_midnight(now)
        published = 0
        for tenant_id, usage in (await self.usage(tenant_ids, now)).items():
            summary = usage.significant(now)
            previous_state, previous_reset_at = states.get(tenant_id, (None, None))
            changed = previous_state != summary
            if force or changed:
                data = usage.state(now)
                await self.outbox.add(
                    self.session, QuotaChanged(tenant_id=tenant_id, source=SOURCE, data=data)
                )
                published += 1
                if data.exceeded:
                    log.info("quota spent", limits=data.exceeded, plan=data.plan)
            if changed or previous_reset_at != reset_at:
                await self.quotas.save_state(tenant_id, summary, reset_at)
        return published

    async def reset_due(self, now: datetime | None = None) -> int:
        """Tenants whose period ended: publish their new state (the day's limit lifted)."""
        now = now or datetime.now(UTC)
        due = await self.quotas.due_for_reset(now)
        return await self.evaluate(due, now=now) if due else 0
