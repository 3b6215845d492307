"""parse → chunk → embed → upsert on a real corpus document, the real model and qdrant-edge."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from docuchat_ingest.embedding import EmbeddingResult
from docuchat_ingest.embedding.minilm import MiniLMEmbedder
from docuchat_ingest.parsing import ParseError
from docuchat_ingest.pipeline.indexer import (
    PARSED_PROGRESS,
    PROGRESS_STEP,
    DocumentIndexer,
    DocumentToIndex,
    progress_reports,
)
from docuchat_ingest.vectorstore.edge_store import QdrantEdgeStore

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
DMCA = CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf"


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[QdrantEdgeStore]:
    store = QdrantEdgeStore(tmp_path / "shard")
    await store.ensure_collection()
    yield store
    await store.close()


def dmca(tenant: uuid.UUID, kb: uuid.UUID, document: uuid.UUID) -> DocumentToIndex:
    return DocumentToIndex(tenant, kb, document, DMCA.name, "application/pdf", DMCA.read_bytes())


@pytest.mark.parametrize(
    ("chunks", "step"), [(9, 8), (12, 8), (54, 8), (85, 9), (200, 20), (640, 64), (3000, 64)]
)
def test_progress_is_reported_at_least_every_tenth_where_slices_allow(
    chunks: int, step: int
) -> None:
    reports = progress_reports(chunks, step)
    slices = -(-chunks // step)
    share = (1 - PARSED_PROGRESS) * step / chunks  # one slice's part of the progress
    points = [PARSED_PROGRESS, *reports.values(), 1.0]
    assert points == sorted(points)
    assert all(b - a <= max(PROGRESS_STEP, share) + 1e-9 for a, b in itertools.pairwise(points))
    assert slices - 1 not in reports  # the last slice is followed by the outcome
    # No more reports than that takes: dropping any one would leave too long a step.
    for dropped in reports.values():
        rest = [p for p in points if p != dropped]
        assert any(b - a > max(PROGRESS_STEP, share) + 1e-9 for a, b in itertools.pairwise(rest))


def test_a_document_of_one_slice_reports_nothing_between_start_and_outcome() -> None:
    assert progress_reports(1, 8) == {}
    assert progress_reports(8, 8) == {}


async def test_a_pdf_becomes_searchable_with_its_pages(
    embedder: MiniLMEmbedder, store: QdrantEdgeStore
) -> None:
    tenant, kb, document = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    progress: list[float] = []

    async def report(value: float) -> None:
        progress.append(value)

    indexed = await DocumentIndexer(embedder, store).index(
        dmca(tenant, kb, document), chunk_tokens=200, overlap_tokens=40, on_progress=report
    )
    assert indexed.pages == 18
    assert indexed.chunks > 18
    assert indexed.embedding_tokens > indexed.chunks * 50
    assert await store.count(tenant, kb) == indexed.chunks
    # Parsed, then slices as they are written; 1.0 is the outcome's to say (document.indexed).
    assert progress[0] == pytest.approx(0.1)
    assert progress == sorted(progress)
    assert 0.8 < progress[-1] < 1.0

    for question, page in (
        ("Which study about distance education did Congress ask the Copyright Office for?", 15),
        ("Must foreign works be registered with the Copyright Office before a lawsuit?", 3),
    ):
        query = (await embedder.embed([question])).vectors[0]
        [best, *_] = await store.search_dense(tenant, kb, query, 3)
        assert best.payload.page_start is not None
        assert best.payload.page_start <= page <= (best.payload.page_end or page), (
            question,
            best.payload,
        )
        assert best.payload.filename == DMCA.name

    # Indexing again (a redelivery, a reindex) leaves one copy of every chunk.
    again = await DocumentIndexer(embedder, store).index(
        dmca(tenant, kb, document), chunk_tokens=200, overlap_tokens=40
    )
    assert await store.count(tenant, kb) == again.chunks == indexed.chunks


class _FailsOnSecondBatch:
    """The real model, until the worker 'dies' in the middle of the document."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.calls = 0

    async def embed(
        self, texts: Sequence[str], *, job_position: int | None = None
    ) -> EmbeddingResult:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("worker lost mid-document")
        return await self.inner.embed(texts)


async def test_a_failure_mid_document_leaves_no_partial_points(
    embedder: MiniLMEmbedder, store: QdrantEdgeStore
) -> None:
    tenant, kb, document = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    indexer = DocumentIndexer(_FailsOnSecondBatch(embedder), store, batch_size=8)
    with pytest.raises(RuntimeError, match="mid-document"):
        await indexer.index(dmca(tenant, kb, document), chunk_tokens=200, overlap_tokens=40)
    assert await store.count(tenant, kb) == 0


async def test_an_unreadable_file_fails_with_its_code_before_anything_is_written(
    embedder: MiniLMEmbedder, store: QdrantEdgeStore
) -> None:
    tenant, kb = uuid.uuid4(), uuid.uuid4()
    encrypted = CORPUS / "docs" / "pdf" / "encrypted" / "pdfminer-aes-256.pdf"
    document = DocumentToIndex(
        tenant, kb, uuid.uuid4(), encrypted.name, "application/pdf", encrypted.read_bytes()
    )
    with pytest.raises(ParseError) as failed:
        await DocumentIndexer(embedder, store).index(document, chunk_tokens=200, overlap_tokens=40)
    assert failed.value.code == "encrypted_document"
    assert await store.count(tenant) == 0
