from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, computed_field


class DocumentError(BaseModel):
    code: str
    message: str


class DocumentOut(BaseModel):
    id: uuid.UUID
    knowledge_base_id: uuid.UUID
    filename: str
    media_type: str
    status: str
    progress: float
    pages: int | None
    chunks: int | None
    error: DocumentError | None
    size_bytes: int
    content_hash: str
    created_at: datetime
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def kb_id(self) -> uuid.UUID:
        """The API contract's name for ``knowledge_base_id``."""
        return self.knowledge_base_id


class UploadedDocumentOut(DocumentOut):
    duplicate: bool = False


class DocumentList(BaseModel):
    items: list[DocumentOut]
    next_cursor: str | None = None


class SkippedEntry(BaseModel):
    filename: str
    code: str
    message: str


class ArchiveOut(BaseModel):
    filename: str
    media_type: str
    size_bytes: int
    content_hash: str


class UploadedArchiveOut(UploadedDocumentOut):
    """A ZIP upload: every supported file became a document of its own.

    The top-level fields are the first of those documents (a client that follows one upload's
    ``id`` finds a document there); ``duplicate`` is true when every file was already there.
    ``documents`` are all the documents created (or found again: ``duplicate``), ``skipped`` the
    entries that were not, with why, and ``archive`` the ZIP itself."""

    archive: ArchiveOut
    documents: list[UploadedDocumentOut]
    skipped: list[SkippedEntry]
