"""Token-aware chunking of parsed blocks for the embedding model."""

from .chunker import Chunk, Chunker, ChunkInput, chunk_blocks

__all__ = ["Chunk", "ChunkInput", "Chunker", "chunk_blocks"]
