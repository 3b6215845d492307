"""What the usage benchmarks stand on: a fresh embedded PostgreSQL with the usage database
migrated, and a fresh tansu broker with every topic created."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import psutil

from docuchat.devstack import EmbeddedPostgres, TansuBroker
from docuchat_common.db import ensure_database, migrate
from docuchat_common.events.topics import all_topics_with_dlq, ensure_topics
from docuchat_common.logging import configure_logging
from docuchat_usage.app import MIGRATIONS


class UsageInfra(NamedTuple):
    bootstrap: str
    database_url: str
    # The servers' own process ids, for the CPU each one spends.
    postgres_pid: int
    broker_pid: int


@asynccontextmanager
async def usage_infra() -> AsyncIterator[UsageInfra]:
    """Yields the broker's bootstrap servers, the usage database's URL and both servers'
    process ids; stops both afterwards."""
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
            assert postgres.pid is not None
            assert broker.pid is not None
            yield UsageInfra(broker.bootstrap_servers, url, postgres.pid, broker.pid)
        finally:
            broker.stop()
            postgres.stop()


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and everything it started (PostgreSQL's backends)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:  # a backend that ended meanwhile
            continue
        total += times.user + times.system
    return total
