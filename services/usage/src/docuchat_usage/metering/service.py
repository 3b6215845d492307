"""Turning events into counters. Services flush; the message (batch) commits."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime

from docuchat_usage.metering.repository import MeteringRepository, TokenSums
from docuchat_usage.metering.schemas import TokensConsumedRecord

SECONDS_PER_HOUR = 3600


class TokenTally:
    """Sums token events as they come, per hourly bucket and per day and month. Buckets follow
    the event's own time: late or out-of-order events land where they belong."""

    def __init__(self) -> None:
        # Per (tenant, hour number, user, model): prompt, completion, embedding tokens and
        # events. ``add`` runs once per event: plain tuples and lists, the hour as a number (its
        # datetime is built once per distinct hour, in ``sums``), the ids as their integers (a
        # ``UUID`` hashes in Python; spelled once per distinct id, in ``sums``; no user is 0, the
        # nil UUID).
        self.buckets: dict[tuple[int, int, int, str], list[int]] = {}

    def add(self, event: TokensConsumedRecord) -> None:
        tenant = event.tenant_id
        if tenant is None:
            return
        data = event.data
        prompt = data.prompt_tokens if data.prompt_tokens > 0 else 0
        completion = data.completion_tokens if data.completion_tokens > 0 else 0
        embedding = data.embedding_tokens if data.embedding_tokens > 0 else 0
        if not (prompt or completion or embedding):
            return
        user = data.user_id
        key = (
            tenant.int,
            int(event.occurred_at.timestamp() // SECONDS_PER_HOUR),
            0 if user is None else user.int,
            data.model,
        )
        acc = self.buckets.get(key)
        if acc is None:
            self.buckets[key] = [prompt, completion, embedding, 1]
        else:
            acc[0] += prompt
            acc[1] += completion
            acc[2] += embedding
            acc[3] += 1

    def sums(self) -> TokenSums:
        result = TokenSums()
        buckets = result.buckets
        periods: dict[tuple[str, str, date], int] = {}
        hours: dict[int, datetime] = {}
        spelled: dict[int, str] = {}
        for (tenant_id, hour_number, user_id, model), acc in self.buckets.items():
            prompt, completion, embedding, count = acc
            tenant = spelled.get(tenant_id)
            if tenant is None:
                tenant = spelled[tenant_id] = str(uuid.UUID(int=tenant_id))
            user = spelled.get(user_id)
            if user is None:
                user = spelled[user_id] = str(uuid.UUID(int=user_id))
            hour = hours.get(hour_number)
            if hour is None:
                hour = hours[hour_number] = datetime.fromtimestamp(
                    hour_number * SECONDS_PER_HOUR, UTC
                )
            buckets.tenants.append(tenant)
            buckets.hours.append(hour)
            buckets.users.append(user)
            buckets.models.append(model)
            buckets.prompt.append(prompt)
            buckets.completion.append(completion)
            buckets.embedding.append(embedding)
            buckets.events.append(count)
            total = prompt + completion + embedding
            day = hour.date()
            for period_key in ((tenant, "day", day), (tenant, "month", day.replace(day=1))):
                periods[period_key] = periods.get(period_key, 0) + total
        for (tenant, period, starts_on), tokens in periods.items():
            result.periods.tenants.append(tenant)
            result.periods.periods.append(period)
            result.periods.starts.append(starts_on)
            result.periods.tokens.append(tokens)
        return result


def sum_tokens(events: Iterable[TokensConsumedRecord]) -> TokenSums:
    tally = TokenTally()
    for event in events:
        tally.add(event)
    return tally.sums()


class MeteringService:
    def __init__(self, metering: MeteringRepository) -> None:
        self.metering = metering

    async def record_tokens(
        self, events: Sequence[TokensConsumedRecord], sums: TokenSums
    ) -> tuple[int, set[uuid.UUID]]:
        """Claim the events and add those not claimed before to the counters.
        ``sums`` are the sums of all of them: in the usual case (none seen before) claim and
        counters are one statement; otherwise the new ones are summed again. Returns how many
        were new and the tenants touched."""
        ids = [str(event.id) for event in events]
        seen = await self.metering.claim_and_add(ids, sums)
        if not seen:
            return len(ids), sums.tenants
        fresh = sum_tokens(event for event, id in zip(events, ids, strict=True) if id not in seen)
        await self.metering.add_to_buckets(fresh.buckets)
        await self.metering.add_to_periods(fresh.periods)
        return len(ids) - len(seen), fresh.tenants
