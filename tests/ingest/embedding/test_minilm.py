"""MiniLM int8 ONNX adapter: shape, normalisation, semantics, order, truncation, token counts."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

from docuchat_ingest.embedding import (
    DIMENSION,
    MAX_SEQ_LENGTH,
    Embedder,
    MiniLMEmbedder,
    load_tokenizer,
)

EATING = "A man is eating food."
BREAD = "A man is eating a piece of bread."
STOCKS = "The stock market fell today."


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder(batch_size=4)


def test_is_an_embedder(embedder: MiniLMEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dimension == 384
    assert embedder.model_name == "all-MiniLM-L6-v2"


async def test_unit_vectors_of_384(embedder: MiniLMEmbedder) -> None:
    result = await embedder.embed([EATING, BREAD, STOCKS])
    assert result.vectors.shape == (3, DIMENSION)
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)


async def test_semantics_and_reference_similarity(embedder: MiniLMEmbedder) -> None:
    v = (await embedder.embed([EATING, BREAD, STOCKS])).vectors
    close, far = float(v[0] @ v[1]), float(v[0] @ v[2])
    assert close > far + 0.4
    # fp32 sentence-transformers gives ~0.755 for this pair; int8 deviates slightly
    assert 0.68 < close < 0.83
    assert abs(far) < 0.2


async def test_deterministic(embedder: MiniLMEmbedder) -> None:
    a = (await embedder.embed([EATING, STOCKS])).vectors
    b = (await embedder.embed([EATING, STOCKS])).vectors
    np.testing.assert_array_equal(a, b)


async def test_order_preserved_across_sorting_and_batches(embedder: MiniLMEmbedder) -> None:
    texts = [f"{'word ' * (i * 7 % 23)}sentence number {i} about topic {i % 5}" for i in range(11)]
    together = (await embedder.embed(texts)).vectors  # batch_size=4: three batches, sorted
    one_by_one = np.vstack([(await embedder.embed([t])).vectors for t in texts])
    # padding changes the int8 kernels' accumulation order only marginally
    np.testing.assert_allclose(together, one_by_one, atol=2e-3)
    assert (np.argmax(together @ one_by_one.T, axis=1) == np.arange(len(texts))).all()


async def test_long_text_truncated(embedder: MiniLMEmbedder) -> None:
    long = "lorem ipsum dolor sit amet " * 400
    result = await embedder.embed([long, EATING])
    assert result.vectors.shape == (2, DIMENSION)
    assert np.isfinite(result.vectors).all()
    assert len(embedder.tokenize([long])[0]) == MAX_SEQ_LENGTH
    # what the model sees is the first 256 wordpieces: extra tail changes nothing
    longer = (await embedder.embed([long + " completely different ending here"])).vectors
    np.testing.assert_allclose(longer[0], result.vectors[0], atol=1e-6)


async def test_token_count_matches_tokenizer(embedder: MiniLMEmbedder) -> None:
    texts = [EATING, BREAD, STOCKS, "unbelievably tokenisation-heavy wordpieces!"]
    result = await embedder.embed(texts)
    expected = sum(len(e.ids) for e in load_tokenizer().encode_batch(texts))
    assert result.tokens == expected
    long = "word " * 1000
    assert (await embedder.embed([long])).tokens == MAX_SEQ_LENGTH


async def test_empty_input(embedder: MiniLMEmbedder) -> None:
    result = await embedder.embed([])
    assert result.vectors.shape == (0, DIMENSION)
    assert result.vectors.dtype == np.float32
    assert result.tokens == 0


async def test_empty_string_is_fine(embedder: MiniLMEmbedder) -> None:
    result = await embedder.embed([""])
    assert result.vectors.shape == (1, DIMENSION)
    assert np.isfinite(result.vectors).all()


async def test_model_runs_are_counted_for_operators(embedder: MiniLMEmbedder) -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"model": embedder.model_name}) or 0.0

    names = (
        "docuchat_embedding_model_batches_total",
        "docuchat_embedding_model_texts_total",
        "docuchat_embedding_model_seconds_total",
        "docuchat_embedding_model_cpu_seconds_total",
    )
    before = {name: sample(name) for name in names}
    texts = [
        f"sentence number {i} about a different subject" for i in range(3 * embedder.batch_size)
    ]
    await embedder.embed(texts)
    grew = {name: sample(name) - before[name] for name in names}
    assert grew["docuchat_embedding_model_texts_total"] == len(texts)
    assert grew["docuchat_embedding_model_batches_total"] == 3
    assert grew["docuchat_embedding_model_seconds_total"] > 0
    assert grew["docuchat_embedding_model_cpu_seconds_total"] > 0
