"""SQL for metering: hourly buckets, period totals and indexed documents (upserts)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_usage.models import TenantPeriodUsage, UsageBucket, UsageDocument


@dataclass
class BucketRows:
    """Rows for ``usage_buckets``, column by column (what ``unnest`` takes). Ids are canonical
    UUID strings; PostgreSQL parses them."""

    tenants: list[str] = field(default_factory=list)
    hours: list[datetime] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    prompt: list[int] = field(default_factory=list)
    completion: list[int] = field(default_factory=list)
    embedding: list[int] = field(default_factory=list)
    events: list[int] = field(default_factory=list)


@dataclass
class PeriodRows:
    """Rows for ``tenant_period_usage``, column by column."""

    tenants: list[str] = field(default_factory=list)
    periods: list[str] = field(default_factory=list)
    starts: list[date] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)


# One statement over arrays (unnest): one round trip whatever the batch size. ``{where}`` may
# make it conditional. UUIDs and numbers travel as one array literal each (text, parsed by
# PostgreSQL): the driver would otherwise check and encode every element in Python, which cost
# more than the rest of the batch. Models (free text) travel once each, rows point at them.
BUCKETS_UPSERT = """
    INSERT INTO usage_buckets (
        tenant_id, hour, user_id, model,
        prompt_tokens, completion_tokens, embedding_tokens, events
    )
    SELECT tenant_id, to_timestamp(epoch), user_id, (CAST(:b_model_names AS varchar[]))[model],
        prompt, completion, embedding, events
    FROM unnest(
        CAST(CAST(:b_tenants AS text) AS uuid[]), CAST(CAST(:b_hours AS text) AS bigint[]),
        CAST(CAST(:b_users AS text) AS uuid[]), CAST(CAST(:b_models AS text) AS int[]),
        CAST(CAST(:b_prompt AS text) AS bigint[]), CAST(CAST(:b_completion AS text) AS bigint[]),
        CAST(CAST(:b_embedding AS text) AS bigint[]), CAST(CAST(:b_events AS text) AS int[])
    ) AS bucket (tenant_id, epoch, user_id, model, prompt, completion, embedding, events) {where}
    ON CONFLICT (tenant_id, hour, user_id, model) DO UPDATE SET
        prompt_tokens = usage_buckets.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = usage_buckets.completion_tokens + excluded.completion_tokens,
        embedding_tokens = usage_buckets.embedding_tokens + excluded.embedding_tokens,
        events = usage_buckets.events + excluded.events
"""
PERIODS_UPSERT = """
    INSERT INTO tenant_period_usage (tenant_id, period, starts_on, tokens)
    SELECT * FROM unnest(
        CAST(CAST(:p_tenants AS text) AS uuid[]), CAST(:p_periods AS varchar[]),
        CAST(:p_starts AS date[]), CAST(CAST(:p_tokens AS text) AS bigint[])
    ) {where}
    ON CONFLICT (tenant_id, period, starts_on) DO UPDATE SET
        tokens = tenant_period_usage.tokens + excluded.tokens
"""

# Claim the events; only if none was claimed before, add the sums in the same statement (data-
# modifying CTEs run once each, whatever the outer query reads). Returns the ids seen before.
CLAIM_AND_ADD = """
    WITH ids AS (
        SELECT unnest(CAST(CAST(:ids AS text) AS uuid[])) AS id
    ), claimed AS (
        INSERT INTO metered_events (event_id)
        SELECT id FROM ids
        ON CONFLICT DO NOTHING
        RETURNING event_id
    ), all_new AS (
        SELECT (SELECT count(*) FROM claimed) = (SELECT count(*) FROM ids) AS yes
    ), buckets AS ({buckets}
    ), periods AS ({periods}
    )
    SELECT CAST(id AS text) FROM (
        SELECT id FROM ids EXCEPT ALL SELECT event_id FROM claimed
    ) AS seen_before
""".format(  # noqa: S608 - constants only, no input
    buckets=BUCKETS_UPSERT.format(where="WHERE (SELECT yes FROM all_new)"),
    periods=PERIODS_UPSERT.format(where="WHERE (SELECT yes FROM all_new)"),
)


def _array(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of values that need no quoting: canonical UUID strings and
    integers."""
    return "{" + ",".join(map(str, values)) + "}"


def _bucket_params(rows: BucketRows) -> dict[str, Any]:
    models: dict[str, int] = {}
    return {
        "b_tenants": _array(rows.tenants),
        "b_hours": _array(int(hour.timestamp()) for hour in rows.hours),
        "b_users": _array(rows.users),
        "b_models": _array(models.setdefault(m, len(models) + 1) for m in rows.models),
        "b_model_names": list(models),
        "b_prompt": _array(rows.prompt),
        "b_completion": _array(rows.completion),
        "b_embedding": _array(rows.embedding),
        "b_events": _array(rows.events),
    }


def _period_params(rows: PeriodRows) -> dict[str, Any]:
    return {
        "p_tenants": _array(rows.tenants),
        "p_periods": rows.periods,
        "p_starts": rows.starts,
        "p_tokens": _array(rows.tokens),
    }


@dataclass
class TokenSums:
    """A batch of token events summed per hourly bucket and per day and month."""

    buckets: BucketRows = field(default_factory=BucketRows)
    periods: PeriodRows = field(default_factory=PeriodRows)

    @property
    def tenants(self) -> set[uuid.UUID]:
        return {uuid.UUID(tenant) for tenant in set(self.periods.tenants)}


class MeteringRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_and_add(self, event_ids: Sequence[str], sums: TokenSums) -> set[str]:
        """Claim the token events (distinct canonical UUID strings) and, if none was
        claimed before, add ``sums`` to the buckets and period totals: one statement, one round
        trip. Returns the ids claimed before (usually none); when there are any, nothing was
        added and the caller adds the sums of the new ones."""
        if not event_ids:
            return set()
        buckets, periods = sums.buckets, sums.periods
        rows = await self.session.execute(
            text(CLAIM_AND_ADD),
            {
                "ids": _array(event_ids),
                **_bucket_params(buckets),
                **_period_params(periods),
            },
        )
        return set(rows.scalars())

    async def add_to_buckets(self, rows: BucketRows) -> None:
        if rows.tenants:
            await self.session.execute(text(BUCKETS_UPSERT.format(where="")), _bucket_params(rows))

    async def add_to_periods(self, rows: PeriodRows) -> None:
        if rows.tenants:
            await self.session.execute(text(PERIODS_UPSERT.format(where="")), _period_params(rows))

    async def document_indexed(
        self, tenant_id: uuid.UUID, document_id: uuid.UUID, size_bytes: int
    ) -> None:
        # A reindexed document is still one document: the row is replaced, never doubled.
        stmt = insert(UsageDocument).values(
            tenant_id=tenant_id, document_id=document_id, size_bytes=size_bytes
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=["tenant_id", "document_id"],
                set_={"size_bytes": stmt.excluded.size_bytes},
            )
        )

    async def document_deleted(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(UsageDocument).where(
                UsageDocument.tenant_id == tenant_id, UsageDocument.document_id == document_id
            )
        )

    async def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        for model in (UsageBucket, TenantPeriodUsage, UsageDocument):
            await self.session.execute(delete(model).where(model.tenant_id == tenant_id))
