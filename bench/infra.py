"""What the usage benchmarks stand on: a fresh embedded PostgreSQL with the usage database
migrated, and a fresh tansu broker with every topic created."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from docuchat.devstack import EmbeddedPostgres, TansuBroker
from docuchat_common.db import ensure_database, migrate
from docuchat_common.events.topics import all_topics_with_dlq, ensure_topics
from docuchat_common.logging import configure_logging
from docuchat_usage.app import MIGRATIONS


@asynccontextmanager
async def usage_infra() -> AsyncIterator[tuple[str, str]]:
    """Yields (bootstrap servers, usage database URL); stops both afterwards."""
    configure_logging("WARNING", json=True)
    with tempfile.TemporaryDirectory() as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", fast=False)
        broker = TansuBroker(log_path=Path(tmp) / "tansu.log")
        postgres.start()
        try:
            broker.start()
            url = postgres.async_url("docuchat_usage")
            await ensure_database(url)
            await migrate(MIGRATIONS, url)
            await ensure_topics(broker.bootstrap_servers, all_topics_with_dlq())
            yield broker.bootstrap_servers, url
        finally:
            broker.stop()
            postgres.stop()
