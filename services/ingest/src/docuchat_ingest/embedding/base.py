"""The Embedder port: texts in, L2-normalised float32 vectors and a token count out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """``vectors`` is ``(n, dimension)`` float32, one unit-length row per input, in input order;
    ``tokens`` is what the call cost in model tokens (for metering); ``token_counts``, when the
    embedder knows them, splits it per input (so a shared call can be billed per document)."""

    vectors: Vectors
    tokens: int
    token_counts: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


@runtime_checkable
class Embedder(Protocol):
    model_name: str
    dimension: int

    async def embed(
        self, texts: Sequence[str], *, job_position: int | None = None
    ) -> EmbeddingResult:
        """Vectors for ``texts``. ``job_position``: where the last of them stands in the
        caller's job (a document's chunks, asked for a slice at a time: the chunks through this
        slice), so an embedder that queues work can run what is early in its job before what is
        late in another (a small document before the rest of a large one); None for a job of
        its own (a query)."""
        ...


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    scaled: Vectors = (out / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)
    return scaled


def empty_result(dimension: int) -> EmbeddingResult:
    return EmbeddingResult(np.zeros((0, dimension), dtype=np.float32), 0)
