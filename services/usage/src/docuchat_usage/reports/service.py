"""Usage reports: window totals with breakdowns, and the daily history."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.events.outbox import Outbox
from docuchat_usage.periods import NIL_USER, day_of, hour_of
from docuchat_usage.quotas.service import QuotaService
from docuchat_usage.reports.repository import ReportRepository
from docuchat_usage.reports.schemas import (
    DayUsage,
    DocumentUsage,
    LimitOut,
    ModelUsage,
    TokenTotals,
    UsageSummary,
    UserUsage,
    Window,
)

WINDOWS: dict[str, timedelta] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


def _add(totals: TokenTotals, kind: str, tokens: int) -> None:
    setattr(totals, kind, getattr(totals, kind) + tokens)
    totals.total += tokens


class ReportService:
    def __init__(self, session: AsyncSession, outbox: Outbox) -> None:
        self.reports = ReportRepository(session)
        self.quotas = QuotaService(session, outbox)

    async def summary(self, tenant_id: uuid.UUID, window: Window) -> UsageSummary:
        now = datetime.now(UTC)
        # Hour buckets: the window covers the current hour and the ones before it.
        since = hour_of(now) - WINDOWS[window] + timedelta(hours=1)
        tokens = TokenTotals()
        by_model: dict[str, ModelUsage] = {}
        by_user: dict[uuid.UUID, UserUsage] = {}
        nil = uuid.UUID(NIL_USER)
        for model, user, kind, amount in await self.reports.totals(tenant_id, since):
            _add(tokens, kind, amount)
            _add(by_model.setdefault(model, ModelUsage(model=model)), kind, amount)
            user_id = None if user == nil else user
            _add(by_user.setdefault(user, UserUsage(user_id=user_id)), kind, amount)
        state = (await self.quotas.current({tenant_id}, now)).get(tenant_id)
        limits = {
            name: LimitOut(**s.model_dump(include={"used", "limit", "remaining", "resets_at"}))
            for name, s in (state.limits.items() if state else ())
        }
        documents = limits.get("documents")
        storage = limits.get("storage_bytes")
        return UsageSummary(
            window=window,
            since=since,
            plan=state.plan if state else None,
            tokens=tokens,
            by_model=sorted(by_model.values(), key=lambda m: -m.total),
            by_user=sorted(by_user.values(), key=lambda u: -u.total),
            documents=DocumentUsage(
                count=documents.used if documents else 0,
                storage_bytes=storage.used if storage else 0,
            ),
            limits=limits,
            remaining={name: limit.remaining for name, limit in limits.items()},
            exceeded=state.exceeded if state else [],
        )

    async def history(self, tenant_id: uuid.UUID, days: int) -> list[DayUsage]:
        today = day_of(datetime.now(UTC))
        first = today - timedelta(days=days - 1)
        since = datetime.combine(first, datetime.min.time(), tzinfo=UTC)
        per_day: dict[object, dict[str, int]] = defaultdict(dict)
        for day, kind, amount in await self.reports.by_day(tenant_id, since):
            per_day[day][kind] = amount
        series = []
        for offset in range(days):  # every day, zeros included: charts need no gaps
            day = first + timedelta(days=offset)
            kinds = per_day.get(day, {})
            prompt, completion, embedding = (
                kinds.get(k, 0) for k in ("prompt", "completion", "embedding")
            )
            series.append(
                DayUsage(
                    date=day,
                    tokens=prompt + completion + embedding,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    embedding_tokens=embedding,
                )
            )
        return series
