"""Searching a knowledge base: the query is embedded (cached) and BM25-encoded, the vector
store fuses both sides, and hits come back with their pages and headings.

Runs in the process that owns the vector store (see app.py); the knowledge base is read from
the database first, so another tenant's (or a missing) knowledge base is a 404 before any
vector is touched, and every store query is filtered by the caller's tenant as well.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

from cachetools import LRUCache

from docuchat_common.errors import NotFound, Unprocessable
from docuchat_common.identity import Identity
from docuchat_ingest.embedding import Embedder
from docuchat_ingest.embedding.base import Vectors
from docuchat_ingest.embedding.sparse import SparseEncoder
from docuchat_ingest.knowledge_bases.repository import KnowledgeBaseRepository
from docuchat_ingest.knowledge_bases.schemas import KnowledgeBaseSettings
from docuchat_ingest.models import KnowledgeBase
from docuchat_ingest.search.schemas import (
    MAX_QUERY_CHARS,
    SearchedKnowledgeBase,
    SearchHitOut,
    SearchIn,
    SearchMode,
    SearchOut,
)
from docuchat_ingest.vectorstore import SearchHit, SparseVector, VectorStore

DEFAULT_CACHE_SIZE = 4096


class QueryEncoder:
    """A query's dense embedding (LRU-cached by its text: a repeated question costs no model
    call) and its BM25 vector (cheap, not cached)."""

    def __init__(
        self, embedder: Embedder, sparse: SparseEncoder, *, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        self.embedder = embedder
        self.sparse = sparse
        self._cache: LRUCache[str, Vectors] = LRUCache(maxsize=cache_size)

    async def dense(self, text: str) -> Vectors:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        vector: Vectors = (await self.embedder.embed([text])).vectors[0]
        vector.setflags(write=False)  # shared by every later hit of the cache
        self._cache[text] = vector
        return vector

    def encode_sparse(self, text: str) -> SparseVector:
        return self.sparse.encode_query(text)


@dataclass
class Timings:
    """Where a search's time went, in milliseconds by step: served as ``Server-Timing``."""

    steps: dict[str, float] = field(default_factory=dict)
    _mark: float = field(default_factory=time.perf_counter)

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = self.steps.get(step, 0.0) + (now - self._mark) * 1000
        self._mark = now

    def header(self) -> str:
        return ", ".join(f"{step};dur={ms:.1f}" for step, ms in self.steps.items())


@dataclass(frozen=True)
class Retrieval:
    """Search over the store this process owns, with its query encoders. Callers have checked
    that the knowledge base is the tenant's; the store filters by both anyway."""

    store: VectorStore
    queries: QueryEncoder

    def start_embedding(self, query: str) -> asyncio.Task[Vectors]:
        """The query's dense embedding, begun now: the model runs in a worker thread while the
        caller does its own I/O (the knowledge-base lookup) on the event loop."""
        return asyncio.create_task(self.queries.dense(query), name="query-embedding")

    async def search(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        query: str,
        top_k: int,
        *,
        mode: SearchMode = "hybrid",
        timings: Timings | None = None,
        embedding: Awaitable[Vectors] | None = None,
    ) -> list[SearchHit]:
        timings = timings or Timings()
        dense = await (embedding if embedding is not None else self.queries.dense(query))
        timings.lap("embed")
        if mode == "dense":
            hits = await self.store.search_dense(tenant_id, kb_id, dense, top_k)
            timings.lap("store")
            return hits
        sparse = self.queries.encode_sparse(query)
        timings.lap("sparse")
        if mode == "sparse":
            hits = await self.store.search_sparse(tenant_id, kb_id, dense, sparse, top_k)
        else:
            hits = await self.store.search_hybrid(tenant_id, kb_id, dense, sparse, top_k)
        timings.lap("store")
        return hits


def clean_query(raw: str) -> str:
    query = " ".join(raw.split())
    if not query:
        raise Unprocessable("the query is empty", code="empty_query")
    if len(query) > MAX_QUERY_CHARS:
        raise Unprocessable(
            f"the query is longer than {MAX_QUERY_CHARS} characters", code="query_too_long"
        )
    return query


def hit_out(hit: SearchHit) -> SearchHitOut:
    p = hit.payload
    return SearchHitOut(
        document_id=p.document_id,
        filename=p.filename,
        page=p.page_start,
        page_end=p.page_end,
        heading_path=list(p.heading_path),
        chunk_id=hit.id,
        chunk_index=p.chunk_index,
        text=p.text,
        score=hit.score,
        similarity=round(hit.similarity, 6),
    )


@dataclass
class PreparedSearch:
    """A search whose knowledge base is found and whose query embedding is under way."""

    kb: KnowledgeBase
    query: str
    top_k: int
    mode: SearchMode
    embedding: asyncio.Task[Vectors]


class SearchService:
    """A search in two steps, so the router can give the lookup's connection back to the pool
    before the model and the store work (none is held through them)."""

    def __init__(self, retrieval: Retrieval) -> None:
        self.retrieval = retrieval

    async def prepare(
        self,
        knowledge_bases: KnowledgeBaseRepository,
        identity: Identity,
        kb_id: uuid.UUID,
        body: SearchIn,
        *,
        mode: SearchMode = "hybrid",
        timings: Timings | None = None,
    ) -> PreparedSearch:
        """Find the knowledge base while the query is embedded. A missing (or another
        tenant's) knowledge base still answers 404 before any vector is touched, and before a
        bad query's 422, as when the two ran one after the other."""
        timings = timings or Timings()
        try:
            query: str | None = clean_query(body.query)
            invalid: Unprocessable | None = None
        except Unprocessable as exc:
            query, invalid = None, exc
        embedding = self.retrieval.start_embedding(query) if query is not None else None
        try:
            kb = await knowledge_bases.get(identity.tenant_id, kb_id)
            timings.lap("kb")
            if kb is None:  # another tenant's looks exactly like none
                raise NotFound("knowledge base not found", code="knowledge_base_not_found")
            if invalid is not None or query is None or embedding is None:
                raise invalid or Unprocessable("the query is empty", code="empty_query")
        except BaseException:
            if embedding is not None:
                embedding.cancel()
            raise
        top_k = body.top_k or KnowledgeBaseSettings.model_validate(kb.settings or {}).top_k
        return PreparedSearch(kb, query, top_k, mode, embedding)

    async def run(
        self, identity: Identity, prepared: PreparedSearch, *, timings: Timings | None = None
    ) -> SearchOut:
        kb = prepared.kb
        hits = await self.retrieval.search(
            identity.tenant_id,
            kb.id,
            prepared.query,
            prepared.top_k,
            mode=prepared.mode,
            timings=timings,
            embedding=prepared.embedding,
        )
        return SearchOut(
            hits=[hit_out(h) for h in hits],
            knowledge_base=SearchedKnowledgeBase(
                id=kb.id, name=kb.name, system_prompt=kb.system_prompt
            ),
        )
