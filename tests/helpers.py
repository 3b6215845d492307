"""Waiting for a condition (never for a fixed time), reading what a topic holds, and taking
a test database's connections away as a restart or a failover does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Await ``probe`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


async def read_topic(bootstrap: str, topic: str, at_least: int) -> list[Any]:
    """Every record on ``topic`` from the beginning, once there are ``at_least`` of them."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    records: list[Any] = []
    try:

        async def more() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
            return len(records) >= at_least

        await eventually(more, what=f"{at_least} records on {topic}")
    finally:
        await consumer.stop()
    return records


async def terminate_connections(url: str, *, refuse_new: bool = False) -> None:
    """What a database restart does to a pool: every server side of its connections is gone.
    With ``refuse_new``, new connections are refused too, as during a failover (until
    :func:`allow_connections`)."""
    target = make_url(url)
    async with _admin(url) as admin:
        if refuse_new:
            await admin.execute(f'ALTER DATABASE "{target.database}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            target.database,
        )


async def allow_connections(url: str, allowed: bool) -> None:
    """A PostgreSQL failover as a service sees it (``allowed=False``: new connections refused,
    the open ones gone), and its end."""
    if not allowed:
        await terminate_connections(url, refuse_new=True)
        return
    async with _admin(url) as admin:
        await admin.execute(
            f'ALTER DATABASE "{make_url(url).database}" WITH ALLOW_CONNECTIONS true'
        )


@contextlib.asynccontextmanager
async def _admin(url: str) -> AsyncIterator[Any]:
    """A connection to the server's ``postgres`` database, as the test's user."""
    import asyncpg

    admin = await asyncpg.connect(
        make_url(url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )
    try:
        yield admin
    finally:
        await admin.close()
