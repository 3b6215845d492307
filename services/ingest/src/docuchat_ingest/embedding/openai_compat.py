"""An OpenAI-compatible ``/v1/embeddings`` adapter (OpenAI, vLLM, TEI, llama.cpp server, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import EmbeddingResult, empty_result, l2_normalise

if TYPE_CHECKING:
    from openai import AsyncOpenAI

#: Native output sizes of well-known models, used when ``dimensions`` is not given.
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "all-MiniLM-L6-v2": 384,
    "sentence-transformers/all-MiniLM-L6-v2": 384,
}


class OpenAIEmbedder:
    """:class:`~docuchat_ingest.embedding.base.Embedder` over an OpenAI-compatible endpoint.

    ``dimensions`` is sent with every request (models that support shortening honour it);
    without it, ``dimension`` must be given or the model must be in :data:`KNOWN_DIMENSIONS`.
    Inputs go in batches of ``batch_size``; ``tokens`` sums ``usage.prompt_tokens``. Vectors are
    re-normalised (cheap, and not every server returns unit vectors). Empty strings are sent as
    a single space (OpenAI rejects empty inputs).
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        dimension: int | None = None,
        batch_size: int = 128,
        timeout: float = 60.0,
        max_retries: int = 3,
        client: AsyncOpenAI | None = None,
    ) -> None:
        from openai import AsyncOpenAI

        size = dimensions or dimension or KNOWN_DIMENSIONS.get(model)
        if size is None:
            raise ValueError(f"unknown output size for model {model!r}: pass dimension=")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.model_name = model
        self.dimension = size
        self._dimensions = dimensions
        self.batch_size = batch_size
        self._client = client or AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "unused",
            timeout=timeout,
            max_retries=max_retries,
        )

    async def embed(
        self, texts: Sequence[str], *, job_position: int | None = None
    ) -> EmbeddingResult:
        if not texts:
            return empty_result(self.dimension)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        tokens = 0
        for start in range(0, len(texts), self.batch_size):
            batch = [t or " " for t in texts[start : start + self.batch_size]]
            extra: dict[str, Any] = {}
            if self._dimensions is not None:
                extra["dimensions"] = self._dimensions
            response = await self._client.embeddings.create(
                model=self.model_name, input=batch, encoding_format="float", **extra
            )
            if len(response.data) != len(batch):
                raise RuntimeError(
                    f"embeddings endpoint returned {len(response.data)} vectors for {len(batch)}"
                )
            for item in response.data:
                if len(item.embedding) != self.dimension:
                    raise RuntimeError(
                        f"embeddings endpoint returned {len(item.embedding)} dimensions, "
                        f"expected {self.dimension}"
                    )
                vectors[start + item.index] = item.embedding
            tokens += response.usage.prompt_tokens if response.usage else 0
        return EmbeddingResult(l2_normalise(vectors), tokens)

    async def aclose(self) -> None:
        await self._client.close()
