"""Waiting for a condition (never for a fixed time), and reading what a topic holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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


async def allow_connections(url: str, allowed: bool) -> None:
    """What a PostgreSQL failover looks like to a service: new connections refused, the open
    ones gone (and back when ``allowed``)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = await asyncpg.connect(
        target.set(drivername="postgresql", database="postgres").render_as_string(
            hide_password=False
        )
    )
    try:
        await admin.execute(
            f'ALTER DATABASE "{target.database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'
        )
        if not allowed:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                target.database,
            )
    finally:
        await admin.close()
