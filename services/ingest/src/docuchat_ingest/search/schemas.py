from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

MAX_TOP_K = 50
# Longer queries are refused (422 query_too_long) rather than silently cut: a question is a
# sentence or a paragraph, not a document. Within this bound the dense side reads the first
# 256 wordpieces (the model's window) and the BM25 side every term.
MAX_QUERY_CHARS = 2000

SearchMode = Literal["hybrid", "dense", "sparse"]


class SearchIn(BaseModel):
    query: str
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K)


class SearchHitOut(BaseModel):
    document_id: uuid.UUID
    filename: str
    page: int | None = Field(description="first page of the chunk (page_start)")
    page_end: int | None
    heading_path: list[str]
    chunk_id: uuid.UUID
    chunk_index: int
    text: str
    score: float = Field(description="rank score: RRF fusion (hybrid), cosine (dense), BM25")
    similarity: float = Field(
        description="cosine between the query's and the chunk's embeddings, on every hit"
    )


class SearchedKnowledgeBase(BaseModel):
    id: uuid.UUID
    name: str
    system_prompt: str | None


class SearchOut(BaseModel):
    hits: list[SearchHitOut]
    knowledge_base: SearchedKnowledgeBase
