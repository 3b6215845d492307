from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel

Window = Literal["24h", "7d", "30d"]


class TokenTotals(BaseModel):
    prompt: int = 0
    completion: int = 0
    embedding: int = 0
    total: int = 0


class ModelUsage(TokenTotals):
    model: str


class UserUsage(TokenTotals):
    user_id: uuid.UUID | None  # null: spent by no user (a system job)


class DocumentUsage(BaseModel):
    count: int
    storage_bytes: int


class LimitOut(BaseModel):
    used: int
    limit: int | None
    remaining: int | None
    resets_at: datetime | None


class UsageSummary(BaseModel):
    window: Window
    since: datetime
    plan: str | None
    tokens: TokenTotals
    by_model: list[ModelUsage]
    by_user: list[UserUsage]
    documents: DocumentUsage
    limits: dict[str, LimitOut]
    remaining: dict[str, int | None]
    exceeded: list[str]


class DayUsage(BaseModel):
    date: date
    tokens: int
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
