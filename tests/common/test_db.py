"""Pooled connections: one that sat idle is checked before use, so a database restart (or a
proxy's idle timeout) costs no request; a busy pool skips the check's round trips."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from docuchat_common.db import Database
from tests.helpers import terminate_connections


async def backend_pids(database: Database) -> set[int]:
    async with database.transaction() as session:
        return {int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)}


async def test_a_connection_back_from_idle_is_replaced_before_use_when_it_died(
    databases: dict[str, str],
) -> None:
    url = databases["usage"]
    # Any time back in the pool counts as idle here: every checkout is checked.
    database = Database(url, pool_size=1, idle_ping_seconds=0.0)
    try:
        before = await backend_pids(database)
        await terminate_connections(url)

        after = await backend_pids(database)  # no error: the dead connection was replaced

        assert after and after != before
    finally:
        await database.dispose()


async def test_a_connection_back_a_moment_ago_is_used_without_a_check(
    databases: dict[str, str],
) -> None:
    """The trade-off, shown: a connection killed between two close requests fails the second
    one's statement; the pool is then invalidated and the request after it succeeds."""
    url = databases["usage"]
    database = Database(url, pool_size=1, idle_ping_seconds=60)
    try:
        await backend_pids(database)
        await terminate_connections(url)

        with pytest.raises(DBAPIError):
            await backend_pids(database)
        assert await backend_pids(database)
    finally:
        await database.dispose()


async def test_a_read_runs_each_statement_on_its_own_and_leaves_the_pool_transactional(
    databases: dict[str, str],
) -> None:
    database = Database(databases["usage"], pool_size=1)
    xid = text("SELECT pg_current_xact_id()::text")
    try:
        async with database.read() as session:
            first, second = await session.scalar(xid), await session.scalar(xid)
        assert first != second  # autocommit: no BEGIN, no COMMIT, one round trip each
        # the same (only) pooled connection is back to one transaction per unit of work
        async with database.transaction() as session:
            first, second = await session.scalar(xid), await session.scalar(xid)
        assert first == second
    finally:
        await database.dispose()
