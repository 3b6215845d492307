"""Indexing one document: parse it, chunk it for the embedding model, embed the chunks in
batches and write them to the vector store.

The worker (a consumer of document.uploaded) calls this; it holds no state between documents.
Progress is reported after parsing and as slices are embedded and written (the step that
costs most), at least every 10% where the slices allow (see ``progress_reports``). If anything
fails after points were written, the document's points are removed before the error goes up:
a failed document never leaves half of itself searchable.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from docuchat_ingest.chunking import Chunk, Chunker, ChunkInput
from docuchat_ingest.embedding import Embedder, EmbeddingResult
from docuchat_ingest.embedding.sparse import SparseEncoder
from docuchat_ingest.parsing import ParsedDocument, parse_document
from docuchat_ingest.pipeline.sandbox import ParserSandbox
from docuchat_ingest.vectorstore import ChunkPayload, ChunkPoint, VectorStore

ProgressCallback = Callable[[float], Awaitable[None]]

# Repeated page furniture says nothing about the content and would crowd out real passages.
SKIPPED_KINDS = frozenset({"header", "footer"})
# Parsing is the first 10% of the reported progress; embedding and writing are the rest.
PARSED_PROGRESS = 0.1
# document.progressed at least every 10% (where a slice is no more than that).
PROGRESS_STEP = 0.1
MIN_BATCH = 8


@dataclass(frozen=True)
class DocumentToIndex:
    tenant_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    document_id: uuid.UUID
    filename: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class IndexedDocument:
    pages: int
    chunks: int
    embedding_tokens: int
    embedding_model: str


def progress_reports(chunks: int, step: int) -> dict[int, float]:
    """Which slices report progress when written (slice number → progress): as few as keep
    every step of the reported progress within ``PROGRESS_STEP`` (or one slice, when a slice
    is more than that), starting from ``PARSED_PROGRESS``. The last slice reports nothing (the
    outcome, document.indexed, follows it at once), so a document of one slice reports
    nothing: its parse is not reported either. Each report costs a transaction, an outbox row
    and a message to every consumer of the topic."""
    slices = math.ceil(chunks / step)
    if slices <= 1:
        return {}
    after = [
        PARSED_PROGRESS + (1 - PARSED_PROGRESS) * min(chunks, (n + 1) * step) / chunks
        for n in range(slices)
    ]
    reports: dict[int, float] = {}
    reported = PARSED_PROGRESS
    for number in range(slices - 1):
        # Report this slice if waiting for the next one would leave too long a step.
        if after[number + 1] - reported > PROGRESS_STEP + 1e-9:
            reports[number] = after[number]
            reported = after[number]
    return reports


def chunk_inputs(parsed: ParsedDocument) -> list[ChunkInput]:
    return [
        ChunkInput(
            text=block.text,
            page=page.number,
            heading_path=tuple(block.heading_path),
            kind=block.kind,
        )
        for page in parsed.pages
        for block in page.blocks
        if block.kind not in SKIPPED_KINDS and block.text.strip()
    ]


class DocumentIndexer:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        *,
        batch_size: int = 64,
        max_pages: int = 500,
        sandbox: ParserSandbox | None = None,
        sparse: SparseEncoder | None = None,
    ) -> None:
        self.embedder = embedder
        self.sparse = sparse or SparseEncoder()
        self.store = store
        self.batch_size = batch_size
        self.max_pages = max_pages
        # Without a sandbox (tests, tools) parsing runs in a thread of this process.
        self.sandbox = sandbox

    async def index(
        self,
        document: DocumentToIndex,
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        on_progress: ProgressCallback | None = None,
    ) -> IndexedDocument:
        if self.sandbox is not None:
            parsed = await self.sandbox.parse(
                document.data,
                filename=document.filename,
                media_type=document.media_type,
                max_pages=self.max_pages,
            )
        else:
            parsed = await asyncio.to_thread(
                parse_document,
                document.data,
                filename=document.filename,
                media_type=document.media_type,
                max_pages=self.max_pages,
            )
        chunker = Chunker(
            max_tokens=chunk_tokens, overlap_tokens=min(overlap_tokens, chunk_tokens // 2)
        )
        chunks = await asyncio.to_thread(chunker.chunk, chunk_inputs(parsed))
        # About ten slices per document (progress every 10%), never tiny ones. They are all
        # asked for at once: a coalescing embedder runs them (and other documents' slices) in
        # full model batches, and each slice is written as soon as it is embedded.
        step = max(MIN_BATCH, min(self.batch_size, math.ceil(len(chunks) / 10)))
        slices = [chunks[start : start + step] for start in range(0, len(chunks), step)]
        reports = progress_reports(len(chunks), step)
        if on_progress and reports:
            await on_progress(PARSED_PROGRESS)
        tokens = 0
        written = False
        pending: list[asyncio.Future[EmbeddingResult]] = []
        try:
            # A redelivered message rewrites the same point ids; a reindex with fewer chunks
            # must not leave the old tail behind.
            await self.store.delete_document(document.tenant_id, document.document_id)
            pending += [
                asyncio.ensure_future(
                    self.embedder.embed(
                        [c.embedding_text for c in batch], job_position=number * step + len(batch)
                    )
                )
                for number, batch in enumerate(slices)
            ]
            for number, (batch, embedding) in enumerate(zip(slices, pending, strict=True)):
                result = await embedding
                tokens += result.tokens
                await self.store.upsert(self._points(document, batch, result.vectors))
                written = True
                if on_progress and number in reports:
                    await on_progress(reports[number])
        except BaseException:
            for embedding in pending:
                embedding.cancel()
            if written:
                await self.store.delete_document(document.tenant_id, document.document_id)
            raise
        return IndexedDocument(
            pages=parsed.page_count,
            chunks=len(chunks),
            embedding_tokens=tokens,
            embedding_model=self.embedder.model_name,
        )

    def _points(
        self, document: DocumentToIndex, chunks: Sequence[Chunk], vectors: npt.NDArray[np.float32]
    ) -> list[ChunkPoint]:
        return [
            ChunkPoint.for_chunk(
                ChunkPayload(
                    tenant_id=document.tenant_id,
                    knowledge_base_id=document.knowledge_base_id,
                    document_id=document.document_id,
                    chunk_index=chunk.index,
                    text=chunk.text,
                    filename=document.filename,
                    page_start=chunk.pages[0] if chunk.pages else None,
                    page_end=chunk.pages[-1] if chunk.pages else None,
                    heading_path=chunk.heading_path,
                ),
                vector,
                # BM25 side: heading path + text, like the dense side
                self.sparse.encode_document(chunk.embedding_text),
            )
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]
