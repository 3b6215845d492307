"""SQL for metering: token events claimed and summed into hourly buckets and period totals, and
indexed documents (upserts)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_usage.metering.schemas import TokensConsumedRecord
from docuchat_usage.models import TenantPeriodUsage, UsageBucket, UsageDocument

# The whole batch in one statement (one round trip): PostgreSQL claims the events in
# ``metered_events``, keeps the first copy of each id claimed now and adds the sums of those to
# the hourly buckets and the day and month totals. Summing here rather than in Python puts the
# per-event work on the database's own core. Negative amounts count as zero; an event without a
# tenant or without tokens is claimed but adds nothing. Hours, days and months are UTC ones.
# The day and month totals (what the plan's token limits count) are the LLM's tokens only:
# embedding tokens are metered in the buckets (usage reports, billing) while documents and
# storage bound indexing; counted against the chat limits, one large upload would spend a
# small plan's day of questions.
#
# The events travel column by column, each column one array literal that msgspec writes in C
# (see ``_columns``): PostgreSQL parses a UUID or a number in an array far faster than a JSON
# object, and Python never spells an event's fields one by one. Models (free text) travel once
# each, rows point at them.
METER_TOKENS = """
    WITH incoming AS (
        SELECT e.id, e.tenant_id, e.hour, e.ord,
            coalesce(e.user_id, CAST('00000000-0000-0000-0000-000000000000' AS uuid)) AS user_id,
            (CAST(:model_names AS varchar[]))[e.model] AS model,
            greatest(e.prompt, 0) AS prompt,
            greatest(e.completion, 0) AS completion,
            greatest(e.embedding, 0) AS embedding
        FROM unnest(
            CAST(CAST(:ids AS text) AS uuid[]), CAST(CAST(:tenants AS text) AS uuid[]),
            CAST(CAST(:hours AS text) AS bigint[]), CAST(CAST(:users AS text) AS uuid[]),
            CAST(CAST(:models AS text) AS int[]), CAST(CAST(:prompt AS text) AS bigint[]),
            CAST(CAST(:completion AS text) AS bigint[]),
            CAST(CAST(:embedding AS text) AS bigint[])
        ) WITH ORDINALITY AS e (
            id, tenant_id, hour, user_id, model, prompt, completion, embedding, ord
        )
    ), claimed AS (
        INSERT INTO metered_events (event_id)
        SELECT id FROM incoming
        ON CONFLICT DO NOTHING
        RETURNING event_id
    ), all_new AS (
        SELECT (SELECT count(*) FROM claimed) = (SELECT count(*) FROM incoming) AS yes
    ), new AS (
        -- Usually every event is new and comes once: all of them count, no join needed.
        -- Otherwise only the first copy of each id claimed now.
        SELECT * FROM incoming WHERE (SELECT yes FROM all_new)
        UNION ALL
        (
            SELECT DISTINCT ON (i.id) i.*
            FROM incoming AS i JOIN claimed AS c ON c.event_id = i.id
            WHERE NOT (SELECT yes FROM all_new)
            ORDER BY i.id, i.ord
        )
    ), counted AS (
        -- The LLM's tokens (prompt and completion) are the ones the plan's token limits count.
        SELECT *, prompt + completion AS llm_tokens FROM new
        WHERE tenant_id IS NOT NULL AND prompt + completion + embedding > 0
    ), buckets AS (
        INSERT INTO usage_buckets (
            tenant_id, hour, user_id, model,
            prompt_tokens, completion_tokens, embedding_tokens, events
        )
        SELECT tenant_id, to_timestamp(hour * 3600), user_id, model,
            sum(prompt), sum(completion), sum(embedding), count(*)
        FROM counted
        GROUP BY tenant_id, hour, user_id, model
        ON CONFLICT (tenant_id, hour, user_id, model) DO UPDATE SET
            prompt_tokens = usage_buckets.prompt_tokens + excluded.prompt_tokens,
            completion_tokens = usage_buckets.completion_tokens + excluded.completion_tokens,
            embedding_tokens = usage_buckets.embedding_tokens + excluded.embedding_tokens,
            events = usage_buckets.events + excluded.events
    ), days AS (
        SELECT tenant_id, CAST('1970-01-01' AS date) + CAST(hour / 24 AS int) AS day,
            sum(llm_tokens) AS tokens
        FROM counted
        WHERE llm_tokens > 0
        GROUP BY tenant_id, hour / 24
    ), periods AS (
        INSERT INTO tenant_period_usage (tenant_id, period, starts_on, tokens)
        SELECT tenant_id, 'day', day, tokens FROM days
        UNION ALL
        SELECT tenant_id, 'month', CAST(date_trunc('month', day) AS date), sum(tokens)
        FROM days
        GROUP BY 1, 2, 3
        ON CONFLICT (tenant_id, period, starts_on) DO UPDATE SET
            tokens = tenant_period_usage.tokens + excluded.tokens
    )
    SELECT (SELECT count(*) FROM new) AS new,
        ARRAY(SELECT DISTINCT tenant_id FROM days) AS tenants
"""
JSON = msgspec.json.Encoder()
SECONDS_PER_HOUR = 3600


def _array(values: list[Any]) -> str:
    """A PostgreSQL array literal of strings, integers or None, written by msgspec: their JSON
    array (``["…", 12, null]``) is one once its brackets are braces (both escape ``"`` and
    ``\\`` alike; any other escape only ever spoils a string that was no UUID anyway, and
    PostgreSQL refuses it)."""
    return "{" + JSON.encode(values)[1:-1].decode() + "}"


def _columns(events: Sequence[TokensConsumedRecord]) -> dict[str, Any]:
    models: dict[str, int] = {}
    return {
        "ids": _array([e.id for e in events]),
        "tenants": _array([e.tenant_id for e in events]),
        # The hour as a number (hours since the epoch, UTC): PostgreSQL groups and counts
        # integers far faster than it parses and truncates timestamps.
        "hours": _array([int(e.occurred_at.timestamp() // SECONDS_PER_HOUR) for e in events]),
        "users": _array([e.data.user_id for e in events]),
        "models": _array([models.setdefault(e.data.model, len(models) + 1) for e in events]),
        "model_names": list(models),
        "prompt": _array([e.data.prompt_tokens for e in events]),
        "completion": _array([e.data.completion_tokens for e in events]),
        "embedding": _array([e.data.embedding_tokens for e in events]),
    }


class MeteringRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def meter_tokens(
        self, events: Sequence[TokensConsumedRecord]
    ) -> tuple[int, set[uuid.UUID]]:
        """Claim the token events and add those claimed now (the first copy of each) to the
        counters: one statement. Returns how many were new and the tenants whose LLM tokens
        (the ones the plan's token limits count) grew."""
        if not events:
            return 0, set()
        row = (await self.session.execute(text(METER_TOKENS), _columns(events))).one()
        return row.new, set(row.tenants)

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
