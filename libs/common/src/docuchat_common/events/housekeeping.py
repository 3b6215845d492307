"""Housekeeping of the event tables: published outbox rows and consumers' claims do not pile up.

Without it, ``outbox`` keeps every event ever published and ``processed_events`` (and usage's
``metered_events``) every event ever consumed: tables, indexes and backups grow forever, and a
claim's index lookup slows down with them.

- A published outbox row is kept ``outbox_retention_hours`` (the broker holds the event; the row
  only helps someone investigating). Unpublished rows are never touched.
- A claim must outlive every redelivery or replay of its event: keep ``claim_retention_hours``
  above the topics' retention (Kafka's default: 7 days), or a consumer group reset to the
  earliest offset would count old events again.

Deletes go in slices (short transactions, no long lock) and one replica at a time (an advisory
lock; the others skip the round).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from docuchat_common.db import Database
from docuchat_common.logging import get_logger
from docuchat_common.tasks import stop_task

log = get_logger(__name__)

#: Rows per delete statement.
SLICE = 5000
# Any fixed number: the lock only keeps replicas of one service (one database) apart.
LOCK_KEY = 0x646F6375_686B  # "docu" "hk"


@dataclass(frozen=True, slots=True)
class Purge:
    """One kind of expired row: ``statement`` deletes at most ``:limit`` of them older than
    ``:cutoff`` (bound parameters); ``retention`` is how old is expired; ``cutoff`` turns the
    moment into the value the statement compares with (default: the moment itself)."""

    name: str
    statement: str
    retention: timedelta
    cutoff: Callable[[datetime], object] = lambda moment: moment


def published_outbox(retention: timedelta) -> Purge:
    return Purge(
        "outbox",
        """DELETE FROM outbox WHERE id IN (
            SELECT id FROM outbox
            WHERE published_at IS NOT NULL AND published_at < :cutoff
            LIMIT :limit)""",
        retention,
    )


def processed_claims(retention: timedelta) -> Purge:
    return Purge(
        "processed_events",
        """DELETE FROM processed_events WHERE (consumer, event_id) IN (
            SELECT consumer, event_id FROM processed_events
            WHERE processed_at < :cutoff
            LIMIT :limit)""",
        retention,
    )


def uuid7_floor(moment: datetime) -> str:
    """The smallest UUIDv7 of ``moment``'s millisecond: every v7 id below it is older."""
    millis = int(moment.timestamp() * 1000)
    digits = f"{millis:012x}"
    return f"{digits[:8]}-{digits[8:]}-7000-8000-000000000000"


def metered_claims(retention: timedelta) -> Purge:
    """Claims keyed by time-ordered (v7) event ids alone, with no time column (see usage's
    ``metered_events``): a range of the primary key. An id of another version carries no time
    and is kept."""
    return Purge(
        "metered_events",
        """DELETE FROM metered_events WHERE event_id IN (
            SELECT event_id FROM metered_events
            WHERE event_id < CAST(:cutoff AS uuid)
                AND substr(CAST(event_id AS text), 15, 1) = '7'
            LIMIT :limit)""",
        retention,
        uuid7_floor,
    )


class EventTableJanitor:
    """Runs the purges every ``interval`` seconds (the first round soon after start)."""

    def __init__(
        self,
        database: Database,
        purges: list[Purge],
        *,
        interval: float = 3600.0,
        first_after: float = 60.0,
        slice_rows: int = SLICE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.database = database
        self.purges = purges
        self.interval = interval
        self.first_after = first_after
        self.slice_rows = slice_rows
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self.purges:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name="event-table-janitor"
            )

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_after)
        while True:
            try:
                await self.run_once()
            except Exception:  # the next round tries again; the service keeps serving
                log.warning("event table housekeeping failed", exc_info=True)
            await asyncio.sleep(self.interval)

    async def run_once(self) -> dict[str, int]:
        """One round: rows deleted per purge ({} if another replica holds the lock)."""
        now = self.clock()
        deleted: dict[str, int] = {}
        for purge in self.purges:
            cutoff = now - purge.retention
            total = 0
            while True:
                async with self.database.transaction() as session:
                    locked = (
                        await session.execute(
                            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": LOCK_KEY}
                        )
                    ).scalar_one()
                    if not locked:
                        return deleted
                    result = await session.execute(
                        text(purge.statement),
                        {"cutoff": purge.cutoff(cutoff), "limit": self.slice_rows},
                    )
                count = int(getattr(result, "rowcount", 0) or 0)
                total += count
                if count < self.slice_rows:
                    break
            deleted[purge.name] = total
            if total:
                log.info("expired event rows deleted", table=purge.name, rows=total)
        return deleted
