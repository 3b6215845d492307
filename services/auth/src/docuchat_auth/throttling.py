"""Brute-force limits: attempts counted per account and per client IP, in Postgres.

An attempt is counted *before* the credential is checked, atomically, in its own transaction:
parallel guesses cannot slip past the limit between a check and a count, and the count survives
the failed request's rollback. A success clears the account's count and gives the IP its
attempt back, so the IP counter only ever holds failures. Once a key goes over its limit within
the window it is locked: attempts answer 429 with Retry-After, even with the right password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, delete, or_, update
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

    async def attempt(self, *limits: Limit) -> None:
        """Count one attempt against every limit; 429 when any is (now) over."""
        now = datetime.now(UTC)
        locked_until: list[datetime] = []
        async with self.database.transaction() as session:
            for limit in limits:
                # A fresh window once the old one has passed and no lock holds.
                fresh = and_(
                    Throttle.window_started_at < now - self.window,
                    or_(Throttle.locked_until.is_(None), Throttle.locked_until < now),
                )
                stmt = (
                    insert(Throttle)
                    .values(key=limit.key, failures=1, window_started_at=now)
                    .on_conflict_do_update(
                        index_elements=[Throttle.key],
                        set_={
                            "failures": case((fresh, 1), else_=Throttle.failures + 1),
                            "window_started_at": case(
                                (fresh, now), else_=Throttle.window_started_at
                            ),
                            "locked_until": case((fresh, None), else_=Throttle.locked_until),
                        },
                    )
                    .returning(Throttle.failures, Throttle.locked_until)
                )
                failures, locked = (await session.execute(stmt)).one()
                if locked is not None and locked > now:
                    locked_until.append(locked)
                elif failures > limit.max_failures:
                    locked = now + self.lockout
                    await session.execute(
                        update(Throttle)
                        .where(Throttle.key == limit.key)
                        .values(locked_until=locked)
                    )
                    locked_until.append(locked)
        if locked_until:
            raise RateLimited(
                "too many failed attempts; try again later",
                retry_after=(max(locked_until) - now).total_seconds(),
            )

    async def succeed(self, *clear: Limit, refund: tuple[Limit, ...] = ()) -> None:
        """The credential was right: ``clear`` counters start over, ``refund`` ones get this
        attempt back (an IP shared by many users must only count failures)."""
        async with self.database.transaction() as session:
            if clear:
                await session.execute(
                    delete(Throttle).where(Throttle.key.in_([limit.key for limit in clear]))
                )
            if refund:
                await session.execute(
                    update(Throttle)
                    .where(
                        Throttle.key.in_([limit.key for limit in refund]),
                        Throttle.failures > 0,
                        Throttle.locked_until.is_(None),
                    )
                    .values(failures=Throttle.failures - 1)
                )
