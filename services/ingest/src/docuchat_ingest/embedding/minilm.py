"""all-MiniLM-L6-v2 (int8 ONNX) run by onnxruntime, tokenised by ``tokenizers``; no torch.

Reproduces what sentence-transformers does for this model: wordpiece tokenisation truncated to
256 tokens (special tokens included), mean pooling over the attention mask of the
``last_hidden_state`` output, then L2 normalisation.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from .base import EmbeddingResult, Vectors, empty_result, l2_normalise
from .metrics import (
    MODEL_BATCHES,
    MODEL_CPU_SECONDS,
    MODEL_INPUT_TOKENS,
    MODEL_SECONDS,
    MODEL_TEXTS,
    MODEL_TOKENS,
)
from .model_files import (
    DIMENSION,
    MAX_SEQ_LENGTH,
    MODEL_NAME,
    load_tokenizer,
    onnx_model_path,
    token_ids,
)

IntArray = npt.NDArray[np.int64]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(eq=False, slots=True)
class _Request:
    """One ``embed`` call waiting for its texts' model runs."""

    ids: list[list[int]]
    vectors: Vectors
    future: asyncio.Future[None]
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.remaining = len(self.ids)


@dataclass(order=True, slots=True)
class _Text:
    """One text of a request, waiting for a model run; queued in order of ``due``."""

    due: float
    seq: int
    request: _Request = field(compare=False)
    index: int = field(compare=False)

    @property
    def live(self) -> bool:
        return not self.request.future.done()

    @property
    def length(self) -> int:
        return len(self.request.ids[self.index])


class _RunScheduler:
    """Continuous batching over the model's parallel runs, for one event loop.

    Every text waiting for the model is queued; whenever a run slot is free, the next batch is
    made of the first waiting text and the ``batch_size - 1`` texts nearest to it in length
    among the next few (less padding than first-come batches: many documents' chunks mix),
    whoever asked for them. So a slot does not idle while a batch's worth of texts waits, and
    many small documents fill whole batches together. While one run goes on, a part batch waits
    for more texts (it costs more per text, and more are likely to come); with no run going it
    starts at once.

    Calls of up to ``batch_size`` texts that do not say they are part of a larger job (a
    search's query) go first: a question must not wait behind a 500-page document. The rest
    are queued by when they are due: ``DUE_SECONDS_PER_TEXT`` per text of the caller's job up
    to and including the call (``job_position``) after they were queued, about when they would
    be done if the job had the model to itself. So a small document's chunks overtake the later
    slices of a large one queued before them (and the large one's first slices still come
    first), small documents finish, and the worker's window of documents in flight moves on to
    parse the next ones while the large one keeps the model busy: first come, first served
    filled the window with documents waiting behind the large one, and the model starved while
    the next ones were parsed (measured on bench.ingest). A cancelled caller loses its place.
    """

    #: How far past the first waiting text a batch looks for texts of a similar length (the
    #: first is always taken, so nobody waits longer for it). bench.ingest's padding at 4, 8
    #: and 16 batches: 4%, 3% and 2% of the positions fed, against 1% for one sorted call.
    WINDOW_BATCHES = 16
    #: A queued text's delay allowance per text of its caller's job through its call: a little
    #: over the model's time per chunk of ~200 wordpieces on a 2-core machine (~0.035 s).
    DUE_SECONDS_PER_TEXT = 0.05

    def __init__(self, embedder: MiniLMEmbedder) -> None:
        self._embedder = embedder
        self._urgent: list[_Text] = []
        self._bulk: list[_Text] = []  # sorted by (due, seq)
        self._seq = itertools.count()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Texts queued for a run (a cancelled caller's no longer count)."""
        return sum(text.live for queue in (self._urgent, self._bulk) for text in queue)

    def submit(
        self, request: _Request, order: Sequence[int], *, urgent: bool, job_position: int
    ) -> None:
        due = asyncio.get_running_loop().time() + self.DUE_SECONDS_PER_TEXT * job_position
        texts = [_Text(due, next(self._seq), request, index) for index in order]
        if urgent:
            self._urgent += texts
        else:
            # After every text due no later (they were queued earlier).
            at = bisect.bisect_right(self._bulk, due, key=lambda text: text.due)
            self._bulk[at:at] = texts
        self._dispatch()

    def _dispatch(self) -> None:
        size = self._embedder.batch_size
        while self._running < self._embedder.parallel_runs:
            for queue in (self._urgent, self._bulk):
                while queue and not queue[0].live:  # cancelled callers
                    del queue[0]
            if not self._urgent and not self._bulk:
                return
            if self._running and not self._urgent and len(self._bulk) < size:
                return
            batch = self._take(self._urgent, size) if self._urgent else []
            if len(batch) < size and self._bulk:
                batch += self._take(self._bulk, size - len(batch))
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, queue: list[_Text], count: int) -> list[_Text]:
        """The first live text and the ``count - 1`` live texts nearest it in length among the
        window that follows it, taken off ``queue``."""
        span = self.WINDOW_BATCHES * self._embedder.batch_size
        window = [text for text in queue[:span] if text.live]
        if len(window) <= count:
            chosen = window
        else:
            target = window[0].length
            nearest = sorted(range(1, len(window)), key=lambda i: abs(window[i].length - target))
            chosen = [window[0], *(window[i] for i in sorted(nearest[: count - 1]))]
        taken = {id(text) for text in chosen}
        queue[:span] = [text for text in window if id(text) not in taken]
        return chosen

    async def _run(self, batch: list[_Text]) -> None:
        try:
            vectors = await asyncio.to_thread(
                self._embedder._run_batch, [text.request.ids[text.index] for text in batch]
            )
        except Exception as exc:
            for text in batch:
                if text.live:
                    text.request.future.set_exception(exc)
        else:
            for text, vector in zip(batch, vectors, strict=True):
                request = text.request
                request.vectors[text.index] = vector
                request.remaining -= 1
                if request.remaining == 0 and not request.future.done():
                    request.future.set_result(None)
        finally:
            self._running -= 1
            self._dispatch()


