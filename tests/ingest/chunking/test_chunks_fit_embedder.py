"""Chunker and embedder agree: one shared tokenizer, and chunks are never truncated."""

from __future__ import annotations

import random

import numpy as np

from docuchat_ingest.chunking import Chunker, ChunkInput
from docuchat_ingest.embedding import MAX_SEQ_LENGTH, MiniLMEmbedder, load_tokenizer


async def test_chunks_embed_without_truncation() -> None:
    rng = random.Random(11)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "tokenisation", "wordpieces", "zeta"]
    blocks = [
        ChunkInput(
            " ".join(
                " ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) + "."
                for _ in range(12)
            ),
            page,
            ("Doc", f"Part {page}"),
        )
        for page in range(1, 6)
    ]
    chunker = Chunker(max_tokens=MAX_SEQ_LENGTH, overlap_tokens=40)
    embedder = MiniLMEmbedder()
    assert chunker.tokenizer is embedder.tokenizer is load_tokenizer()  # one load per process
    chunks = chunker.chunk(blocks)
    texts = [c.embedding_text for c in chunks]
    seen = [len(ids) for ids in embedder.tokenize(texts)]
    assert seen == [c.token_count for c in chunks]
    assert max(seen) <= MAX_SEQ_LENGTH
    result = await embedder.embed(texts)
    assert result.tokens == sum(c.token_count for c in chunks)
    assert result.vectors.shape == (len(chunks), 384)
    assert np.isfinite(result.vectors).all()
