"""Retrieval below the route: both VectorStore adapters answer the same for the same data,
and the query-embedding cache spares the model a repeated question."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from docuchat_ingest.embedding import EmbeddingResult, MiniLMEmbedder
from docuchat_ingest.embedding.sparse import SparseEncoder
from docuchat_ingest.pipeline.indexer import DocumentIndexer, DocumentToIndex
from docuchat_ingest.search.schemas import SearchMode
from docuchat_ingest.search.service import QueryEncoder, Retrieval
from docuchat_ingest.vectorstore import SearchHit, VectorStore
from docuchat_ingest.vectorstore.edge_store import QdrantEdgeStore
from docuchat_ingest.vectorstore.qdrant_client_store import QdrantClientStore
from tests.ingest.search.conftest import CORPUS

DMCA = CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf"
QUERIES = [
    "distance education study",
    "vessel hull design protection",
    "encryption research exemption",
    "what must a service provider do after a takedown notice?",
    "ephemeral recordings by broadcasters",
]


class CountingEmbedder:
    """The real model, counting how often it is asked."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.calls = 0

    async def embed(
        self, texts: Sequence[str], *, job_position: int | None = None
    ) -> EmbeddingResult:
        self.calls += 1
        return await self.inner.embed(texts)


@pytest.fixture(scope="module")
def model() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[dict[str, VectorStore]]:
    both: dict[str, VectorStore] = {
        "qdrant-client": QdrantClientStore.connect(location=":memory:"),
        "qdrant-edge": QdrantEdgeStore(tmp_path / "shard"),
    }
    for store in both.values():
        await store.ensure_collection()
    yield both
    for store in both.values():
        await store.close()


def tie_groups(hits: Sequence[SearchHit]) -> list[set[uuid.UUID]]:
    """Hit ids grouped by equal score, best first (the order within a tie is arbitrary)."""
    groups: dict[float, set[uuid.UUID]] = {}
    for hit in hits:
        groups.setdefault(round(hit.score, 3), set()).add(hit.id)
    return list(groups.values())


async def test_both_adapters_return_the_same_hits(
    stores: dict[str, VectorStore], model: MiniLMEmbedder
) -> None:
    tenant, kb = uuid.uuid4(), uuid.uuid4()
    document = DocumentToIndex(
        tenant_id=tenant,
        knowledge_base_id=kb,
        document_id=uuid.uuid4(),
        filename=DMCA.name,
        media_type="application/pdf",
        data=DMCA.read_bytes(),
    )
    sparse = SparseEncoder()
    services = {}
    for name, store in stores.items():
        indexed = await DocumentIndexer(model, store, sparse=sparse).index(
            document, chunk_tokens=200, overlap_tokens=40
        )
        assert await store.count(tenant, kb) == indexed.chunks > 20
        services[name] = Retrieval(store, QueryEncoder(model, sparse))
    modes: tuple[SearchMode, ...] = ("hybrid", "dense", "sparse")
    for query in QUERIES:
        for mode in modes:
            client, edge = [
                await s.search(tenant, kb, query, 10, mode=mode) for s in services.values()
            ]
            # same scores in the same order; ids may swap only within a tie, and the last
            # tie may be cut at a different member
            assert [h.score for h in client] == pytest.approx([h.score for h in edge], abs=1e-3), (
                query,
                mode,
            )
            assert tie_groups(client)[:-1] == tie_groups(edge)[:-1], (query, mode)
            for a, b in zip(client, edge, strict=True):
                if a.id == b.id:
                    assert a.similarity == pytest.approx(b.similarity, abs=1e-3)
        # another tenant, or another knowledge base of the same tenant, sees nothing
        for service in services.values():
            assert await service.search(uuid.uuid4(), kb, query, 10) == []
            assert await service.search(tenant, uuid.uuid4(), query, 10) == []


async def test_a_repeated_question_costs_no_model_call(model: MiniLMEmbedder) -> None:
    counting = CountingEmbedder(model)
    queries = QueryEncoder(counting, SparseEncoder(), cache_size=2)
    first = await queries.dense("what is fair use?")
    again = await queries.dense("what is fair use?")
    assert counting.calls == 1
    assert again is first and not again.flags.writeable
    await queries.dense("second question")
    await queries.dense("third question")  # evicts the least recently used: the first
    assert counting.calls == 3
    await queries.dense("what is fair use?")
    assert counting.calls == 4
