from __future__ import annotations

import uuid
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from docuchat_common.schemas import PatchModel


class KnowledgeBaseSettings(BaseModel):
    """How documents are chunked (in embedding-model wordpieces) and how many passages a
    search returns by default."""

    model_config = ConfigDict(extra="forbid")

    chunk_size: int = Field(default=200, ge=64, le=254)
    chunk_overlap: int = Field(default=40, ge=0, le=128)
    top_k: int = Field(default=5, ge=1, le=50)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Self:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class KnowledgeBaseIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    system_prompt: str | None = Field(default=None, max_length=8000)
    settings: KnowledgeBaseSettings = Field(default_factory=KnowledgeBaseSettings)


class KnowledgeBasePatch(PatchModel):
    not_clearable = frozenset({"name", "settings"})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    system_prompt: str | None = Field(default=None, max_length=8000)
    settings: KnowledgeBaseSettings | None = None


class KnowledgeBaseOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    system_prompt: str | None
    settings: KnowledgeBaseSettings
    is_default: bool
    created_at: datetime
    updated_at: datetime


class KnowledgeBaseList(BaseModel):
    items: list[KnowledgeBaseOut]
    next_cursor: str | None = None
