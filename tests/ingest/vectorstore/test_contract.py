"""The VectorStore contract, run on both adapters: qdrant-client (``:memory:`` local mode) and
qdrant-edge (an embedded shard in a temporary directory)."""

from __future__ import annotations

import re
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from docuchat_ingest.vectorstore.edge_store import QdrantEdgeStore
from docuchat_ingest.vectorstore.port import (
    RRF_K,
    ChunkPayload,
    ChunkPoint,
    SearchHit,
    SparseVector,
    VectorStore,
    point_id,
)
from docuchat_ingest.vectorstore.qdrant_client_store import QdrantClientStore

DIM = 384
ADAPTERS = ["qdrant-client", "qdrant-edge"]


def sparse_of(text: str) -> SparseVector:
    """A toy BM25-side vector: crc32 of each lowercase word -> index, and a BM25 term weight
    (saturated term frequency, normalised by length) -> value; the store applies the IDF."""
    words = re.findall(r"\w+", text.lower())
    k1, b, avg_len = 1.2, 0.75, 20.0
    norm = k1 * (1 - b + b * len(words) / avg_len)
    weights: dict[int, float] = {}
    for word, tf in Counter(words).items():
        index = zlib.crc32(word.encode()) % (1 << 24)
        weights[index] = weights.get(index, 0.0) + tf * (k1 + 1) / (tf + norm)
    ordered = sorted(weights.items())
    return SparseVector(indices=[i for i, _ in ordered], values=[v for _, v in ordered])


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    out: np.ndarray = v / np.linalg.norm(v)
    return out


def near(v: np.ndarray, rng: np.random.Generator, eps: float = 0.01) -> np.ndarray:
    w = v + eps * rng.standard_normal(DIM).astype(np.float32)
    out: np.ndarray = w / np.linalg.norm(w)
    return out


def chunk(
    tenant: uuid.UUID,
    kb: uuid.UUID,
    doc: uuid.UUID,
    index: int,
    vector: np.ndarray,
    text: str = "",
) -> ChunkPoint:
    text = text or f"chunk {index} of {doc}"
    payload = ChunkPayload(
        tenant_id=tenant,
        knowledge_base_id=kb,
        document_id=doc,
        chunk_index=index,
        text=text,
        filename="doc.pdf",
        page_start=index + 1,
        page_end=index + 1,
        heading_path=("Intro", f"Part {index}"),
    )
    return ChunkPoint.for_chunk(payload, vector, sparse_of(text))


WORDS = [f"w{i}" for i in range(300)]


def corpus(tenant: uuid.UUID, kb: uuid.UUID, docs: int, chunks: int, seed: int) -> list[ChunkPoint]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(docs):
        doc = uuid.uuid4()
        for i in range(chunks):
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(8, 40))))
            out.append(chunk(tenant, kb, doc, i, unit(rng), text))
    return out


def new_store(kind: str, tmp_path: Path) -> VectorStore:
    if kind == "qdrant-client":
        return QdrantClientStore.connect(location=":memory:", dimension=DIM)
    return QdrantEdgeStore(tmp_path / f"shard-{uuid.uuid4().hex[:6]}", dimension=DIM)


async def make_store(kind: str, tmp_path: Path) -> VectorStore:
    store = new_store(kind, tmp_path)
    await store.ensure_collection()
    return store


