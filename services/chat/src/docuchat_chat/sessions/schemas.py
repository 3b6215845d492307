from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from docuchat_common.schemas import PatchModel


class SessionIn(BaseModel):
    knowledge_base_id: uuid.UUID
    title: str | None = Field(default=None, max_length=200)


class SessionPatch(PatchModel):
    not_clearable = frozenset({"title", "archived"})

    title: str | None = Field(default=None, min_length=1, max_length=200)
    archived: StrictBool | None = None  # "yes" is a 422, as for a question's stream


class SessionOut(BaseModel):
    id: uuid.UUID
    knowledge_base_id: uuid.UUID
    title: str | None
    archived: bool
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None


class SessionList(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None = None


class CitationOut(BaseModel):
    number: int
    document_id: uuid.UUID
    filename: str
    page: int | None
    # The last page the passage runs onto (a chunk may cross a page break).
    page_end: int | None = None
    chunk_id: str
    text: str


class UsageOut(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # False when no model ran (the extractive provider): the counts say what the answer holds,
    # and nothing was metered against the plan or shows in /usage.
    metered: bool = True


class MessageOut(BaseModel):
    id: uuid.UUID
    session_id: uuid.UUID
    role: Literal["user", "assistant"]
    content: str
    grounded: bool | None
    citations: list[CitationOut]
    usage: UsageOut | None
    model: str | None
    complete: bool
    status: str
    created_at: datetime


class MessageList(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None = None
