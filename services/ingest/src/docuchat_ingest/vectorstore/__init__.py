"""Chunk vectors behind the VectorStore port: qdrant-edge (embedded), qdrant-client (server)."""

from docuchat_ingest.vectorstore.port import (
    ChunkPayload,
    ChunkPoint,
    SearchHit,
    SparseVector,
    VectorStore,
    point_id,
)

__all__ = ["ChunkPayload", "ChunkPoint", "SearchHit", "SparseVector", "VectorStore", "point_id"]
