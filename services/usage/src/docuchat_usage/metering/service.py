"""Turning events into counters. Services flush; the message (batch) commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from docuchat_usage.metering.repository import MeteringRepository
from docuchat_usage.metering.schemas import TokensConsumedRecord


class MeteringService:
    def __init__(self, metering: MeteringRepository) -> None:
        self.metering = metering

    async def record_tokens(
        self, events: Sequence[TokensConsumedRecord]
    ) -> tuple[int, set[uuid.UUID]]:
        """Claim the events and add those not claimed before to the counters, in the hour, day
        and month (UTC) each occurred in: late and out-of-order events land where they belong,
        and a redelivered one counts once. Returns how many were new and the tenants touched."""
        return await self.metering.meter_tokens(events)
