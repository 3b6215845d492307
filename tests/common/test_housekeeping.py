"""Housekeeping of the event tables on a real PostgreSQL: expired published outbox rows and
claims go, in slices; unpublished rows, recent rows and claims without a time in their id stay;
one replica at a time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from docuchat_common.db import Database
from docuchat_common.events.housekeeping import (
    LOCK_KEY,
    EventTableJanitor,
    metered_claims,
    processed_claims,
    published_outbox,
    uuid7_floor,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
WEEK, FORTNIGHT = timedelta(days=7), timedelta(days=14)


def v7_at(moment: datetime, n: int) -> uuid.UUID:
    return uuid.UUID(uuid7_floor(moment)[:-4] + f"{n:04x}")


@pytest.fixture
async def database(databases: dict[str, str]) -> AsyncIterator[Database]:
    db = Database(databases["usage"])  # usage's schema has all three tables
    yield db
    await db.dispose()


def janitor(database: Database, **kwargs: object) -> EventTableJanitor:
    return EventTableJanitor(
        database,
        [published_outbox(WEEK), processed_claims(FORTNIGHT), metered_claims(FORTNIGHT)],
        clock=lambda: NOW,
        **kwargs,  # type: ignore[arg-type]
    )


async def add_outbox(database: Database, published_at: datetime | None, created: datetime) -> str:
    event_id = str(uuid.uuid4())
    async with database.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO outbox (id, topic, event_type, payload, created_at, published_at) "
                "VALUES (:id, 't', 'x.happened', '{}', :created, :published)"
            ),
            {"id": event_id, "created": created, "published": published_at},
        )
    return event_id


async def ids(database: Database, sql: str) -> set[str]:
    async with database.transaction() as session:
        return {str(r[0]) for r in await session.execute(text(sql))}


async def test_expired_rows_go_and_the_rest_stay(database: Database) -> None:
    old_published = await add_outbox(database, NOW - timedelta(days=8), NOW - timedelta(days=8))
    old_unpublished = await add_outbox(database, None, NOW - timedelta(days=30))
    recent = await add_outbox(database, NOW - timedelta(hours=1), NOW - timedelta(hours=1))
    async with database.transaction() as session:
        for consumer, event_id, at in (
            ("a", uuid.uuid4(), NOW - timedelta(days=15)),
            ("a", uuid.uuid4(), NOW - timedelta(days=1)),
        ):
            await session.execute(
                text(
                    "INSERT INTO processed_events (consumer, event_id, event_type, processed_at) "
                    "VALUES (:c, :e, 'x.happened', :at)"
                ),
                {"c": consumer, "e": event_id, "at": at},
            )
    expired_claims = [v7_at(NOW - timedelta(days=15), n) for n in range(5)]
    kept_claims = [
        v7_at(NOW - timedelta(days=13), 1),
        # a v4 id sorts anywhere; it says nothing of its age and is kept
        uuid.UUID("00000000-0000-4000-8000-000000000001"),
    ]
    async with database.transaction() as session:
        await session.execute(
            text("INSERT INTO metered_events (event_id) SELECT unnest(CAST(:ids AS uuid[]))"),
            {"ids": [*expired_claims, *kept_claims]},
        )

    deleted = await janitor(database, slice_rows=2).run_once()

    assert deleted == {"outbox": 1, "processed_events": 1, "metered_events": 5}
    outbox = await ids(database, "SELECT id FROM outbox")
    assert old_published not in outbox and {old_unpublished, recent} <= outbox
    processed = await ids(database, "SELECT processed_at FROM processed_events")
    assert len(processed) == 1
    assert await ids(database, "SELECT event_id FROM metered_events") == {
        str(c) for c in kept_claims
    }
    # a second round finds nothing more
    assert await janitor(database).run_once() == {
        "outbox": 0,
        "processed_events": 0,
        "metered_events": 0,
    }


async def test_a_round_is_skipped_while_another_replica_runs_one(database: Database) -> None:
    old = await add_outbox(database, NOW - timedelta(days=8), NOW - timedelta(days=8))
    async with database.transaction() as other:
        await other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
        assert await janitor(database).run_once() == {}
    assert old in await ids(database, "SELECT id FROM outbox")
    assert (await janitor(database).run_once())["outbox"] == 1


def test_uuid7_floor_orders_with_real_v7_ids() -> None:
    from uuid_utils.compat import uuid7

    before = uuid.UUID(uuid7_floor(datetime.now(UTC) - timedelta(seconds=1)))
    now_id = uuid7()
    after = uuid.UUID(uuid7_floor(datetime.now(UTC) + timedelta(seconds=1)))
    assert before < now_id < after
    assert now_id.version == 7
