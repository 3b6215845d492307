"""Reading a service's database directly: what no API shows (a purge left nothing behind)."""

from __future__ import annotations

from typing import Any

import asyncpg

from docuchat.stack import DevStack


async def sql(stack: DevStack, database: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(stack.postgres.url(database))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()
