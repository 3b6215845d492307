"""Brute-force limits: failed attempts counted per account and per client IP, in Postgres.

Failures are recorded in their own transaction: the request that failed is rolled back (it
answers 401), the count must survive it. Once a key reaches its limit within the window it is
locked: the next attempt answers 429 with Retry-After, even with the right password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from docuchat_auth.models import Throttle
from docuchat_common.db import Database
from docuchat_common.errors import RateLimited


@dataclass(frozen=True)
class Limit:
    key: str
    max_failures: int


class Throttler:
    def __init__(self, database: Database, *, window_seconds: int, lockout_seconds: int) -> None:
        self.database = database
        self.window = timedelta(seconds=window_seconds)
        self.lockout = timedelta(seconds=lockout_seconds)

    async def check(self, *limits: Limit) -> None:
        """Raise 429 when any of the keys is locked."""
        now = datetime.now(UTC)
        async with self.database.transaction() as session:
            rows = (
                await session.scalars(
                    select(Throttle).where(Throttle.key.in_([limit.key for limit in limits]))
                )
            ).all()
        locked = [r.locked_until for r in rows if r.locked_until and r.locked_until > now]
        if locked:
            raise RateLimited(
                "too many failed attempts; try again later",
                retry_after=(max(locked) - now).total_seconds(),
            )

    async def fail(self, *limits: Limit) -> None:
        now = datetime.now(UTC)
        async with self.database.transaction() as session:
            for limit in limits:
                expired = Throttle.window_started_at < now - self.window
                stmt = (
                    insert(Throttle)
                    .values(key=limit.key, failures=1, window_started_at=now)
                    .on_conflict_do_update(
                        index_elements=[Throttle.key],
                        set_={
                            # A new window once the old one has passed; otherwise count on.
                            "failures": case((expired, 1), else_=Throttle.failures + 1),
                            "window_started_at": case(
                                (expired, now), else_=Throttle.window_started_at
                            ),
                        },
                    )
                    .returning(Throttle.failures)
                )
                failures = (await session.execute(stmt)).scalar_one()
                if failures >= limit.max_failures:
                    await session.execute(
                        update(Throttle)
                        .where(Throttle.key == limit.key)
                        .values(locked_until=now + self.lockout)
                    )

    async def succeed(self, *limits: Limit) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                delete(Throttle).where(Throttle.key.in_([limit.key for limit in limits]))
            )