@pytest.fixture(params=ADAPTERS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s = await make_store(request.param, tmp_path)
    yield s
    await s.close()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def ids(hits: Sequence[SearchHit]) -> list[uuid.UUID]:
    return [h.id for h in hits]


def test_point_id_is_deterministic() -> None:
    doc = uuid.uuid4()
    assert point_id(doc, 3) == point_id(doc, 3) == uuid.uuid5(doc, "3")
    assert point_id(doc, 3) != point_id(doc, 4)
    assert point_id(doc, 3) != point_id(uuid.uuid4(), 3)


@pytest.mark.parametrize("kind", ADAPTERS)
async def test_a_store_is_ready_once_its_collection_is_there(kind: str, tmp_path: Path) -> None:
    store = new_store(kind, tmp_path)
    try:
        with pytest.raises(RuntimeError):  # what /readyz reports as down
            await store.check_ready()
        await store.ensure_collection()
        await store.check_ready()
    finally:
        await store.close()


async def test_ensure_collection_is_idempotent(store: VectorStore) -> None:
    await store.ensure_collection()
    assert await store.count(uuid.uuid4()) == 0


async def test_upsert_and_count(store: VectorStore, rng: np.random.Generator) -> None:
    tenant, kb1, kb2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    doc1, doc2, doc3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    points = [chunk(tenant, kb1, doc1, i, unit(rng)) for i in range(5)]
    points += [chunk(tenant, kb1, doc2, i, unit(rng)) for i in range(3)]
    points += [chunk(tenant, kb2, doc3, i, unit(rng)) for i in range(2)]
    await store.upsert(points)
    await store.upsert([])
    assert await store.count(tenant) == 10
    assert await store.count(tenant, kb_id=kb1) == 8
    assert await store.count(tenant, kb_id=kb2) == 2
    assert await store.count(tenant, document_id=doc2) == 3
    assert await store.count(tenant, kb_id=kb2, document_id=doc1) == 0
    assert await store.count(uuid.uuid4()) == 0


async def test_search_finds_the_nearest_with_its_payload(
    store: VectorStore, rng: np.random.Generator
) -> None:
    tenant, kb = uuid.uuid4(), uuid.uuid4()
    points = corpus(tenant, kb, docs=4, chunks=10, seed=7)
    await store.upsert(points)
    target = points[17]
    hits = await store.search_dense(tenant, kb, near(np.asarray(target.vector), rng), limit=5)
    assert len(hits) == 5
    assert hits[0].id == target.id
    assert hits[0].payload == target.payload
    assert hits[0].score > 0.9
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # a plain list works as well as a numpy array
    listed = await store.search_dense(tenant, kb, [float(x) for x in target.vector], limit=1)
    assert ids(listed) == [target.id]
    assert listed[0].score == pytest.approx(1.0, abs=1e-4)


async def test_tenant_never_sees_another_tenants_points(
    store: VectorStore, rng: np.random.Generator
) -> None:
    tenant_a, tenant_b, kb = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    v = unit(rng)
    a_point = chunk(tenant_a, kb, uuid.uuid4(), 0, v, "secret merger plan of tenant alpha")
    await store.upsert([a_point])
    # B with nothing stored sees nothing, even with the identical vector and the same kb id
    assert await store.search_dense(tenant_b, kb, v, limit=10) == []
    assert await store.search_hybrid(tenant_b, kb, v, sparse_of("secret merger"), 10) == []
    assert await store.count(tenant_b, kb_id=kb) == 0
    b_point = chunk(tenant_b, kb, uuid.uuid4(), 0, v, "tenant beta holiday list")
    await store.upsert([b_point])
    assert ids(await store.search_dense(tenant_b, kb, v, limit=10)) == [b_point.id]
    assert ids(await store.search_dense(tenant_a, kb, v, limit=10)) == [a_point.id]
    hybrid = await store.search_hybrid(tenant_b, kb, v, sparse_of("secret merger plan"), 10)
    assert ids(hybrid) == [b_point.id]


async def test_knowledge_base_filter_holds(store: VectorStore, rng: np.random.Generator) -> None:
    tenant, kb1, kb2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    v = unit(rng)
    p1 = chunk(tenant, kb1, uuid.uuid4(), 0, v, "shared words here")
    p2 = chunk(tenant, kb2, uuid.uuid4(), 0, near(v, rng), "shared words here")
    await store.upsert([p1, p2])
    assert ids(await store.search_dense(tenant, kb1, v, 10)) == [p1.id]
    assert ids(await store.search_dense(tenant, kb2, v, 10)) == [p2.id]
    assert ids(await store.search_hybrid(tenant, kb2, v, sparse_of("shared words"), 10)) == [p2.id]


async def test_delete_document_removes_exactly_that_document(
    store: VectorStore, rng: np.random.Generator
) -> None:
    tenant, other, kb = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    doc, keep = uuid.uuid4(), uuid.uuid4()
    await store.upsert([chunk(tenant, kb, doc, i, unit(rng)) for i in range(4)])
    await store.upsert([chunk(tenant, kb, keep, i, unit(rng)) for i in range(3)])
    # the same document id under another tenant must survive a delete scoped to `tenant`
    await store.upsert([chunk(other, kb, doc, i, unit(rng)) for i in range(2)])
    await store.delete_document(tenant, doc)
    assert await store.count(tenant, document_id=doc) == 0
    assert await store.count(tenant, document_id=keep) == 3
    assert await store.count(other, document_id=doc) == 2
    hits = await store.search_dense(tenant, kb, unit(rng), 50)
    assert {h.payload.document_id for h in hits} == {keep}


async def test_reupserting_the_same_chunks_does_not_duplicate(
    store: VectorStore, rng: np.random.Generator
) -> None:
    tenant, kb, doc = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    first = [chunk(tenant, kb, doc, i, unit(rng), f"first version {i}") for i in range(5)]
    await store.upsert(first)
    # a redelivered message re-embeds the same chunks: same deterministic ids
    second = [chunk(tenant, kb, doc, i, unit(rng), f"second version {i}") for i in range(5)]
    assert [p.id for p in second] == [p.id for p in first]
    await store.upsert(second)
    assert await store.count(tenant) == 5
    hits = await store.search_dense(tenant, kb, np.asarray(second[2].vector), 1)
    assert hits[0].id == second[2].id
    assert hits[0].payload.text == "second version 2"


async def test_delete_knowledge_base_and_tenant(
    store: VectorStore, rng: np.random.Generator
) -> None:
    tenant, other, kb1, kb2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.upsert([chunk(tenant, kb1, uuid.uuid4(), i, unit(rng)) for i in range(3)])
    await store.upsert([chunk(tenant, kb2, uuid.uuid4(), i, unit(rng)) for i in range(2)])
    await store.upsert([chunk(other, kb1, uuid.uuid4(), i, unit(rng)) for i in range(4)])
    await store.delete_knowledge_base(tenant, kb1)
    assert await store.count(tenant, kb_id=kb1) == 0
    assert await store.count(tenant, kb_id=kb2) == 2
    assert await store.count(other, kb_id=kb1) == 4
    await store.delete_tenant(tenant)
    assert await store.count(tenant) == 0
    assert await store.search_dense(tenant, kb2, unit(rng), 10) == []
    assert await store.count(other) == 4


async def test_hybrid_finds_sparse_only_and_dense_only_matches(
    store: VectorStore, rng: np.random.Generator
) -> None:
    tenant, kb = uuid.uuid4(), uuid.uuid4()
    points = corpus(tenant, kb, docs=3, chunks=20, seed=11)
    query = unit(rng)
    doc = uuid.uuid4()
    # dense twin of the query, with no words in common with it
    dense_match = chunk(tenant, kb, doc, 0, near(query, rng, 0.01), "w1 w2 w3")
    # opposite dense direction, but the only chunk that has the query's rare words
    sparse_match = chunk(tenant, kb, doc, 1, -query, "quokka zeppelin xylophone")
    await store.upsert([*points, dense_match, sparse_match])

    dense_only = await store.search_dense(tenant, kb, query, 10)
    assert dense_only[0].id == dense_match.id
    assert sparse_match.id not in ids(dense_only)

    hits = await store.search_hybrid(tenant, kb, query, sparse_of("quokka xylophone"), 5)
    assert set(ids(hits)[:2]) == {dense_match.id, sparse_match.id}
    # both are first in exactly one source: equal RRF scores 1 / (k + 0)
    assert hits[0].score == pytest.approx(hits[1].score)
    assert hits[0].score > hits[2].score
    # an empty sparse side degrades to dense ranking
    fallback = await store.search_hybrid(tenant, kb, query, SparseVector([], []), 3)
    assert fallback[0].id == dense_match.id


async def test_sparse_search_and_every_hit_carries_its_similarity(
    store: VectorStore, rng: np.random.Generator
) -> None:
    tenant, kb = uuid.uuid4(), uuid.uuid4()
    doc = uuid.uuid4()
    query = unit(rng)
    texts = ["quokka quokka zeppelin", "quokka harbour", "zeppelin only", "nothing shared"]
    points = [chunk(tenant, kb, doc, i, unit(rng), t) for i, t in enumerate(texts)]
    # another tenant's and another knowledge base's chunks have the words too
    points += [chunk(uuid.uuid4(), kb, uuid.uuid4(), 0, unit(rng), "quokka quokka quokka")]
    points += [chunk(tenant, uuid.uuid4(), uuid.uuid4(), 0, unit(rng), "quokka quokka")]
    await store.upsert(points)
    stored = {p.id: np.asarray(p.vector) for p in points}

    hits = await store.search_sparse(tenant, kb, query, sparse_of("quokka zeppelin"), 10)
    # both words first; then a tie (each has one word of equal IDF), never the other scopes
    assert ids(hits)[0] == points[0].id
    assert set(ids(hits)) == {points[0].id, points[1].id, points[2].id}
    assert hits[0].score > hits[1].score > 0
    assert await store.search_sparse(tenant, kb, query, SparseVector([], []), 10) == []

    both = [
        *hits,
        *await store.search_dense(tenant, kb, query, 4),
        *await store.search_hybrid(tenant, kb, query, sparse_of("quokka"), 4),
    ]
    for hit in both:
        # cosine of two unit vectors: their dot product, whichever side found the hit
        assert hit.similarity == pytest.approx(float(stored[hit.id] @ query), abs=1e-4)


async def test_sparse_idf_is_computed_within_the_tenant(
    store: VectorStore, rng: np.random.Generator
) -> None:
    """Another tenant's documents must not move this tenant's hybrid ranking or scores."""
    tenant_a, tenant_b, kb = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    doc = uuid.uuid4()
    # within A, "apple" is rarer than "banana": apple's chunk is A's best sparse match
    texts = ["apple pie", "banana split", "banana bread loaf"]
    await store.upsert([chunk(tenant_a, kb, doc, i, unit(rng), t) for i, t in enumerate(texts)])
    query, words = unit(rng), sparse_of("apple banana")
    before = await store.search_hybrid(tenant_a, kb, query, words, 3)
    # B floods the collection with "apple": a collection-wide IDF would demote A's apple chunk
    await store.upsert(
        [chunk(tenant_b, kb, uuid.uuid4(), i, unit(rng), "apple") for i in range(50)]
    )
    after = await store.search_hybrid(tenant_a, kb, query, words, 3)
    # (equal fused scores may come back in either order: compare id -> score)
    assert {h.id: round(h.score, 6) for h in after} == {h.id: round(h.score, 6) for h in before}


def _assert_same_ranking(a: list[SearchHit], b: list[SearchHit]) -> None:
    """Same ids in the same order, except that ids with (nearly) equal scores may swap, and
    the tie group cut by the limit may differ."""
    assert len(a) == len(b)
    assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-3, abs=1e-5)

    def groups(hits: list[SearchHit]) -> list[set[uuid.UUID]]:
        out: list[set[uuid.UUID]] = []
        last: float | None = None
        for h in hits:
            if last is None or abs(h.score - last) > 1e-5:
                out.append(set())
            out[-1].add(h.id)
            last = h.score
        return out

    ga, gb = groups(a), groups(b)
    assert ga[:-1] == gb[:-1]


