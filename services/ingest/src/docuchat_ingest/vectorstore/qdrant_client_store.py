"""VectorStore over a Qdrant server (or qdrant-client's local mode) via AsyncQdrantClient.

``QdrantClientStore.connect(url=...)`` for a server; ``location=":memory:"`` for tests. Local
mode is a pure-Python brute-force scan (0.2-2 s per filtered search at 10k-100k points), so
it is for tests only, never the embedded default: that is :mod:`.edge_store`.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from docuchat_ingest.vectorstore.port import (
    DEFAULT_COLLECTION,
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


def scope_filter(
    tenant_id: uuid.UUID,
    kb_id: uuid.UUID | None = None,
    document_id: uuid.UUID | None = None,
) -> models.Filter:
    """The tenant filter (always), narrowed to a knowledge base / document when given."""
    must: list[models.Condition] = [
        models.FieldCondition(key=TENANT_FIELD, match=models.MatchValue(value=str(tenant_id)))
    ]
    if kb_id is not None:
        must.append(models.FieldCondition(key=KB_FIELD, match=models.MatchValue(value=str(kb_id))))
    if document_id is not None:
        must.append(
            models.FieldCondition(
                key=DOCUMENT_FIELD, match=models.MatchValue(value=str(document_id))
            )
        )
    return models.Filter(must=must)


class QdrantClientStore:
    def __init__(
        self,
        client: AsyncQdrantClient,
        collection: str = DEFAULT_COLLECTION,
        dimension: int = DEFAULT_DIMENSION,
    ) -> None:
        self._client = client
        self.collection = collection
        self.dimension = dimension

    @classmethod
    def connect(
        cls,
        url: str | None = None,
        *,
        location: str | None = None,
        api_key: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        dimension: int = DEFAULT_DIMENSION,
    ) -> QdrantClientStore:
        client = AsyncQdrantClient(url=url, location=location, api_key=api_key)
        return cls(client, collection=collection, dimension=dimension)

    async def ensure_collection(self) -> None:
        if not await self._client.collection_exists(self.collection):
            await self._client.create_collection(
                self.collection,
                vectors_config={
                    DENSE_VECTOR: models.VectorParams(
                        size=self.dimension, distance=models.Distance.COSINE
                    )
                },
                sparse_vectors_config={
                    SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
            )
        indexes: list[tuple[str, models.PayloadSchemaType | models.KeywordIndexParams]] = [
            (
                TENANT_FIELD,
                models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            ),
            (KB_FIELD, models.PayloadSchemaType.KEYWORD),
            (DOCUMENT_FIELD, models.PayloadSchemaType.KEYWORD),
        ]
        for field_name, schema in indexes:
            # idempotent on a server; local mode ignores payload indexes and warns
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
                await self._client.create_payload_index(
                    self.collection, field_name=field_name, field_schema=schema, wait=True
                )

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        structs = []
        for point in points:
            vector: dict[str, Any] = {DENSE_VECTOR: dense_list(point.vector)}
            if point.sparse is not None and len(point.sparse.indices) > 0:
                vector[SPARSE_VECTOR] = models.SparseVector(
                    indices=list(point.sparse.indices), values=list(point.sparse.values)
                )
            structs.append(
                models.PointStruct(id=str(point.id), vector=vector, payload=point.payload.to_dict())
            )
        await self._client.upsert(self.collection, points=structs, wait=True)

    async def _delete(self, flt: models.Filter) -> None:
        await self._client.delete(
            self.collection, points_selector=models.FilterSelector(filter=flt), wait=True
        )

    async def delete_document(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None:
        await self._delete(scope_filter(tenant_id, document_id=document_id))

    async def delete_knowledge_base(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> None:
        await self._delete(scope_filter(tenant_id, kb_id=kb_id))

    async def delete_tenant(self, tenant_id: uuid.UUID) -> None:
        await self._delete(scope_filter(tenant_id))

    async def search_dense(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, vector: DenseVector, limit: int
    ) -> list[SearchHit]:
        response = await self._client.query_points(
            self.collection,
            query=dense_list(vector),
            using=DENSE_VECTOR,
            query_filter=scope_filter(tenant_id, kb_id),
            limit=limit,
            with_payload=True,
        )
        return [_hit(p, p.score) for p in response.points]

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
        response = await self._client.query_points(
            self.collection,
            query=_sparse(sparse),
            using=SPARSE_VECTOR,
            query_filter=flt,
            search_params=_idf_over(flt),
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE_VECTOR],
        )
        return _hits_for(dense, response.points)

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
        prefetch = [
            models.Prefetch(query=dense_list(dense), using=DENSE_VECTOR, filter=flt, limit=depth)
        ]
        if len(sparse.indices) > 0:
            prefetch.append(
                models.Prefetch(
                    query=_sparse(sparse),
                    using=SPARSE_VECTOR,
                    filter=flt,
                    limit=depth,
                    params=_idf_over(flt),
                )
            )
        response = await self._client.query_points(
            self.collection,
            prefetch=prefetch,
            query=models.RrfQuery(rrf=models.Rrf(k=RRF_K)),
            query_filter=flt,
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE_VECTOR],
        )
        return _hits_for(dense, response.points)

    async def count(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None = None,
        document_id: uuid.UUID | None = None,
    ) -> int:
        result = await self._client.count(
            self.collection, count_filter=scope_filter(tenant_id, kb_id, document_id), exact=True
        )
        return result.count

    async def check_ready(self) -> None:
        if not await self._client.collection_exists(self.collection):
            raise RuntimeError(f"the Qdrant collection {self.collection!r} is missing")

    async def close(self) -> None:
        await self._client.close()


def _sparse(sparse: SparseVector) -> models.SparseVector:
    return models.SparseVector(
        indices=list(sparse.indices), values=[float(v) for v in sparse.values]
    )


def _idf_over(flt: models.Filter) -> models.SearchParams:
    """IDF counted over the searched scope only (see the port)."""
    return models.SearchParams(idf=models.IdfCorpusParams(corpus=flt))


def _hit(point: models.ScoredPoint, similarity: float) -> SearchHit:
    return SearchHit(
        id=uuid.UUID(str(point.id)),
        score=float(point.score),
        payload=ChunkPayload.from_dict(point.payload or {}),
        similarity=float(similarity),
    )


def _hits_for(query: DenseVector, points: Sequence[models.ScoredPoint]) -> list[SearchHit]:
    """Hits with their similarity to the query, from the dense vectors the query returned."""
    hits = []
    for point in points:
        vectors = point.vector if isinstance(point.vector, dict) else {}
        stored = vectors.get(DENSE_VECTOR)
        hits.append(_hit(point, cosine(query, stored if isinstance(stored, list) else None)))
    return hits
