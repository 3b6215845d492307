"""The one-shot steps compose (`topics`, `migrate` services) and Kubernetes (the setup Jobs) run,
run the way they run them: `docuchat topics` creates every topic with its partition count, and
`docuchat migrate --target all` creates and migrates every service's database without touching
the vector store. Running them again (every release does) is safe: topics are checked here,
migrations are alembic upgrades to head under an advisory lock. The runbooks' `docuchat dlq`
commands run the same way."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from docuchat_common.events.topics import all_topics_with_dlq
from tests.conftest import SERVICES, Infra


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docuchat", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _env(infra: Infra, suffix: str, tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DOCUCHAT_ENVIRONMENT": "test",
        "DOCUCHAT_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        # as in compose and Kubernetes: a Qdrant server nobody may need for these steps
        "DOCUCHAT_INGEST_QDRANT_URL": "http://127.0.0.1:9",
        "DOCUCHAT_MIGRATE_ON_START": "false",
        "DOCUCHAT_AUTH_KEYS_DIR": str(tmp_path / "keys"),
        "DOCUCHAT_AUTH_MAIL_FILE": str(tmp_path / "mail.jsonl"),
    }
    for service in SERVICES:
        env[f"DOCUCHAT_{service.upper()}_DATABASE_URL"] = infra.async_url(
            f"setup_{service}_{suffix}"
        )
    return env


async def _alembic_heads(infra: Infra, database: str) -> list[str]:
    admin = infra.admin_url.rsplit("/", 1)[0]
    conn = await asyncpg.connect(f"{admin}/{database}")
    try:
        return [row[0] for row in await conn.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await conn.close()


async def _partitions(bootstrap_servers: str) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics([t.name for t in all_topics_with_dlq()])
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


def test_migrate_all_creates_and_upgrades_every_database(infra: Infra, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    result = _run(["migrate", "--target", "all"], _env(infra, suffix, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    for service in SERVICES:
        heads = asyncio.run(_alembic_heads(infra, f"setup_{service}_{suffix}"))
        assert len(heads) == 1, service


def test_topics_creates_every_topic_with_its_partitions_twice(infra: Infra, tmp_path: Path) -> None:
    env = _env(infra, "topics", tmp_path)
    for _ in range(2):
        result = _run(["topics"], env)
        assert result.returncode == 0, result.stderr[-3000:]
    counts = asyncio.run(_partitions(infra.bootstrap_servers))
    assert counts == {t.name: t.partitions for t in all_topics_with_dlq()}


async def test_dlq_show_and_replay_as_an_operator_runs_them(infra: Infra, tmp_path: Path) -> None:
    import json

    from aiokafka import AIOKafkaProducer

    from docuchat_common.events.consumer import (
        DLQ_CONSUMER_HEADER,
        DLQ_ERROR_HEADER,
        DLQ_ERROR_TYPE_HEADER,
    )
    from docuchat_common.events.topics import Topic, ensure_topics

    topic = Topic(f"test.cli.{uuid.uuid4().hex[:8]}", 1, "cli")
    await ensure_topics(infra.bootstrap_servers, [topic, topic.dlq])
    event = {"id": str(uuid.uuid4()), "type": "x.happened", "version": 1, "data": {}}
    headers = [
        (DLQ_CONSUMER_HEADER, b"usage.tokens"),
        (DLQ_ERROR_TYPE_HEADER, b"RuntimeError"),
        (DLQ_ERROR_HEADER, b"handler bug"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic.dlq.name, json.dumps(event).encode(), headers=headers)
        await producer.send_and_wait(topic.dlq.name, b"{not json", headers=headers)
    finally:
        await producer.stop()
    env = _env(infra, uuid.uuid4().hex[:6], tmp_path)

    shown = await asyncio.to_thread(_run, ["dlq", "show", topic.name], env)
    assert shown.returncode == 0, shown.stderr
    assert f"2 dead letters in {topic.name}.dlq" in shown.stdout
    assert "usage.tokens  RuntimeError: handler bug" in shown.stdout

    dry = await asyncio.to_thread(_run, ["dlq", "replay", topic.name, "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr
    assert f"would replay 1 of 2 new dead letters into {topic.name}" in dry.stdout
    assert "skipped (not an event" in dry.stdout
