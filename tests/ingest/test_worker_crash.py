"""A worker killed mid-document: the event is redelivered to its replacement, the document
finishes, and the deterministic point ids leave no duplicate behind."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from docuchat.devstack import free_port, http_ok
from docuchat.devstack.process import ManagedProcess
from docuchat_ingest.models import Document
from docuchat_ingest.vectorstore.edge_store import QdrantEdgeStore
from tests.helpers import eventually
from tests.ingest.conftest import IngestService

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
LONG_DOCUMENT = CORPUS / "docs" / "md" / "commonmark-spec.md"  # ~200 KB: hundreds of chunks
REPO = Path(__file__).resolve().parents[2]
# Kubernetes' default terminationGracePeriodSeconds.
GRACE_SECONDS = 30


@pytest.fixture
def worker_process(
    infra: Any, databases: dict[str, str], group_prefix: str, tmp_path: Path
) -> Iterator[Any]:
    """Start ``docuchat run --target ingest-worker`` processes sharing this test's database,
    blob directory and vector shard, as a deployment's successive worker pods would."""
    started: list[ManagedProcess] = []

    def start(**extra_env: str) -> ManagedProcess:
        port = free_port()
        env = {
            **os.environ,
            "DOCUCHAT_ENVIRONMENT": "test",
            "DOCUCHAT_LOG_JSON": "true",
            "DOCUCHAT_KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
            "DOCUCHAT_KAFKA_SESSION_TIMEOUT_MS": "2000",
            "DOCUCHAT_KAFKA_HEARTBEAT_INTERVAL_MS": "300",
            "DOCUCHAT_CONSUMER_GROUP_PREFIX": group_prefix,
            "DOCUCHAT_INGEST_DATABASE_URL": databases["ingest"],
            "DOCUCHAT_INGEST_MIGRATE_ON_START": "false",
            "DOCUCHAT_INGEST_BLOB_DIR": str(tmp_path / "blobs"),
            "DOCUCHAT_INGEST_VECTOR_DIR": str(tmp_path / "vectors"),
            "DOCUCHAT_INGEST_WORKER_PORT": str(port),
            **extra_env,
        }
        process = ManagedProcess(
            f"ingest-worker-{len(started)}",
            [sys.executable, "-m", "docuchat", "run", "--target", "ingest-worker"],
            log_path=tmp_path / f"worker-{len(started)}.log",
            env=env,
            cwd=REPO,
        )
        started.append(process)
        process.start()
        process.wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), what="ready", timeout=90
        )
        return process

    yield start
    for process in started:
        process.stop()


async def _document(ingest: IngestService, document_id: uuid.UUID) -> Document | None:
    async with ingest.runtime.database.transaction() as session:
        return await session.get(Document, document_id)


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
async def test_a_worker_stopped_mid_document_is_replaced_and_the_document_finishes_once(
    ingest: IngestService, worker_process: Any, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """SIGKILL: nothing is committed, the event is redelivered. SIGTERM (a pod being
    replaced): the worker stops within its grace period; a document it cannot finish within its
    graceful timeout (1 s here) is abandoned uncommitted, and the replacement finishes it."""
    tenant = uuid.uuid4()
    headers = ingest.as_user(tenant)
    kb = await ingest.client.post("/api/v1/knowledge-bases", json={"name": "k"}, headers=headers)
    kb_id = kb.json()["id"]
    first = worker_process(DOCUCHAT_CONSUMER_GRACEFUL_TIMEOUT_SECONDS="1")
    uploaded = await ingest.client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (LONG_DOCUMENT.name, LONG_DOCUMENT.read_bytes(), "text/markdown")},
        headers=headers,
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id = uuid.UUID(uploaded.json()["id"])

    async def midway() -> Document | None:
        doc = await _document(ingest, document_id)
        return doc if doc is not None and 0 < doc.progress < 0.9 else None

    before = await eventually(midway, timeout=120, what="the worker to be part-way through")
    assert before.status == "processing"
    assert first.pid is not None
    os.kill(first.pid, stop_signal)
    first.wait(timeout=GRACE_SECONDS)
    first.stop()  # and anything it left in its process group

    second = worker_process()

    async def finished() -> Document | None:
        doc = await _document(ingest, document_id)
        return doc if doc is not None and doc.status in ("indexed", "failed") else None

    done = await eventually(finished, timeout=180, what="the replacement to finish it")
    assert (done.status, done.progress) == ("indexed", 1.0)
    assert done.chunks is not None and done.chunks > 10

    async with ingest.runtime.database.transaction() as session:
        announced = (
            await session.execute(
                text(
                    "SELECT event_type, count(*) FROM outbox "
                    "WHERE payload->'data'->>'document_id' = :doc "
                    "   OR payload->'data'->>'reference' = :doc GROUP BY event_type"
                ),
                {"doc": str(document_id)},
            )
        ).all()
    counts = dict(announced)
    assert counts.get("document.indexed") == 1
    assert counts.get("tokens.consumed") == 1  # the embedding tokens are metered once

    second.stop()  # the shard has one owner: release it before reading it here
    store = QdrantEdgeStore(tmp_path / "vectors")
    try:
        await store.ensure_collection()
        assert await store.count(tenant, document_id=document_id) == done.chunks
    finally:
        await store.close()
