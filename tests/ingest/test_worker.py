"""The ingest worker: document.uploaded → indexed (or failed with a code), through the real
broker, PostgreSQL, the model and the embedded vector store."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from docuchat_common.events.catalog import (
    DocumentDeleted,
    DocumentDeletedData,
    DocumentUploaded,
    DocumentUploadedData,
)
from docuchat_ingest.app import build_runtime
from docuchat_ingest.blobs import blob_key
from docuchat_ingest.models import Document, KnowledgeBase
from docuchat_ingest.settings import IngestSettings
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import eventually
from tests.in_process import InProcessService, serve

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
SHORT_MD = CORPUS / "docs" / "md" / "pymupdf-test_markdown_bad_unicode.md"  # one chunk


@pytest.fixture
async def worker(settings_for: Any, infra: Any, tmp_path: Path) -> AsyncIterator[InProcessService]:
    settings = settings_for(
        IngestSettings, "ingest", blob_dir=tmp_path / "blobs", vector_dir=tmp_path / "vectors"
    )
    async with serve(
        build_runtime(settings, role="all"), infra.bootstrap_servers, tmp_path / "keys"
    ) as service:
        yield service


async def upload(
    service: InProcessService, tenant: uuid.UUID, path: Path, media_type: str
) -> Document:
    """What the upload route does: blob, row and event (the route has its own tests)."""
    data = path.read_bytes()
    kb = KnowledgeBase(
        id=uuid.uuid4(),
        tenant_id=tenant,
        name=f"kb-{uuid.uuid4().hex[:6]}",
        settings={},
        is_default=False,
    )
    document_id = uuid.uuid4()
    key = blob_key(tenant, document_id)
    await service.runtime.state["blobs"].put(key, data)
    document = Document(
        id=document_id,
        tenant_id=tenant,
        knowledge_base_id=kb.id,
        filename=path.name,
        media_type=media_type,
        size_bytes=len(data),
        content_hash=hashlib.sha256(data).hexdigest(),
        blob_key=key,
        status="queued",
        progress=0.0,
    )
    async with service.runtime.database.transaction() as session:
        session.add(kb)
        await session.flush()
        session.add(document)
    await service.publish(
        DocumentUploaded(
            tenant_id=tenant,
            source="ingest",
            data=DocumentUploadedData(
                document_id=document_id,
                knowledge_base_id=kb.id,
                filename=path.name,
                media_type=media_type,
                size_bytes=len(data),
                content_hash=document.content_hash,
            ),
        )
    )
    return document


async def settled(service: InProcessService, document_id: uuid.UUID) -> Document:
    async def probe() -> Document | None:
        async with service.runtime.database.transaction() as session:
            doc = await session.get(Document, document_id)
        return doc if doc is not None and doc.status in ("indexed", "failed") else None

    return await eventually(probe, timeout=90, what="the document to be indexed or failed")


async def announced(service: InProcessService, document_id: uuid.UUID) -> list[tuple[str, Any]]:
    """The document's own events in the worker's outbox, in order: (type, progress)."""
    async with service.runtime.database.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT event_type, payload FROM outbox"
                " WHERE payload->'data'->>'document_id' = :id ORDER BY seq"
            ),
            {"id": str(document_id)},
        )
        return [(kind, payload["data"].get("progress")) for kind, payload in rows]


async def outbox_types(service: InProcessService) -> list[str]:
    async with service.runtime.database.transaction() as session:
        return [
            r[0] for r in await session.execute(text("SELECT event_type FROM outbox ORDER BY seq"))
        ]


async def test_an_uploaded_pdf_is_indexed_with_progress_and_metered(
    worker: InProcessService,
) -> None:
    tenant = uuid.uuid4()
    document = await upload(
        worker, tenant, CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf", "application/pdf"
    )
    done = await settled(worker, document.id)
    assert (done.status, done.progress, done.pages) == ("indexed", 1.0, 18)
    assert done.chunks and done.chunks > 18
    assert done.embedding_tokens and done.embedding_tokens > 0
    store = worker.runtime.state["vector_store"]
    assert await store.count(tenant, document.knowledge_base_id) == done.chunks
    types = await outbox_types(worker)
    assert types.count("document.progressed") >= 5  # at least every 10%
    assert "document.indexed" in types
    assert "tokens.consumed" in types
    events = await announced(worker, document.id)
    progress = [value for kind, value in events if kind == "document.progressed"]
    # processing at 0, parsed at 0.1, slices as they are written, then the outcome
    assert progress[:2] == [0.0, 0.1]
    assert progress == sorted(progress)
    assert 0.8 < progress[-1] < 1.0
    assert events[-1][0] == "document.indexed"

    await worker.publish(
        DocumentDeleted(
            tenant_id=tenant,
            source="ingest",
            data=DocumentDeletedData(
                document_id=document.id,
                knowledge_base_id=document.knowledge_base_id,
                size_bytes=1,
                was_indexed=True,
            ),
        )
    )

    async def points_gone() -> bool:
        return await store.count(tenant, document.knowledge_base_id) == 0

    assert await eventually(points_gone, what="the deleted document's points to leave the index")


async def test_a_one_slice_document_says_processing_then_indexed(
    worker: InProcessService,
) -> None:
    """A document embedded in one slice has nothing to report between starting and its
    outcome: two events, not a progress for parsing it first."""
    document = await upload(worker, uuid.uuid4(), SHORT_MD, "text/markdown")
    assert (await settled(worker, document.id)).status == "indexed"
    assert [kind for kind, _ in await announced(worker, document.id)] == [
        "document.progressed",
        "document.indexed",
    ]


async def test_a_small_document_is_not_held_up_by_a_long_one_before_it(
    worker: InProcessService,
) -> None:
    tenant = uuid.uuid4()
    long = await upload(
        worker, tenant, CORPUS / "docs" / "md" / "commonmark-spec.md", "text/markdown"
    )

    async def long_started() -> bool:
        async with worker.runtime.database.transaction() as session:
            doc = await session.get(Document, long.id)
        return doc is not None and doc.status == "processing"

    await eventually(long_started, what="the long document to be in the worker")
    short = await upload(worker, tenant, SHORT_MD, "text/markdown")
    assert (await settled(worker, short.id)).status == "indexed"
    async with worker.runtime.database.transaction() as session:
        still = await session.get(Document, long.id)
    # Its hundreds of chunks are still in the model; the short one's went ahead of them.
    assert still is not None and still.status == "processing"
    assert (await settled(worker, long.id)).status == "indexed"


async def test_a_small_database_pool_narrows_the_window_instead_of_wedging_the_worker(
    settings_for: Any, infra: Any, tmp_path: Path
) -> None:
    """Each document in flight holds a connection for its lock and needs another for its
    transactions: with two connections in all, eight documents at once would each wait for a
    connection the others hold."""
    settings = settings_for(
        IngestSettings,
        "ingest",
        blob_dir=tmp_path / "blobs",
        vector_dir=tmp_path / "vectors",
        database_pool_size=1,
    )
    async with serve(
        build_runtime(settings, role="all"), infra.bootstrap_servers, tmp_path / "keys"
    ) as small:
        tenant = uuid.uuid4()
        documents = [await upload(small, tenant, SHORT_MD, "text/markdown") for _ in range(4)]
        done = [await settled(small, document.id) for document in documents]
    assert [d.status for d in done] == ["indexed"] * 4


async def test_an_encrypted_pdf_fails_with_its_code_and_the_worker_goes_on(
    worker: InProcessService,
) -> None:
    tenant = uuid.uuid4()
    bad = await upload(
        worker,
        tenant,
        CORPUS / "docs" / "pdf" / "encrypted" / "pdfminer-aes-256.pdf",
        "application/pdf",
    )
    good = await upload(worker, tenant, SHORT_MD, "text/markdown")
    failed = await settled(worker, bad.id)
    assert (failed.status, failed.error_code) == ("failed", "encrypted_document")
    assert (await settled(worker, good.id)).status == "indexed"
    assert "document.failed" in await outbox_types(worker)
    async with worker.runtime.database.transaction() as session:
        statuses = (
            await session.scalars(select(Document.status).where(Document.tenant_id == tenant))
        ).all()
    assert sorted(statuses) == ["failed", "indexed"]


async def test_deleting_a_knowledge_base_removes_its_documents_points_and_files(
    worker: InProcessService,
) -> None:
    tenant = uuid.uuid4()
    document = await upload(worker, tenant, SHORT_MD, "text/markdown")
    assert (await settled(worker, document.id)).status == "indexed"
    store = worker.runtime.state["vector_store"]
    assert await store.count(tenant, document.knowledge_base_id) > 0

    deleted = await worker.client.delete(
        f"/api/v1/knowledge-bases/{document.knowledge_base_id}",
        headers=worker.signer.headers(tenant),
    )
    assert deleted.status_code == 204

    async def all_gone() -> bool:
        return await store.count(tenant, document.knowledge_base_id) == 0

    assert await eventually(all_gone, what="the knowledge base's points to leave the index")
    assert "document.deleted" in await outbox_types(worker)
    blob = worker.runtime.state["blobs"]._path(document.blob_key)

    async def file_gone() -> bool:
        return not blob.exists()

    assert await eventually(file_gone, what="the original file to be removed")


async def test_a_configured_embeddings_endpoint_replaces_the_local_model(
    settings_for: Any, infra: Any, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    settings = settings_for(
        IngestSettings,
        "ingest",
        blob_dir=tmp_path / "blobs",
        vector_dir=tmp_path / "vectors",
        embedding_base_url=fake_openai.base_url,
        embedding_api_key="sk-embeddings",
        embedding_model="text-embedding-3-small",
        embedding_dimensions=256,
    )
    async with serve(
        build_runtime(settings, role="all"), infra.bootstrap_servers, tmp_path / "keys"
    ) as service:
        tenant = uuid.uuid4()
        document = await upload(
            service,
            tenant,
            CORPUS / "docs" / "md" / "payloadsallthethings-XXE-README.md",
            "text/markdown",
        )
        done = await settled(service, document.id)
        assert done.status == "indexed", done.error
        calls = fake_openai.embedding_requests
        assert calls and {c.api_key for c in calls} == {"sk-embeddings"}
        assert {c.body["dimensions"] for c in calls} == {256}
        # billed as the endpoint counted: the fake counts one token per word
        assert done.embedding_tokens == sum(
            len(text.split()) for c in calls for text in c.body["input"]
        )
        store = service.runtime.state["vector_store"]
        assert await store.count(tenant, document.knowledge_base_id) == done.chunks