def _assert_same_fusion(a: list[SearchHit], b: list[SearchHit]) -> None:
    """Hybrid results agree up to ties *inside* a source: two chunks with the same sparse score
    may come back in either order, which moves each one's RRF share by one rank, i.e. by at
    most 1/(k(k+1)) per source. Ids found by one engine only must sit at the cut-off."""
    slack = 2.0 / (RRF_K * (RRF_K + 1)) + 1e-6
    sa, sb = {h.id: h.score for h in a}, {h.id: h.score for h in b}
    for hit_id in sa.keys() & sb.keys():
        assert abs(sa[hit_id] - sb[hit_id]) <= slack
    for only, other in ((sa.keys() - sb.keys(), b), (sb.keys() - sa.keys(), a)):
        for hit_id in only:
            assert abs((sa | sb)[hit_id] - other[-1].score) <= slack
    assert len(sa.keys() ^ sb.keys()) <= 2


async def test_both_adapters_rank_alike(tmp_path: Path) -> None:
    stores = [await make_store(kind, tmp_path) for kind in ADAPTERS]
    try:
        rng = np.random.default_rng(99)
        tenants = [uuid.uuid4() for _ in range(3)]
        kb = uuid.uuid4()
        data = [p for i, t in enumerate(tenants) for p in corpus(t, kb, 5, 20, seed=i)]
        for s in stores:
            await s.upsert(data)
        for _ in range(10):
            tenant = tenants[int(rng.integers(len(tenants)))]
            query = unit(rng)
            words = sparse_of(" ".join(rng.choice(WORDS, size=3)))
            dense = [await s.search_dense(tenant, kb, query, 10) for s in stores]
            _assert_same_ranking(dense[0], dense[1])
            hybrid = [await s.search_hybrid(tenant, kb, query, words, 10) for s in stores]
            _assert_same_fusion(hybrid[0], hybrid[1])
    finally:
        for s in stores:
            await s.close()


async def test_edge_shard_persists_and_has_one_owner(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    path = tmp_path / "shard"
    tenant, kb = uuid.uuid4(), uuid.uuid4()
    first = QdrantEdgeStore(path, dimension=DIM)
    await first.ensure_collection()
    await first.upsert([chunk(tenant, kb, uuid.uuid4(), i, unit(rng)) for i in range(3)])
    second = QdrantEdgeStore(path, dimension=DIM)
    with pytest.raises(Exception, match="WAL"):
        await second.ensure_collection()
    await first.close()
    reopened = QdrantEdgeStore(path, dimension=DIM)
    await reopened.ensure_collection()
    try:
        assert await reopened.count(tenant) == 3
    finally:
        await reopened.close()
        await second.close()
