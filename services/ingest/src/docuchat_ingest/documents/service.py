"""Documents: accept an upload, list, show, delete and reindex.

The upload keeps no database connection while the body streams: the knowledge base is checked
in a short transaction first, then the document row and document.uploaded are written in one
transaction (outbox) after the original bytes are in the blob store (a blob without a row is
harmless; a row without its blob is not). Deleting commits the row's removal and
document.deleted first and removes the blob after, for the same reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import PurePosixPath
from typing import Any, cast

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.errors import DocuChatError, NotFound, Unprocessable, UnsupportedMediaType
from docuchat_common.events.catalog import (
    DocumentDeleted,
    DocumentDeletedData,
    DocumentUploaded,
    DocumentUploadedData,
)
from docuchat_common.identity import Identity
from docuchat_common.logging import get_logger
from docuchat_common.pagination import decode_cursor, encode_cursor
from docuchat_common.quota import QuotaGuard
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.blobs import BlobStore, LocalBlobStore, blob_key
from docuchat_ingest.documents.archive import (
    ZIP_MEDIA_TYPE,
    ArchiveLimits,
    is_archive,
    read_archive,
)
from docuchat_ingest.documents.repository import DocumentRepository
from docuchat_ingest.documents.schemas import (
    ArchiveOut,
    DocumentError,
    DocumentList,
    DocumentOut,
    SkippedEntry,
    UploadedArchiveOut,
    UploadedDocumentOut,
)
from docuchat_ingest.documents.upload import UploadedFile, check_content_length, read_file_part
from docuchat_ingest.models import Document
from docuchat_ingest.parsing import PDF, ParseError, detect_media_type
from docuchat_ingest.settings import IngestSettings

SOURCE = "ingest"

log = get_logger(__name__)


def document_out(doc: Document) -> DocumentOut:
    return DocumentOut(**_fields(doc))


def _fields(doc: Document) -> dict[str, Any]:
    error = (
        DocumentError(code=doc.error_code or "failed", message=doc.error or "")
        if doc.error_code or doc.error
        else None
    )
    return {
        "id": doc.id,
        "knowledge_base_id": doc.knowledge_base_id,
        "filename": doc.filename,
        "media_type": doc.media_type,
        "status": doc.status,
        "progress": doc.progress,
        "pages": doc.pages,
        "chunks": doc.chunks,
        "error": error,
        "size_bytes": doc.size_bytes,
        "content_hash": doc.content_hash,
        "created_at": doc.created_at,
        "updated_at": doc.updated_at,
    }


def uploaded_event(doc: Document) -> DocumentUploaded:
    return DocumentUploaded(
        tenant_id=doc.tenant_id,
        source=SOURCE,
        data=DocumentUploadedData(
            document_id=doc.id,
            knowledge_base_id=doc.knowledge_base_id,
            user_id=doc.user_id,
            filename=doc.filename,
            media_type=doc.media_type,
            size_bytes=doc.size_bytes,
            content_hash=doc.content_hash,
        ),
    )


def _not_found() -> NotFound:
    # Another tenant's document looks exactly like none.
    return NotFound("document not found", code="document_not_found")


def _kb_not_found() -> NotFound:
    return NotFound("knowledge base not found", code="knowledge_base_not_found")


def _probe_pdf(data: bytes, max_pages: int) -> None:
    from docuchat_ingest.parsing.pdf import pymupdf  # loaded at start (see app.py)

    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # pymupdf raises many types on broken input
        raise ParseError("corrupt_file", "the PDF cannot be opened") from exc
    try:
        if doc.needs_pass and not doc.authenticate(""):
            raise ParseError("encrypted_document", "the PDF is password-protected")
        if doc.page_count == 0:
            raise ParseError("corrupt_file", "the PDF has no pages")
        if doc.page_count > max_pages:
            raise ParseError("too_many_pages", f"{doc.page_count} pages (limit {max_pages})")
    finally:
        doc.close()


def sort_archive(
    data: bytes, limits: ArchiveLimits, *, max_pages: int
) -> tuple[list[tuple[UploadedFile, str]], list[SkippedEntry]]:
    """The archive's entries that can be documents (with their media type), and the others
    with the reason. Raises for what refuses the whole archive (see ``archive``)."""
    accepted: list[tuple[UploadedFile, str]] = []
    skipped: list[SkippedEntry] = []
    for entry in read_archive(data, limits):
        try:
            media_type = sniff(entry.data, PurePosixPath(entry.filename).name, max_pages=max_pages)
        except DocuChatError as exc:
            skipped.append(SkippedEntry(filename=entry.filename, code=exc.code, message=exc.detail))
            continue
        file = UploadedFile(
            filename=entry.filename,
            content_type=media_type,
            data=entry.data,
            sha256=hashlib.sha256(entry.data).hexdigest(),
        )
        accepted.append((file, media_type))
    return accepted, skipped


def sniff(data: bytes, filename: str, *, max_pages: int) -> str:
    """The media type from magic bytes agreeing with the extension, plus what can be refused
    up front (an encrypted, corrupt or too long PDF). Raises 415 or 422 with a stable code."""
    try:
        media_type = detect_media_type(data, filename)
        if media_type == PDF:
            _probe_pdf(data, max_pages)
    except ParseError as exc:
        if exc.code == "unsupported_media_type":
            raise UnsupportedMediaType(exc.message) from exc
        raise Unprocessable(exc.message, code=exc.code) from exc
    return media_type


class DocumentService:
    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.settings = cast(IngestSettings, runtime.settings)
        blobs: BlobStore | None = runtime.state.get("blobs")
        self.blobs: BlobStore = blobs or LocalBlobStore(self.settings.blob_dir)
        self.quota: QuotaGuard | None = runtime.state.get("quota")

    # -- upload ------------------------------------------------------------------------------

    async def upload(
        self,
        identity: Identity,
        kb_id: uuid.UUID,
        *,
        stream: AsyncIterator[bytes],
        content_type: str,
        content_length: str | None,
    ) -> UploadedDocumentOut | UploadedArchiveOut:
        tenant = identity.tenant_id
        limit = self.settings.max_upload_bytes
        if self.quota is not None:
            self.quota.check(tenant, "documents", "storage_bytes")
        check_content_length(content_length, limit)
        # A 404 before the body is read (one autocommit read; the store checks again).
        async with self.runtime.database.read() as session:
            if await DocumentRepository(session).knowledge_base(tenant, kb_id) is None:
                raise _kb_not_found()

        on_size: Callable[[int], None] | None = None
        if self.quota is not None:
            quota = self.quota

            def on_size(n: int) -> None:
                quota.check_fixed(tenant, file_bytes=n)

        file = await read_file_part(stream, content_type, limit=limit, on_size=on_size)
        if is_archive(file.filename):
            return await self._upload_archive(identity, kb_id, file)
        media_type = await asyncio.to_thread(
            sniff, file.data, file.filename, max_pages=self.settings.max_pages
        )
        (out,) = await self._store_deduplicated(identity, kb_id, [(file, media_type)])
        return out

    async def _upload_archive(
        self, identity: Identity, kb_id: uuid.UUID, archive: UploadedFile
    ) -> UploadedArchiveOut:
        tenant = identity.tenant_id
        limits = ArchiveLimits(
            max_entries=self.settings.archive_max_entries,
            max_entry_bytes=self.settings.max_upload_bytes,
            max_total_bytes=self.settings.archive_max_total_bytes,
            max_ratio=self.settings.archive_max_ratio,
        )
        accepted, skipped = await asyncio.to_thread(
            sort_archive, archive.data, limits, max_pages=self.settings.max_pages
        )
        if self.quota is not None:
            for entry, _ in accepted:
                self.quota.check_fixed(tenant, file_bytes=entry.size)
        if not accepted:
            raise Unprocessable(
                "no file in the archive is a supported document",
                code="empty_archive",
                extra={"skipped": [entry.model_dump() for entry in skipped]},
            )
        documents = await self._store_deduplicated(identity, kb_id, accepted)
        log.info(
            "archive accepted",
            knowledge_base_id=str(kb_id),
            documents=len(documents),
            skipped=len(skipped),
        )
        first = documents[0].model_dump(exclude={"kb_id", "duplicate"})
        return UploadedArchiveOut(
            **first,
            duplicate=all(d.duplicate for d in documents),
            archive=ArchiveOut(
                filename=archive.filename,
                media_type=ZIP_MEDIA_TYPE,
                size_bytes=archive.size,
                content_hash=archive.sha256,
            ),
            documents=documents,
            skipped=skipped,
        )

    async def _store_deduplicated(
        self, identity: Identity, kb_id: uuid.UUID, files: Sequence[tuple[UploadedFile, str]]
    ) -> list[UploadedDocumentOut]:
        try:
            return await self._store(identity, kb_id, files)
        except IntegrityError:
            # The same content arrived concurrently and the other upload won: this pass
            # finds its document as a duplicate.
            return await self._store(identity, kb_id, files)

    async def _store(
        self, identity: Identity, kb_id: uuid.UUID, files: Sequence[tuple[UploadedFile, str]]
    ) -> list[UploadedDocumentOut]:
        """One transaction for every file of the upload: all are queued, or none is."""
        tenant = identity.tenant_id
        stored: list[str] = []
        results: list[UploadedDocumentOut] = []
        try:
            async with self.runtime.database.transaction() as session:
                documents = DocumentRepository(session)
                if await documents.knowledge_base(tenant, kb_id) is None:
                    raise _kb_not_found()
                for file, media_type in files:
                    existing = await documents.by_hash(kb_id, file.sha256)
                    if existing is not None:
                        results.append(UploadedDocumentOut(**_fields(existing), duplicate=True))
                        continue
                    document_id = uuid.uuid4()
                    key = blob_key(tenant, document_id)
                    await self.blobs.put(key, file.data)
                    stored.append(key)
                    doc = Document(
                        id=document_id,
                        tenant_id=tenant,
                        knowledge_base_id=kb_id,
                        user_id=identity.user_id,
                        filename=file.filename,
                        media_type=media_type,
                        size_bytes=file.size,
                        content_hash=file.sha256,
                        blob_key=key,
                        status="queued",
                        progress=0.0,
                    )
                    await documents.add(doc)
                    await self.runtime.outbox.add(session, uploaded_event(doc))
                    results.append(UploadedDocumentOut(**_fields(doc), duplicate=False))
        except BaseException:
            for key in stored:
                await self._forget_blob(key)
            raise
        for out in results:
            if not out.duplicate:
                log.info(
                    "document accepted",
                    document_id=str(out.id),
                    knowledge_base_id=str(kb_id),
                    media_type=out.media_type,
                    size_bytes=out.size_bytes,
                )
        return results

    async def _forget_blob(self, key: str) -> None:
        try:
            await self.blobs.delete(key)
        except OSError:
            log.warning("blob not removed", blob_key=key, exc_info=True)

    # -- read --------------------------------------------------------------------------------

    async def get(
        self, session: AsyncSession, identity: Identity, doc_id: uuid.UUID
    ) -> DocumentOut:
        doc = await DocumentRepository(session).get(identity.tenant_id, doc_id)
        if doc is None:
            raise _not_found()
        return document_out(doc)

    async def watch(
        self, identity: Identity, doc_id: uuid.UUID, *, poll_seconds: float = 0.5
    ) -> AsyncIterator[DocumentOut]:
        """The document each time its status or progress moves, until indexed or failed.

        It reads the row (the worker may be another process) in a short transaction per look,
        so a watching client holds no connection between looks."""
        last: tuple[str, float] | None = None
        while True:
            async with self.runtime.database.transaction() as session:
                doc = await DocumentRepository(session).get(identity.tenant_id, doc_id)
            if doc is None:
                if last is None:
                    raise _not_found()
                return  # deleted while watched
            if (doc.status, doc.progress) != last:
                last = (doc.status, doc.progress)
                yield document_out(doc)
            if doc.status in ("indexed", "failed"):
                return
            await asyncio.sleep(poll_seconds)

    async def list(
        self,
        session: AsyncSession,
        identity: Identity,
        kb_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        status: str | None = None,
    ) -> DocumentList:
        documents = DocumentRepository(session)
        after = decode_cursor(cursor) if cursor else None
        rows = await documents.page(
            identity.tenant_id, kb_id, after=after, limit=limit + 1, status=status
        )
        # The tenant's documents in it show that the knowledge base is there: only an empty
        # page (dashboards poll full ones) asks whether it exists at all.
        if not rows and await documents.knowledge_base(identity.tenant_id, kb_id) is None:
            raise _kb_not_found()
        page = rows[:limit]
        last = page[-1] if len(rows) > limit else None
        return DocumentList(
            items=[document_out(d) for d in page],
            next_cursor=encode_cursor(last.created_at, last.id) if last else None,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def delete(self, identity: Identity, doc_id: uuid.UUID) -> None:
        async with self.runtime.database.transaction() as session:
            documents = DocumentRepository(session)
            doc = await documents.get(identity.tenant_id, doc_id, for_update=True)
            if doc is None:
                raise _not_found()
            key = doc.blob_key
            event = DocumentDeleted(
                tenant_id=doc.tenant_id,
                source=SOURCE,
                data=DocumentDeletedData(
                    document_id=doc.id,
                    knowledge_base_id=doc.knowledge_base_id,
                    size_bytes=doc.size_bytes,
                    was_indexed=doc.status == "indexed",
                ),
            )
            await documents.delete(doc)
            await self.runtime.outbox.add(session, event)
        # After the commit: had it failed, the row would still need its file.
        await self._forget_blob(key)

    async def reindex(
        self, session: AsyncSession, identity: Identity, doc_id: uuid.UUID
    ) -> DocumentOut:
        """Queue the document again from its stored original (also the way out for a document
        stuck in any state: the pipeline is at least once and rewrites the same points)."""
        documents = DocumentRepository(session)
        doc = await documents.get(identity.tenant_id, doc_id, for_update=True)
        if doc is None:
            raise _not_found()
        doc.status = "queued"
        doc.progress = 0.0
        doc.error = None
        doc.error_code = None
        doc.indexed_at = None
        await session.flush()
        await session.refresh(doc)
        await self.runtime.outbox.add(session, uploaded_event(doc))
        return document_out(doc)
