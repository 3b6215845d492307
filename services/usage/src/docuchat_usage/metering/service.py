"""Turning events into counters. Services flush; the message (batch) commits."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from docuchat_common.events.catalog import TokensConsumed
from docuchat_usage.metering.repository import BucketKey, MeteringRepository, PeriodKey
from docuchat_usage.periods import NIL_USER, day_of, hour_of, month_of


class MeteringService:
    def __init__(self, metering: MeteringRepository) -> None:
        self.metering = metering

    async def record_tokens(self, events: Sequence[TokensConsumed]) -> set[uuid.UUID]:
        """Add a batch of token events to the counters; returns the tenants touched.

        Amounts are summed in memory first, so a batch of thousands is a handful of upserts.
        Buckets follow the event's own time: late or out-of-order events land where they
        belong."""
        tokens: Counter[BucketKey] = Counter()
        counts: Counter[BucketKey] = Counter()
        periods: Counter[PeriodKey] = Counter()
        for event in events:
            if event.tenant_id is None:
                continue
            data = event.data
            user = data.user_id or uuid.UUID(NIL_USER)
            hour = hour_of(event.occurred_at)
            total = 0
            for kind, amount in (
                ("prompt", data.prompt_tokens),
                ("completion", data.completion_tokens),
                ("embedding", data.embedding_tokens),
            ):
                if amount > 0:
                    key = BucketKey(event.tenant_id, hour, user, data.model, kind)
                    tokens[key] += amount
                    counts[key] += 1
                    total += amount
            if total:
                periods[PeriodKey(event.tenant_id, "day", day_of(event.occurred_at))] += total
                periods[PeriodKey(event.tenant_id, "month", month_of(event.occurred_at))] += total
        await self.metering.add_to_buckets((k, v, counts[k]) for k, v in tokens.items())
        await self.metering.add_to_periods(periods.items())
        return {k.tenant_id for k in periods}
