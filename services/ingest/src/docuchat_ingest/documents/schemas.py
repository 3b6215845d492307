from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel


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


class UploadedDocumentOut(DocumentOut):
    duplicate: bool = False


class DocumentList(BaseModel):
    items: list[DocumentOut]
    next_cursor: str | None = None


class SkippedEntry(BaseModel):
    filename: str
    code: str
    message: str


class UploadedArchiveOut(BaseModel):
    """A ZIP upload: every supported file became a document of its own.

    ``id`` names this upload (it is not a document); ``documents`` are the documents created
    (or found again: ``duplicate``), ``skipped`` the entries that were not, with why."""

    id: uuid.UUID
    knowledge_base_id: uuid.UUID
    filename: str
    media_type: str
    status: str
    size_bytes: int
    content_hash: str
    duplicate: bool
    documents: list[UploadedDocumentOut]
    skipped: list[SkippedEntry]
