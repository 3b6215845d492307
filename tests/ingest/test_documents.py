"""Documents: streamed upload with type, size and duplicate checks; list, get, delete, reindex;
every answer scoped by tenant, every state change published through the outbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from docuchat_common.events.catalog import QuotaChanged, QuotaChangedData, QuotaLimitState
from docuchat_ingest.blobs import LocalBlobStore, blob_key
from docuchat_ingest.models import outbox
from docuchat_ingest.settings import IngestSettings
from tests.ingest.conftest import IngestService

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PDF_FILE = CORPUS / "docs" / "pdf" / "text" / "pyPdf-001-minimal-document.pdf"
BIG_PDF = CORPUS / "docs" / "pdf" / "text" / "pdfjs-TAMReview.pdf"
DOCX_FILE = CORPUS / "docs" / "docx" / "pythondocx-test.docx"
ENCRYPTED_PDF = CORPUS / "docs" / "pdf" / "encrypted" / "pdfminer-aes-256.pdf"
MD_FILE = CORPUS / "docs" / "md" / "commonmark-spec.md"

KB = "/api/v1/knowledge-bases"
DOCS = "/api/v1/documents"


async def _kb(ingest: IngestService, tenant: uuid.UUID, name: str = "Docs") -> str:
    created = await ingest.client.post(KB, json={"name": name}, headers=ingest.as_user(tenant))
    assert created.status_code == 201, created.text
    kb_id: str = created.json()["id"]
    return kb_id


async def _upload(
    ingest: IngestService,
    tenant: uuid.UUID,
    kb_id: str,
    path: Path,
    *,
    filename: str | None = None,
    content_type: str = "application/octet-stream",
) -> Any:
    return await ingest.client.post(
        f"{KB}/{kb_id}/documents",
        files={"file": (filename or path.name, path.read_bytes(), content_type)},
        headers=ingest.as_user(tenant),
    )


async def _events(ingest: IngestService, event_type: str, document_id: str) -> list[dict[str, Any]]:
    async with ingest.runtime.database.transaction() as session:
        rows = (
            await session.execute(select(outbox.c.payload).where(outbox.c.event_type == event_type))
        ).all()
    return [r.payload for r in rows if r.payload["data"]["document_id"] == document_id]


def _settings(ingest: IngestService) -> IngestSettings:
    settings = ingest.runtime.settings
    assert isinstance(settings, IngestSettings)
    return settings


def _stored(store: LocalBlobStore, tenant: uuid.UUID) -> list[Path]:
    folder = store.root / str(tenant)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def test_upload_queues_the_document_and_publishes_it_through_the_outbox(
    ingest: IngestService, blobs: LocalBlobStore
) -> None:
    tenant = uuid.uuid4()
    kb_id = await _kb(ingest, tenant)
    data = PDF_FILE.read_bytes()

    first = await _upload(ingest, tenant, kb_id, PDF_FILE)
    assert first.status_code == 202, first.text
    doc = first.json()
    assert doc["status"] == "queued"
    assert doc["duplicate"] is False
    assert doc["knowledge_base_id"] == kb_id
    assert doc["filename"] == PDF_FILE.name
    assert doc["media_type"] == "application/pdf"
    assert doc["size_bytes"] == len(data)
    assert len(doc["content_hash"]) == 64
    assert doc["progress"] == 0
    assert doc["error"] is None

    # The original is kept under the document's blob key.
    assert await blobs.get(blob_key(tenant, uuid.UUID(doc["id"]))) == data
    [event] = await _events(ingest, "document.uploaded", doc["id"])
    assert event["tenant_id"] == str(tenant)
    assert event["data"]["knowledge_base_id"] == kb_id
    assert event["data"]["content_hash"] == doc["content_hash"]
    assert event["data"]["media_type"] == "application/pdf"

    again = await _upload(ingest, tenant, kb_id, PDF_FILE, filename="copy.pdf")
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["id"] == doc["id"]
    assert len(await _events(ingest, "document.uploaded", doc["id"])) == 1

    # The same content in another knowledge base is another document.
    other_kb = await _kb(ingest, tenant, "Other")
    elsewhere = await _upload(ingest, tenant, other_kb, PDF_FILE)
    assert elsewhere.status_code == 202
    assert elsewhere.json()["id"] != doc["id"]


async def test_too_large_files_are_refused_while_streaming_and_nothing_is_kept(
    ingest: IngestService, blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = uuid.uuid4()
    kb_id = await _kb(ingest, tenant)
    monkeypatch.setattr(_settings(ingest), "max_upload_bytes", 1000)

    # Content-Length fits the framing slack: refused by the streaming count.
    streamed = await _upload(ingest, tenant, kb_id, PDF_FILE)
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["code"] == "file_too_large"
    assert streamed.headers["content-type"].startswith("application/problem+json")
    # Content-Length alone rules it out: refused before the body is read.
    early = await _upload(ingest, tenant, kb_id, BIG_PDF)
    assert early.status_code == 413
    assert early.json()["code"] == "file_too_large"

    listed = await ingest.client.get(f"{KB}/{kb_id}/documents", headers=ingest.as_user(tenant))
    assert listed.json()["items"] == []
    assert _stored(blobs, tenant) == []


async def test_type_comes_from_the_bytes_and_bad_files_get_a_stable_code(
    ingest: IngestService, blobs: LocalBlobStore
) -> None:
    tenant = uuid.uuid4()
    kb_id = await _kb(ingest, tenant)

    disguised = await _upload(ingest, tenant, kb_id, DOCX_FILE, filename="report.pdf")
    assert disguised.status_code == 415, disguised.text
    assert disguised.json()["code"] == "unsupported_media_type"

    encrypted = await _upload(ingest, tenant, kb_id, ENCRYPTED_PDF)
    assert encrypted.status_code == 422, encrypted.text
    assert encrypted.json()["code"] == "encrypted_document"

    # A .zip is opened as an archive: a Word document's parts are no documents of their own.
    archive = await _upload(ingest, tenant, kb_id, DOCX_FILE, filename="bundle.zip")
    assert archive.status_code == 422, archive.text
    assert archive.json()["code"] == "empty_archive"
    assert {s["code"] for s in archive.json()["skipped"]} == {"unsupported_media_type"}

    empty = await ingest.client.post(
        f"{KB}/{kb_id}/documents",
        files={"file": ("empty.txt", b"", "text/plain")},
        headers=ingest.as_user(tenant),
    )
    assert empty.status_code == 422
    assert empty.json()["code"] == "no_extractable_text"

    no_file = await ingest.client.post(
        f"{KB}/{kb_id}/documents",
        files={"attachment": ("a.txt", b"hello", "text/plain")},
        headers=ingest.as_user(tenant),
    )
    assert no_file.status_code == 422
    assert no_file.json()["code"] == "file_required"
    not_multipart = await ingest.client.post(
        f"{KB}/{kb_id}/documents", json={"file": "x"}, headers=ingest.as_user(tenant)
    )
    assert not_multipart.status_code == 422

    docx = await _upload(ingest, tenant, kb_id, DOCX_FILE)
    assert docx.status_code == 202, docx.text
    assert docx.json()["media_type"].endswith("wordprocessingml.document")
    markdown = await _upload(ingest, tenant, kb_id, MD_FILE, content_type="text/markdown")
    assert markdown.status_code == 202
    assert markdown.json()["media_type"] == "text/markdown"

    listed = await ingest.client.get(f"{KB}/{kb_id}/documents", headers=ingest.as_user(tenant))
    assert len(listed.json()["items"]) == 2
    assert len(_stored(blobs, tenant)) == 2


async def test_list_get_reindex_delete_and_tenant_isolation(
    ingest: IngestService, blobs: LocalBlobStore
) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    kb_id = await _kb(ingest, tenant)
    a = headers = ingest.as_user(tenant)
    b = ingest.as_user(other)
    ids = []
    for path in (PDF_FILE, DOCX_FILE, MD_FILE):
        response = await _upload(ingest, tenant, kb_id, path)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])

    first = await ingest.client.get(f"{KB}/{kb_id}/documents?limit=2", headers=a)
    assert first.status_code == 200
    assert first.json()["next_cursor"]
    cursor = first.json()["next_cursor"]
    second = await ingest.client.get(f"{KB}/{kb_id}/documents?limit=2&cursor={cursor}", headers=a)
    listed = [d["id"] for d in first.json()["items"] + second.json()["items"]]
    assert sorted(listed) == sorted(ids)
    assert second.json()["next_cursor"] is None
    queued = await ingest.client.get(f"{KB}/{kb_id}/documents?status=indexed", headers=a)
    assert queued.json()["items"] == []

    doc_id = ids[0]
    got = await ingest.client.get(f"{DOCS}/{doc_id}", headers=headers)
    assert got.status_code == 200
    body = got.json()
    # The contract's fields, by the contract's names.
    assert {"id", "kb_id", "filename", "media_type", "status", "progress", "pages", "chunks"} <= (
        body.keys()
    )
    assert body["kb_id"] == kb_id
    assert body["filename"] == PDF_FILE.name
    assert {d["kb_id"] for d in first.json()["items"]} == {kb_id}

    # Another tenant sees nothing and can touch nothing.
    for method, url in [
        ("GET", f"{DOCS}/{doc_id}"),
        ("DELETE", f"{DOCS}/{doc_id}"),
        ("POST", f"{DOCS}/{doc_id}/reindex"),
        ("GET", f"{KB}/{kb_id}/documents"),
    ]:
        response = await ingest.client.request(method, url, headers=b)
        assert response.status_code == 404, (method, url, response.text)
    foreign = await _upload(ingest, other, kb_id, PDF_FILE, filename="x.pdf")
    assert foreign.status_code == 404
    assert foreign.json()["code"] == "knowledge_base_not_found"
    unknown = await ingest.client.get(f"{DOCS}/{uuid.uuid4()}", headers=a)
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "document_not_found"

    reindexed = await ingest.client.post(f"{DOCS}/{doc_id}/reindex", headers=a)
    assert reindexed.status_code == 202, reindexed.text
    assert reindexed.json()["status"] == "queued"
    assert reindexed.json()["progress"] == 0
    assert len(await _events(ingest, "document.uploaded", doc_id)) == 2

    key = blob_key(tenant, uuid.UUID(doc_id))
    assert (blobs.root / key).exists()
    deleted = await ingest.client.delete(f"{DOCS}/{doc_id}", headers=a)
    assert deleted.status_code == 204
    assert not (blobs.root / key).exists()
    [event] = await _events(ingest, "document.deleted", doc_id)
    assert event["tenant_id"] == str(tenant)
    assert event["data"]["knowledge_base_id"] == kb_id
    assert event["data"]["size_bytes"] == PDF_FILE.stat().st_size
    assert event["data"]["was_indexed"] is False
    assert (await ingest.client.get(f"{DOCS}/{doc_id}", headers=a)).status_code == 404
    assert (await ingest.client.delete(f"{DOCS}/{doc_id}", headers=a)).status_code == 404

    # The content can be uploaded again once its document is gone.
    again = await _upload(ingest, tenant, kb_id, PDF_FILE)
    assert again.status_code == 202
    assert again.json()["id"] != doc_id


async def test_the_body_stops_being_read_once_the_file_passes_the_limit(
    ingest: IngestService, blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = uuid.uuid4()
    kb_id = await _kb(ingest, tenant)
    monkeypatch.setattr(_settings(ingest), "max_upload_bytes", 100_000)
    boundary = "docuchat-test-boundary"
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="huge.txt"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        for _ in range(1000):  # 64 MB, without a Content-Length
            sent += 1
            yield b"a" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await ingest.client.post(
        f"{KB}/{kb_id}/documents",
        content=body(),
        headers={
            **ingest.as_user(tenant),
            "content-type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "file_too_large"
    assert sent <= 3  # refused after ~100 KB, not after 64 MB
    assert _stored(blobs, tenant) == []


async def test_plan_quotas_refuse_uploads(ingest: IngestService, blobs: LocalBlobStore) -> None:
    tenant = uuid.uuid4()
    kb_id = await _kb(ingest, tenant)
    guard = ingest.runtime.state["quota"]

    async def plan(state: QuotaChangedData) -> None:
        await ingest.publish(
            QuotaChanged(
                tenant_id=tenant, source="usage", occurred_at=datetime.now(UTC), data=state
            )
        )
        await guard.wait_for(tenant, lambda s: s == state, timeout=30)

    await plan(QuotaChangedData(plan="free", limits={}, max_file_bytes=1000))
    too_big = await _upload(ingest, tenant, kb_id, PDF_FILE)
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["code"] == "file_too_large"
    assert too_big.json()["max_file_bytes"] == 1000

    await plan(
        QuotaChangedData(
            plan="free",
            limits={"documents": QuotaLimitState(used=10, limit=10, remaining=0)},
            exceeded=["documents"],
        )
    )
    spent = await _upload(ingest, tenant, kb_id, PDF_FILE)
    assert spent.status_code == 429, spent.text
    assert spent.json()["code"] == "quota_exceeded"
    assert spent.headers["retry-after"]
    assert _stored(blobs, tenant) == []


async def test_the_plans_request_rate_is_enforced_per_tenant(ingest: IngestService) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    guard = ingest.runtime.state["quota"]
    state = QuotaChangedData(plan="free", limits={}, requests_per_minute=3)
    await ingest.publish(
        QuotaChanged(tenant_id=tenant, source="usage", occurred_at=datetime.now(UTC), data=state)
    )
    await guard.wait_for(tenant, lambda s: s == state, timeout=30)

    # Reads (a client polling a document) are not counted; requests that make work are.
    for _ in range(5):
        assert (await ingest.client.get(KB, headers=ingest.as_user(tenant))).status_code == 200
    statuses = []
    for n in range(4):
        response = await ingest.client.post(
            KB, json={"name": f"kb {n}"}, headers=ingest.as_user(tenant)
        )
        statuses.append(response.status_code)
    assert statuses == [201, 201, 201, 429]
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "rate_limited"
    assert response.json()["requests_per_minute"] == 3
    assert 1 <= int(response.headers["retry-after"]) <= 60
    # Another tenant (here without a plan state yet) is not held back.
    created = await ingest.client.post(KB, json={"name": "x"}, headers=ingest.as_user(other))
    assert created.status_code == 201
