"""Async SQLAlchemy on asyncpg, one database per service, Alembic migrations per service.

The unit of work is the request or the message: :meth:`Database.transaction` opens a session,
the code under it (services, repositories) flushes, and it commits once at the end or rolls back.
Services never commit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


# A pooled connection idle this long is pinged before it is handed out.
IDLE_PING_SECONDS = 10.0
# Between two tries for an advisory lock that another session holds (doubling up to the max).
LOCK_POLL_SECONDS = 0.1
LOCK_POLL_MAX_SECONDS = 2.0
TRY_ADVISORY_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))")
ADVISORY_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))")


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        idle_ping_seconds: float = IDLE_PING_SECONDS,
    ) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            url, pool_size=pool_size, max_overflow=pool_size, echo=echo
        )
        #: Connections the pool opens at most (its size plus as many again on overflow).
        self.capacity = 2 * pool_size
        _ping_when_idle(self.engine, idle_ping_seconds)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit if the block returns, roll back if it raises."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A lookup outside any transaction (autocommit): each statement is one round trip,
        with no BEGIN or COMMIT around it. For a single read on a hot path; statements that
        must see one snapshot, or write, belong in :meth:`transaction`."""
        async with self.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            async with AsyncSession(bind=connection, expire_on_commit=False) as session:
                yield session

    @asynccontextmanager
    async def advisory_lock(self, key: str) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL's session advisory lock on ``key``, held for the block on a pooled
        connection of its own, outside any transaction (so no snapshot is held however long
        the block takes). While another session holds it, this waits. A lost connection loses
        the lock with it. The block gets that connection (autocommit) for reads under the lock.

        The wait polls ``pg_try_advisory_lock``: a blocked ``pg_advisory_lock`` would be a
        statement in progress, holding a snapshot for the whole wait."""
        params = {"key": key}
        async with self.engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            pause = LOCK_POLL_SECONDS
            while not (await connection.execute(TRY_ADVISORY_LOCK, params)).scalar_one():
                await asyncio.sleep(pause)
                pause = min(2 * pause, LOCK_POLL_MAX_SECONDS)
            try:
                yield connection
            finally:
                try:
                    await connection.execute(ADVISORY_UNLOCK, params)
                except BaseException as exc:
                    # The lock stays with its session: that session must end rather than go
                    # back to the pool still holding it.
                    await connection.invalidate()
                    if not isinstance(exc, Exception):
                        raise

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling, for connections that sat idle only.

    ``pool_pre_ping`` pings on every checkout: with asyncpg that is BEGIN, a ping and ROLLBACK,
    three round trips before each request's first query. A connection back in the pool a
    moment ago is almost surely alive; one idle for a while may have been dropped (a database
    restart, a proxy's idle timeout), so only those are pinged, and a dead one is replaced
    before use. A connection that dies in the gap fails its statement; SQLAlchemy then
    invalidates the pool, so the next checkouts get fresh connections.
    """
    pool_events = engine.sync_engine

    @event.listens_for(pool_events, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool_events, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError("idle pooled connection is gone") from exc


async def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it does not exist (dev, tests, the migrate job).

    Returns True when it was created.
    """
    import asyncpg

    target = make_url(url)
    name = target.database
    if not name:
        raise ValueError(f"no database in {target.render_as_string(hide_password=True)}")
    admin = target.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # another replica won the race
            return False
        return True
    finally:
        await conn.close()


# Alembic keeps its migration context in module globals: one upgrade at a time per process.
_migration_lock = threading.Lock()


def _upgrade(cfg: Config, revision: str) -> None:
    with _migration_lock:
        command.upgrade(cfg, revision)


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


async def migrate(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    """Upgrade the service's database. Alembic's env runs its own event loop, hence the thread."""
    cfg = alembic_config(migrations_dir, database_url)
    await asyncio.to_thread(_upgrade, cfg, revision)
