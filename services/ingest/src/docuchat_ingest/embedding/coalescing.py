"""Dynamic batching: concurrent ``embed`` calls share calls of the wrapped embedder.

A worker indexes several documents at once; each asks for its chunks a slice at a time, and a
small document has only a handful of chunks. Sent separately to a remote embeddings endpoint,
those are many small requests. This wrapper queues the calls: while one call is out, the calls
that arrive wait, and the next call takes them together (up to ``max_texts``), so batching adds
no latency: nothing waits on a timer. Each caller gets back its own vectors and its own share
of the tokens. (The local model batches its callers itself, per model run.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from docuchat_ingest.embedding.base import Embedder, EmbeddingResult, empty_result


@dataclass(slots=True)
class _Request:
    texts: Sequence[str]
    future: asyncio.Future[EmbeddingResult]


class CoalescingEmbedder:
    """An :class:`Embedder` that merges concurrent calls into shared calls of ``inner``."""

    def __init__(self, inner: Embedder, *, max_texts: int = 128) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.dimension = inner.dimension
        self.max_texts = max_texts
        self._pending: deque[_Request] = deque()
        self._runner: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()

    async def embed(
        self, texts: Sequence[str], *, job_position: int | None = None
    ) -> EmbeddingResult:
        if not texts:
            return empty_result(self.dimension)
        future: asyncio.Future[EmbeddingResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(texts, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # callers scheduled in the same tick join this run
            batch = [self._pending.popleft()]
            size = len(batch[0].texts)
            while self._pending and size + len(self._pending[0].texts) <= self.max_texts:
                request = self._pending.popleft()
                batch.append(request)
                size += len(request.texts)
            live = [r for r in batch if not r.future.done()]  # a cancelled caller
            if not live:
                continue
            try:
                result = await self.inner.embed([t for r in live for t in r.texts])
            except Exception as exc:
                for request in live:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            self._deliver(live, result)

    @staticmethod
    def _deliver(requests: list[_Request], result: EmbeddingResult) -> None:
        total_texts = sum(len(r.texts) for r in requests)
        counts = result.token_counts
        start = 0
        for request in requests:
            end = start + len(request.texts)
            if counts is not None:
                share: tuple[int, ...] | None = counts[start:end]
                tokens = sum(share or ())
            else:  # no per-text counts: bill by share of the texts, losing no token to rounding
                share = None
                tokens = round(result.tokens * end / total_texts) - round(
                    result.tokens * start / total_texts
                )
            vectors = np.ascontiguousarray(result.vectors[start:end])
            if not request.future.done():
                request.future.set_result(EmbeddingResult(vectors, tokens, share))
            start = end
