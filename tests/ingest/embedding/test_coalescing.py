"""Concurrent embed calls share model runs, and each caller still gets exactly its own vectors
and its own tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from docuchat_ingest.embedding.base import EmbeddingResult
from docuchat_ingest.embedding.coalescing import CoalescingEmbedder
from docuchat_ingest.embedding.minilm import MiniLMEmbedder
from tests.ingest.embedding.conftest import DOCUMENTS


class CountingEmbedder:
    """The real model, counting how often it runs."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.calls: list[int] = []

    async def embed(
        self, texts: Sequence[str], *, job_position: int | None = None
    ) -> EmbeddingResult:
        self.calls.append(len(texts))
        return await self.inner.embed(texts)


async def test_concurrent_callers_share_runs_and_get_their_own_results(
    model: MiniLMEmbedder,
) -> None:
    counting = CountingEmbedder(model)
    coalescing = CoalescingEmbedder(counting, max_texts=64)

    results = await asyncio.gather(*(coalescing.embed(texts) for texts in DOCUMENTS))

    assert len(counting.calls) < len(DOCUMENTS)
    assert sum(counting.calls) == sum(map(len, DOCUMENTS))
    for texts, result in zip(DOCUMENTS, results, strict=True):
        alone = await model.embed(texts)
        assert result.vectors.shape == (len(texts), model.dimension)
        np.testing.assert_allclose(result.vectors, alone.vectors, atol=1e-5)
        assert result.tokens == alone.tokens
        assert result.token_counts == alone.token_counts


async def test_runs_stay_within_max_texts_and_an_empty_call_costs_nothing(
    model: MiniLMEmbedder,
) -> None:
    counting = CountingEmbedder(model)
    coalescing = CoalescingEmbedder(counting, max_texts=3)
    empty = await coalescing.embed([])
    assert (len(empty), empty.tokens, counting.calls) == (0, 0, [])

    await asyncio.gather(*(coalescing.embed(texts) for texts in DOCUMENTS[:3]))
    # Callers are taken whole, in arrival order, while they fit.
    assert counting.calls == [3, 1]


async def test_a_failing_run_fails_its_callers_and_the_next_run_works(
    model: MiniLMEmbedder,
) -> None:
    class FlakyEmbedder(CountingEmbedder):
        async def embed(
            self, texts: Sequence[str], *, job_position: int | None = None
        ) -> EmbeddingResult:
            if not self.calls:
                self.calls.append(len(texts))
                raise RuntimeError("model run failed")
            return await super().embed(texts)

    coalescing = CoalescingEmbedder(FlakyEmbedder(model))
    outcomes = await asyncio.gather(
        coalescing.embed(["first"]), coalescing.embed(["second"]), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    recovered = await coalescing.embed(["third"])
    assert len(recovered) == 1


async def test_shares_of_a_call_without_per_text_counts_add_up_to_its_tokens(
    model: MiniLMEmbedder,
) -> None:
    class RemoteLike(CountingEmbedder):
        """Bills a whole call, as an embeddings endpoint's usage does."""

        async def embed(
            self, texts: Sequence[str], *, job_position: int | None = None
        ) -> EmbeddingResult:
            result = await super().embed(texts)
            return EmbeddingResult(result.vectors, 10)

    coalescing = CoalescingEmbedder(RemoteLike(model))
    results = await asyncio.gather(*(coalescing.embed([t]) for t in ("a", "b", "c")))
    assert sum(r.tokens for r in results) == 10
    assert sorted(r.tokens for r in results) == [3, 3, 4]
