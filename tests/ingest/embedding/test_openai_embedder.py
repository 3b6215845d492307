"""OpenAI-compatible adapter against the fake server (real HTTP)."""

from __future__ import annotations

import numpy as np
import pytest

from docuchat_ingest.embedding import Embedder, OpenAIEmbedder
from tests.fakes.openai_server import FakeOpenAI, fake_embedding


def _embedder(fake: FakeOpenAI, **kwargs: object) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        model="text-embedding-3-small",
        base_url=fake.base_url,
        api_key="sk-test",
        max_retries=0,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_vectors_tokens_and_order(fake_openai: FakeOpenAI) -> None:
    embedder = _embedder(fake_openai, dimension=384, batch_size=2)
    assert isinstance(embedder, Embedder)
    texts = ["one two three", "four", "five six", "seven eight nine ten", "eleven"]
    result = await embedder.embed(texts)
    assert result.vectors.shape == (5, 384)
    assert result.vectors.dtype == np.float32
    expected = np.array([fake_embedding(t, 384) for t in texts], dtype=np.float32)
    np.testing.assert_allclose(result.vectors, expected, atol=1e-6)
    assert result.tokens == sum(len(t.split()) for t in texts)
    posts = [r for r in fake_openai.requests if r.path.endswith("/embeddings")]
    assert len(posts) == 3  # batches of 2
    assert posts[0].api_key == "sk-test"
    assert posts[0].body["model"] == "text-embedding-3-small"
    assert "dimensions" not in posts[0].body
    await embedder.aclose()


async def test_dimensions_sent(fake_openai: FakeOpenAI) -> None:
    embedder = _embedder(fake_openai, dimensions=64)
    assert embedder.dimension == 64
    result = await embedder.embed(["hello world"])
    assert result.vectors.shape == (1, 64)
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    posts = [r for r in fake_openai.requests if r.path.endswith("/embeddings")]
    assert posts[0].body["dimensions"] == 64
    await embedder.aclose()


async def test_empty_input_makes_no_call(fake_openai: FakeOpenAI) -> None:
    embedder = _embedder(fake_openai)
    assert embedder.dimension == 1536
    result = await embedder.embed([])
    assert result.vectors.shape == (0, 1536)
    assert result.tokens == 0
    assert not fake_openai.requests
    await embedder.aclose()


async def test_dimension_mismatch_is_an_error(fake_openai: FakeOpenAI) -> None:
    embedder = _embedder(fake_openai)  # expects 1536, the fake answers 384
    with pytest.raises(RuntimeError, match="dimensions"):
        await embedder.embed(["x"])
    await embedder.aclose()


def test_unknown_model_needs_a_dimension() -> None:
    with pytest.raises(ValueError, match="dimension"):
        OpenAIEmbedder(model="mystery-model", base_url="http://127.0.0.1:9/v1")