class MiniLMEmbedder:
    """The embedded default :class:`~docuchat_ingest.embedding.base.Embedder`.

    Texts are tokenised, queued and run through the model in batches of ``batch_size``, sorted
    by token length within a call (less padding). ``parallel_runs`` batches run at once, each
    on one thread (default: one per CPU). One run per core beats one run spread over all cores
    on a busy machine: a multi-threaded run waits at every operator for its slowest thread, so
    whatever else the process does (parsing, I/O, the event loop) stalls both cores; measured on
    the bench corpus beside a thread busy a third of the time, 7.1 s for two single-threaded
    runs against 8.4-8.9 s for one two-threaded run (6.2 s and 6.5-7.1 s on an idle machine).
    Concurrent calls share batches (see :class:`_RunScheduler`). ``tokens`` counts the
    wordpieces fed to the model ([CLS]/[SEP] included, after truncation). One instance per
    process is enough: the ONNX session is thread-safe.

    Batches are small: a run's activations grow with its batch and spill out of the CPU
    caches the two runs share. One run already multiplies ~200 wordpieces by each weight
    matrix, so larger batches gain nothing in the arithmetic and lose in the caches. On the
    bench corpus's chunks (two runs, sorted by length either way) batches of 2 or 4 took ~17%
    less CPU than batches of 8 (16.2-16.7 against 19.6-20.6 CPU s), and 8 took ~18% less than
    32; through the whole stack, 2 beat 4 by a few percent (less padding: 4% against 7-8%)
    and 8 by 20-30%. Batches of 1 cost more again (a run's fixed cost per text).
    """

    model_name = MODEL_NAME
    dimension = DIMENSION
    #: Texts per run unless told (None): see above.
    DEFAULT_BATCH_SIZE = 2

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer: Tokenizer | None = None,
        batch_size: int | None = None,
        parallel_runs: int | None = None,
        max_length: int = MAX_SEQ_LENGTH,
    ) -> None:
        import onnxruntime as ort

        batch_size = self.DEFAULT_BATCH_SIZE if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if parallel_runs is not None and parallel_runs < 1:
            raise ValueError("parallel_runs must be >= 1")
        if not 2 <= max_length <= MAX_SEQ_LENGTH:
            raise ValueError(f"max_length must be in 2..{MAX_SEQ_LENGTH}")
        self.batch_size = batch_size
        self.parallel_runs = parallel_runs or available_cpus()
        self.max_length = max_length
        self.tokenizer = tokenizer or load_tokenizer()
        sep = self.tokenizer.token_to_id("[SEP]")
        if sep is None:  # pragma: no cover - wrong tokenizer
            raise ValueError("tokenizer has no [SEP] token")
        self._sep_id = sep
        options = ort.SessionOptions()
        # Each run on the thread that calls it; parallelism comes from concurrent runs.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session: Any = ort.InferenceSession(
            str(model_path or onnx_model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:  # pragma: no cover - a different export
            raise ValueError(f"ONNX model lacks inputs {sorted(missing)}")
        outputs = [o.name for o in self._session.get_outputs()]
        # A token-level output is pooled here; a sentence-level one (some exports pool inside
        # the graph) is used as is.
        if "last_hidden_state" in outputs:
            self._output, self._pooled = "last_hidden_state", False
        elif "token_embeddings" in outputs:
            self._output, self._pooled = "token_embeddings", False
        elif "sentence_embedding" in outputs:
            self._output, self._pooled = "sentence_embedding", True
        else:
            self._output = outputs[0]
            self._pooled = len(self._session.get_outputs()[0].shape) == 2
        # Whoever calls (any event loop, any thread), at most parallel_runs runs at once.
        self._slots = threading.BoundedSemaphore(self.parallel_runs)
        self._schedulers: dict[asyncio.AbstractEventLoop, _RunScheduler] = {}

    # -- tokenisation ---------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with [CLS]/[SEP], truncated to ``max_length`` (keeping [SEP])."""
        limit = self.max_length
        return [
            ids if len(ids) <= limit else [*ids[: limit - 1], self._sep_id]
            for ids in token_ids(texts, special_tokens=True, tokenizer=self.tokenizer)
        ]

    # -- inference ------------------------------------------------------------------------------

    def _run_batch(self, batch: list[list[int]]) -> Vectors:
        width = max(len(ids) for ids in batch)
        input_ids: IntArray = np.zeros((len(batch), width), dtype=np.int64)
        mask: IntArray = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feeds: dict[str, IntArray] = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        with self._slots:
            started, cpu_started = time.perf_counter(), time.thread_time()
            (output,) = self._session.run([self._output], feeds)
            cpu, wall = time.thread_time() - cpu_started, time.perf_counter() - started
        MODEL_BATCHES.labels(self.model_name).inc()
        MODEL_TEXTS.labels(self.model_name).inc(len(batch))
        MODEL_TOKENS.labels(self.model_name).inc(sum(map(len, batch)))
        MODEL_INPUT_TOKENS.labels(self.model_name).inc(input_ids.size)
        MODEL_SECONDS.labels(self.model_name).inc(wall)
        MODEL_CPU_SECONDS.labels(self.model_name).inc(cpu)
        if self._pooled:
            return l2_normalise(output)
        hidden = np.asarray(output, dtype=np.float32)
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        counts = np.maximum(weights.sum(axis=1), np.float32(1e-9))
        return l2_normalise(summed / counts)

    @staticmethod
    def _longest_first(ids: list[list[int]]) -> list[int]:
        return sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)

    def embed_sync(self, texts: Sequence[str]) -> EmbeddingResult:
        """The blocking version of :meth:`embed`, one batch after another (for benchmarks and
        tools)."""
        if not texts:
            return empty_result(self.dimension)
        ids = self.tokenize(texts)
        order = self._longest_first(ids)
        vectors = np.empty((len(ids), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            vectors[chunk] = self._run_batch([ids[i] for i in chunk])
        counts = tuple(map(len, ids))
        return EmbeddingResult(vectors, sum(counts), counts)

    async def embed(
        self, texts: Sequence[str], *, job_position: int | None = None
    ) -> EmbeddingResult:
        if not texts:
            return empty_result(self.dimension)
        urgent = job_position is None and len(texts) <= self.batch_size
        # A query's few wordpieces tokenise in microseconds; a document's slice in a thread.
        ids = self.tokenize(texts) if urgent else await asyncio.to_thread(self.tokenize, texts)
        loop = asyncio.get_running_loop()
        request = _Request(
            ids, np.empty((len(ids), self.dimension), dtype=np.float32), loop.create_future()
        )
        self._scheduler(loop).submit(
            request,
            self._longest_first(ids),
            urgent=urgent,
            job_position=max(job_position or 0, len(ids)),
        )
        await request.future
        counts = tuple(map(len, ids))
        return EmbeddingResult(request.vectors, sum(counts), counts)

    @property
    def waiting(self) -> int:
        """Texts queued for a model run, from every caller."""
        return sum(scheduler.waiting for scheduler in self._schedulers.values())

    def _scheduler(self, loop: asyncio.AbstractEventLoop) -> _RunScheduler:
        scheduler = self._schedulers.get(loop)
        if scheduler is None:
            # Loops that are gone (tests, asyncio.run in tools) leave nothing behind.
            self._schedulers = {
                known: s for known, s in self._schedulers.items() if not known.is_closed()
            }
            scheduler = self._schedulers[loop] = _RunScheduler(self)
        return scheduler
