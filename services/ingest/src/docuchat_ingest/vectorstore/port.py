"""The VectorStore port: chunk points in, tenant-scoped dense / hybrid hits out.

One collection holds every tenant's chunks. Every read and every delete is filtered by
``tenant_id`` (and by ``knowledge_base_id`` where the call names one): no method of the port
can reach another tenant's points. Both adapters (qdrant-client for a Qdrant server,
qdrant-edge for the embedded default) implement exactly the same semantics, defined here:

- a named dense vector ``dense`` (cosine) and a named sparse vector ``bm25`` with the IDF
  modifier (the collection computes IDF; the encoder only supplies term frequencies);
- keyword payload indexes on ``tenant_id`` (``is_tenant``), ``knowledge_base_id`` and
  ``document_id``;
- hybrid search = a dense prefetch and a sparse prefetch, each ``hybrid_prefetch_limit(limit)``
  deep and each carrying the tenant/kb filter, fused by reciprocal rank fusion with
  ``RRF_K`` (score of a hit = sum over sources of ``1 / (RRF_K + rank)``, rank from 0);
- the sparse side's IDF is computed over the searched tenant's knowledge base only (an IDF
  corpus filter equal to the search filter), never collection-wide: another tenant's data
  cannot move this tenant's scores, so scores leak nothing across tenants and BM25 weights
  follow the knowledge base being searched;
- every search hit carries ``similarity``: the cosine between the query's dense vector and the
  hit's stored dense vector, whichever side found it (a relevance threshold needs a number with
  the same meaning for every hit; RRF and BM25 scores have none);
- point ids are ``uuid5(document_id, str(chunk_index))``, so re-indexing a document (or a
  redelivered message) overwrites the same points instead of adding new ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

DEFAULT_COLLECTION = "docuchat_chunks"
DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
DEFAULT_DIMENSION = 384
RRF_K = 60
"""RRF ranking constant, passed explicitly to both engines (Qdrant's own default is 2)."""

TENANT_FIELD = "tenant_id"
KB_FIELD = "knowledge_base_id"
DOCUMENT_FIELD = "document_id"

DenseVector = Sequence[float] | npt.NDArray[np.floating[Any]]


def point_id(document_id: uuid.UUID, chunk_index: int) -> uuid.UUID:
    """The deterministic id of chunk ``chunk_index`` of a document."""
    return uuid.uuid5(document_id, str(chunk_index))


def hybrid_prefetch_limit(limit: int) -> int:
    """How deep each side of a hybrid query looks before fusion."""
    return max(4 * limit, 20)


@dataclass(frozen=True, slots=True)
class SparseVector:
    """A sparse vector: term ids and their weights (same length, ids unique)."""

    indices: Sequence[int]
    values: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.values):
            raise ValueError("sparse vector indices and values differ in length")


@dataclass(frozen=True, slots=True)
class ChunkPayload:
    tenant_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    document_id: uuid.UUID
    chunk_index: int
    text: str
    filename: str
    page_start: int | None = None
    page_end: int | None = None
    heading_path: Sequence[str] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The stored payload: ids as strings (keyword indexes), everything JSON."""
        return {
            TENANT_FIELD: str(self.tenant_id),
            KB_FIELD: str(self.knowledge_base_id),
            DOCUMENT_FIELD: str(self.document_id),
            "chunk_index": self.chunk_index,
            "page_start": self.page_start,
            "page_end": self.page_end,
            "heading_path": list(self.heading_path),
            "text": self.text,
            "filename": self.filename,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkPayload:
        return cls(
            tenant_id=uuid.UUID(str(data[TENANT_FIELD])),
            knowledge_base_id=uuid.UUID(str(data[KB_FIELD])),
            document_id=uuid.UUID(str(data[DOCUMENT_FIELD])),
            chunk_index=int(data["chunk_index"]),
            text=str(data.get("text", "")),
            filename=str(data.get("filename", "")),
            page_start=_opt_int(data.get("page_start")),
            page_end=_opt_int(data.get("page_end")),
            heading_path=tuple(str(h) for h in data.get("heading_path") or ()),
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True, slots=True)
class ChunkPoint:
    """One chunk to store. Build it with :meth:`for_chunk` to get the deterministic id."""

    id: uuid.UUID
    vector: DenseVector
    payload: ChunkPayload
    sparse: SparseVector | None = None

    @classmethod
    def for_chunk(
        cls, payload: ChunkPayload, vector: DenseVector, sparse: SparseVector | None = None
    ) -> ChunkPoint:
        return cls(
            id=point_id(payload.document_id, payload.chunk_index),
            vector=vector,
            payload=payload,
            sparse=sparse,
        )


@dataclass(frozen=True, slots=True)
class SearchHit:
    id: uuid.UUID
    score: float
    payload: ChunkPayload
    similarity: float = 0.0
    """Cosine between the query's dense vector and this chunk's (see the module doc)."""


def cosine(query: DenseVector, stored: Sequence[Any] | None) -> float:
    """Cosine similarity of two dense vectors (0.0 when the stored one is missing or zero)."""
    if not stored:
        return 0.0
    a = np.asarray(query, dtype=np.float32).ravel()
    b = np.asarray(stored, dtype=np.float32).ravel()
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norms) if norms > 0 else 0.0


def dense_list(vector: DenseVector) -> list[float]:
    """A dense vector as a plain list of Python floats (both engines want lists)."""
    if isinstance(vector, np.ndarray):
        return [float(x) for x in vector.astype(np.float32, copy=False).ravel().tolist()]
    return [float(x) for x in vector]


@runtime_checkable
class VectorStore(Protocol):
    """Chunk vectors of every tenant, in one collection; every query is tenant-scoped."""

    async def ensure_collection(self) -> None:
        """Create the collection (vectors, payload indexes) if missing; idempotent."""

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Insert or overwrite points by id (same id = same point, never a duplicate)."""

    async def delete_document(self, tenant_id: uuid.UUID, document_id: uuid.UUID) -> None: ...

    async def delete_knowledge_base(self, tenant_id: uuid.UUID, kb_id: uuid.UUID) -> None: ...

    async def delete_tenant(self, tenant_id: uuid.UUID) -> None: ...

    async def search_dense(
        self, tenant_id: uuid.UUID, kb_id: uuid.UUID, vector: DenseVector, limit: int
    ) -> list[SearchHit]:
        """Nearest chunks by cosine similarity (score = cosine), best first."""

    async def search_sparse(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        dense: DenseVector,
        sparse: SparseVector,
        limit: int,
    ) -> list[SearchHit]:
        """Best chunks by the sparse side alone (score = BM25 with the knowledge base's IDF);
        ``dense`` (the query's embedding) only gives each hit its ``similarity``."""

    async def search_hybrid(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID,
        dense: DenseVector,
        sparse: SparseVector,
        limit: int,
    ) -> list[SearchHit]:
        """Dense and sparse prefetch fused with RRF (score = RRF score), best first."""

    async def count(
        self,
        tenant_id: uuid.UUID,
        kb_id: uuid.UUID | None = None,
        document_id: uuid.UUID | None = None,
    ) -> int: ...

    async def check_ready(self) -> None:
        """Raise unless the store can answer: the shard is open / the server has the
        collection. For ``/readyz``: cheap, and never queued behind a long write."""

    async def close(self) -> None:
        """Release the client / the shard."""
