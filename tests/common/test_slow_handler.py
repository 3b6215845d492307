"""A slow handler (``SlowHandler``) on the real PostgreSQL: its work keeps no transaction open,
a second delivery of its event while it works waits and is then skipped, a failed record is
retried without redoing the work, and the event's lock is let go whatever the outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.db import Database
from docuchat_common.events.bus import create_broker
from docuchat_common.events.consumer import EventConsumers, HandlerFailedError, SlowHandler
from docuchat_common.events.envelope import Event, EventData
from docuchat_common.events.topics import Topic
from docuchat_common.settings import ServiceSettings
from docuchat_usage.models import processed_events as processed_table


class JobData(EventData):
    n: int


class JobRequested(Event[JobData]):
    type: Literal["job.requested"] = "job.requested"
    version: Literal[1] = 1
    topic: ClassVar[Topic] = Topic("test.jobs", 1, "jobs")


class Slow:
    """A slow handler's two steps, counted; its work waits at ``gate`` when told to."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.gate: asyncio.Event | None = None
        self.working = asyncio.Event()
        self.works = 0
        self.records = 0
        self.fail_records = 0  # records to fail before one succeeds
        self.fail_work = False
        self.open_transactions: int | None = None  # seen from another session while working

    async def work(self, event: Any) -> int:
        self.works += 1
        self.working.set()
        self.open_transactions = await _open_transactions(self.database)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_work:
            raise RuntimeError("the work failed")
        return int(event.data.n * 10)

    async def record(self, event: Any, result: int, session: AsyncSession) -> None:
        self.records += 1
        if self.fail_records > 0:
            self.fail_records -= 1
            raise RuntimeError("the record failed")
        await session.execute(
            text("INSERT INTO slow_effects (event_id, result) VALUES (:id, :result)"),
            {"id": event.id, "result": result},
        )

    def handler(self) -> SlowHandler:
        return SlowHandler(work=self.work, record=self.record)


@pytest.fixture
async def consumers(databases: dict[str, str]) -> AsyncIterator[EventConsumers]:
    url = databases["usage"]
    database = Database(url, pool_size=4)
    async with database.transaction() as session:
        await session.execute(
            text("CREATE TABLE IF NOT EXISTS slow_effects (event_id uuid NOT NULL, result int)")
        )
    settings = ServiceSettings(
        environment="test", database_url=url, kafka_bootstrap_servers="127.0.0.1:9"
    )
    # The broker is never started: handle_one needs the database only.
    yield EventConsumers(
        broker=create_broker(settings, "test"),
        database=database,
        processed_table=processed_table,
        service="test",
        max_attempts=3,
        retry_wait_max=0.05,
    )
    await database.dispose()


async def handle(consumers: EventConsumers, event: Event[Any], slow: Slow, consumer: str) -> str:
    return await consumers.handle_one(
        event,
        None,
        group=consumer,
        consumer=consumer,
        handler=slow.handler(),
        wanted=(JobRequested,),
    )


async def test_the_work_keeps_no_transaction_open(consumers: EventConsumers) -> None:
    slow = Slow(consumers.database)
    event = JobRequested(tenant_id=uuid.uuid4(), source="test", data=JobData(n=4))

    assert await handle(consumers, event, slow, f"c-{uuid.uuid4().hex[:8]}") == "ok"

    # Nothing of this database sat "idle in transaction" while the work ran (a claim held for
    # the whole work would), and the outcome was recorded once.
    assert slow.open_transactions == 0
    assert await _results(consumers.database, event) == [40]
    assert await _advisory_locks(consumers.database) == 0


async def test_a_second_delivery_while_working_waits_and_is_skipped(
    consumers: EventConsumers,
) -> None:
    slow = Slow(consumers.database)
    slow.gate = asyncio.Event()
    consumer = f"c-{uuid.uuid4().hex[:8]}"
    event = JobRequested(tenant_id=uuid.uuid4(), source="test", data=JobData(n=2))

    first = asyncio.create_task(handle(consumers, event, slow, consumer))
    await slow.working.wait()
    # A rebalance hands the same event to another worker while the first still works on it.
    second = asyncio.create_task(handle(consumers, event, slow, consumer))
    done, _ = await asyncio.wait({second}, timeout=0.5)
    assert not done  # it waits for the first one's lock
    slow.gate.set()

    assert sorted(await asyncio.gather(first, second)) == ["duplicate", "ok"]
    assert slow.works == 1
    assert await _results(consumers.database, event) == [20]


async def test_a_failed_record_is_retried_without_redoing_the_work(
    consumers: EventConsumers,
) -> None:
    slow = Slow(consumers.database)
    slow.fail_records = 1
    event = JobRequested(tenant_id=uuid.uuid4(), source="test", data=JobData(n=3))

    assert await handle(consumers, event, slow, f"c-{uuid.uuid4().hex[:8]}") == "ok"

    assert (slow.works, slow.records) == (1, 2)
    assert await _results(consumers.database, event) == [30]


async def test_an_event_already_handled_is_skipped_without_work(
    consumers: EventConsumers,
) -> None:
    slow = Slow(consumers.database)
    consumer = f"c-{uuid.uuid4().hex[:8]}"
    event = JobRequested(tenant_id=uuid.uuid4(), source="test", data=JobData(n=5))
    assert await handle(consumers, event, slow, consumer) == "ok"

    assert await handle(consumers, event, slow, consumer) == "duplicate"

    assert slow.works == 1
    assert await _results(consumers.database, event) == [50]


async def test_a_failing_work_lets_its_lock_go(consumers: EventConsumers) -> None:
    slow = Slow(consumers.database)
    slow.fail_work = True
    consumer = f"c-{uuid.uuid4().hex[:8]}"
    event = JobRequested(tenant_id=uuid.uuid4(), source="test", data=JobData(n=6))

    with pytest.raises(HandlerFailedError):
        await handle(consumers, event, slow, consumer)

    assert slow.works == 3  # every attempt, then the caller dead-letters it
    assert await _advisory_locks(consumers.database) == 0
    # Delivered again once the cause is fixed: handled at once, nothing claimed before.
    slow.fail_work = False
    assert await handle(consumers, event, slow, consumer) == "ok"
    assert await _results(consumers.database, event) == [60]


async def _open_transactions(database: Database) -> int:
    async with database.read() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%'"
            )
        )
    return int(count or 0)


async def _advisory_locks(database: Database) -> int:
    async with database.read() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE l.locktype = 'advisory' AND d.datname = current_database()"
            )
        )
    return int(count or 0)


async def _results(database: Database, event: Event[Any]) -> list[int]:
    async with database.read() as session:
        rows = await session.scalars(
            text("SELECT result FROM slow_effects WHERE event_id = :id"), {"id": event.id}
        )
    return list(rows)
