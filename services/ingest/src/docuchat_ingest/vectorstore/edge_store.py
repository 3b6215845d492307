"""VectorStore over qdrant-edge: Qdrant's engine in-process, one shard in a directory.

The embedded default. Semantics are those of :mod:`.port`, identical to the qdrant-client
adapter (same named vectors, payload indexes, filters, prefetch depth and RRF constant).

**One process owns the shard.** Opening a shard takes an exclusive lock on its write-ahead
log; a second open - from another process, or a second ``EdgeShard`` in this one - fails
with ``failed to open WAL ...: WouldBlock``. So exactly one role may hold the store: in
``--target all`` that is the single process; when ingest API and ingest-worker run as
separate processes they cannot both open it (use the Qdrant server adapter there, or route
every vector call through the one process that owns the shard).

qdrant-edge is synchronous. Every call runs on one dedicated worker thread owned by the
store, so the event loop never blocks, calls are applied in submission order (an upsert is
visible to the search submitted after it) and the shard is never touched concurrently.
``query`` releases the GIL while it runs (measured), so the event loop keeps serving.

Indexing (measured with qdrant-edge 0.9 on 2 cores): the shard has no background optimizer.
Points stay in one appendable segment with no HNSW graph until ``EdgeShard.optimize()`` is
called, and searches are exact scans of the points that pass the filter (found through the
``tenant_id`` index). For tenant-filtered searches that is fast (about 0.6 ms at 10k points and
1.5 ms at 100k points over 100 tenants; 7.5 ms for a single tenant with 25k points; 29 ms for an
unfiltered scan of 50k points). ``optimize()`` builds HNSW, but it is slow (122 s at 100k
points) and it **holds the GIL for its whole run**, which freezes every Python thread and the
event loop. This store therefore never calls it. If it is ever needed, run it from a
maintenance command while the service is stopped.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import qdrant_edge as qe

from docuchat_ingest.vectorstore.port import (
    DEFAULT_DIMENSION,
    DENSE_VECTOR,
    DOCUMENT_FIELD,
    KB_FIELD,
    RRF_K,
    SPARSE_VECTOR,
    TENANT_FIELD,
    ChunkPayload,
    ChunkPoint,
    DenseVector,
    SearchHit,
    SparseVector,
    cosine,
    dense_list,
    hybrid_prefetch_limit,
)

T = TypeVar("T")


def scope_filter(
    tenant_id: uuid.UUID,
    kb_id: uuid.UUID | None = None,
    document_id: uuid.UUID | None = None,
) -> qe.Filter:
    """The tenant filter (always), narrowed to a knowledge base / document when given."""
    must: list[qe.ConditionType] = [
        qe.FieldCondition(TENANT_FIELD, match=qe.MatchValue(str(tenant_id)))
    ]
    if kb_id is not None:
        must.append(qe.FieldCondition(KB_FIELD, match=qe.MatchValue(str(kb_id))))
    if document_id is not None:
        must.append(qe.FieldCondition(DOCUMENT_FIELD, match=qe.MatchValue(str(document_id))))
    return qe.Filter(must=must)


class QdrantEdgeStore:
    def __init__(self, path: str | Path, dimension: int = DEFAULT_DIMENSION) -> None:
        self.path = Path(path)
        self.dimension = dimension
        self._shard: qe.EdgeShard | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge")

    def _config(self) -> qe.EdgeConfig:
        return qe.EdgeConfig(
            vectors={
                DENSE_VECTOR: qe.EdgeVectorParams(size=self.dimension, distance=qe.Distance.Cosine)
            },
            sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RuntimeError("QdrantEdgeStore: call ensure_collection() first")
        return self._shard

    def _open(self) -> None:
        if self._shard is not None:
            return
        has_data = self.path.is_dir() and any(self.path.iterdir())
        if has_data:
            shard = qe.EdgeShard.load(str(self.path), self._config())
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(self.path), self._config())
        existing = shard.info().payload_schema
        indexes: list[tuple[str, qe.PayloadSchemaType | qe.KeywordIndexParams]] = [
            (TENANT_FIELD, qe.KeywordIndexParams(is_tenant=True)),
            (KB_FIELD, qe.PayloadSchemaType.Keyword),
            (DOCUMENT_FIELD, qe.PayloadSchemaType.Keyword),
        ]
        for field_name, schema in indexes:
            if field_name not in existing:
                shard.update(qe.UpdateOperation.create_field_index(field_name, schema))
        self._shard = shard

    async def ensure_collection(self) -> None:
        await self._run(self._open)

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        edge_points = []
        for point in points:
            vector: dict[str, qe.NamedVector] = {DENSE_VECTOR: dense_list(point.vector)}
            if point.sparse is not None and len(point.sparse.indices) > 0:
                vector[SPARSE_VECTOR] = qe.SparseVector(
                    list(point.sparse.indices), [float(v) for v in point.sparse.values]
                )
            edge_points.append(qe.Point(point.id, vector, point.payload.to_dict()))
        await self._run(self.shard.update, qe.UpdateOperation.upsert_points(edge_points))

    async def _delete(self, flt: qe.Filter) -> None:
        await self._run(self.shard.update, qe.UpdateOperation.delete_points_by_filter(flt))

    async def delete_document(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        await self._delete(scope_filter(tenant_id, document_id=document_id))

    async def delete_knowledge_base(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> None:
        await self._delete(scope_filter(tenant_id, kb_id=kb_id))

    async def delete_tenant(self, tenant_id: uuid.UUID) -> None:
        await self._delete(scope_filter(tenant_id))

    async def search_dense(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, vector: DenseVector, limit: int
    ) -> list[SearchHit]:
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(dense_list(vector), using=DENSE_VECTOR),
            filter=scope_filter(tenant_id, kb_id),
            with_payload=True,
        )
        return [_hit(p, p.score) for p in await self._run(self.shard.query, request)]

    async def search_sparse(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        dense: DenseVector,
        sparse: SparseVector,
        limit: int,
    ) -> list[SearchHit]:
        if len(sparse.indices) == 0:
            return []
        flt = scope_filter(tenant_id, kb_id)
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(_sparse(sparse), using=SPARSE_VECTOR),
            filter=flt,
            params=_idf_over(flt),
            with_payload=True,
            with_vector=[DENSE_VECTOR],
        )
        return _hits_for(dense, await self._run(self.shard.query, request))

    async def search_hybrid(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        dense: DenseVector,
        sparse: SparseVector,
        limit: int,
    ) -> list[SearchHit]:
        flt = scope_filter(tenant_id, kb_id)
        depth = hybrid_prefetch_limit(limit)
        prefetches = [
            qe.Prefetch(
                limit=depth,
                query=qe.Query.Nearest(dense_list(dense), using=DENSE_VECTOR),
                filter=flt,
            )
        ]
        if len(sparse.indices) > 0:
            prefetches.append(
                qe.Prefetch(
                    limit=depth,
                    query=qe.Query.Nearest(_sparse(sparse), using=SPARSE_VECTOR),
                    filter=flt,
                    params=_idf_over(flt),
                )
            )
        request = qe.QueryRequest(
            limit=limit,
            prefetches=prefetches,
            # the stub types Fusion.Rrf as a nested class, not a Fusion: cast it
            query=cast("qe.ScoringQueryType", qe.Fusion.Rrf(k=RRF_K)),
            filter=flt,
            with_payload=True,
            with_vector=[DENSE_VECTOR],
        )
        return _hits_for(dense, await self._run(self.shard.query, request))

    async def count(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None = None,
        document_id: uuid.UUID | None = None,
    ) -> int:
        request = qe.CountRequest(exact=True, filter=scope_filter(tenant_id, kb_id, document_id))
        return await self._run(self.shard.count, request)

    async def flush(self) -> None:
        await self._run(self.shard.flush)

    async def check_ready(self) -> None:
        # In process: open is ready. Not through the executor, where a large upsert would
        # make the check time out and the process look unready while it works.
        if self._shard is None:
            raise RuntimeError("the vector shard is not open")

    async def close(self) -> None:
        shard, self._shard = self._shard, None
        if shard is not None:
            await self._run(_flush_and_close, shard)
        self._executor.shutdown(wait=True)


def _flush_and_close(shard: qe.EdgeShard) -> None:
    shard.flush()
    shard.close()


def _sparse(sparse: SparseVector) -> qe.SparseVector:
    return qe.SparseVector(list(sparse.indices), [float(v) for v in sparse.values])


def _idf_over(flt: qe.Filter) -> qe.SearchParams:
    """IDF counted over the searched scope only (see the port)."""
    return qe.SearchParams(idf=qe.IdfParams(corpus=flt))


def _hit(point: qe.ScoredPoint, similarity: float) -> SearchHit:
    return SearchHit(
        id=uuid.UUID(str(point.id)),
        score=float(point.score),
        payload=ChunkPayload.from_dict(point.payload or {}),
        similarity=float(similarity),
    )


def _hits_for(query: DenseVector, points: Sequence[qe.ScoredPoint]) -> list[SearchHit]:
    """Hits with their similarity to the query, from the dense vectors the query returned."""
    hits = []
    for point in points:
        vectors = point.vector if isinstance(point.vector, dict) else {}
        stored = vectors.get(DENSE_VECTOR)
        hits.append(_hit(point, cosine(query, stored if isinstance(stored, list) else None)))
    return hits
