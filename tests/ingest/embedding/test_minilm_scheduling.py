"""The MiniLM embedder's run scheduling: concurrent callers share model runs and still get
exactly their own vectors and tokens; a query goes ahead of queued document chunks; a small
document's chunks go ahead of a large one's queued before them; a cancelled caller's texts are
never run; a failed run fails only its callers."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from docuchat_ingest.embedding.base import EmbeddingResult, Vectors
from docuchat_ingest.embedding.minilm import MiniLMEmbedder
from tests.helpers import eventually
from tests.ingest.embedding.conftest import DOCUMENTS

QUERY = "which river has the most bridges?"


class RecordingEmbedder(MiniLMEmbedder):
    """The real model, recording the token ids of every run; a run can be held at a gate."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.runs: list[list[list[int]]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.failing_run: int | None = None

    def _run_batch(self, batch: list[list[int]]) -> Vectors:
        self.runs.append(batch)
        self.started.set()
        self.gate.wait(timeout=30)
        if len(self.runs) - 1 == self.failing_run:
            raise RuntimeError("model run failed")
        return super()._run_batch(batch)


async def queued_texts(embedder: MiniLMEmbedder, count: int) -> None:
    """Until exactly ``count`` texts wait for a model run."""

    async def probe() -> bool:
        return embedder.waiting == count

    await eventually(probe, what=f"{count} texts queued")


async def test_callers_queued_behind_a_run_share_the_next_runs_and_get_their_own_results(
    model: MiniLMEmbedder,
) -> None:
    shared = RecordingEmbedder(batch_size=8, parallel_runs=1)
    shared.gate.clear()  # the first caller's run holds the slot while the others queue
    first = asyncio.ensure_future(shared.embed(DOCUMENTS[0]))
    await asyncio.to_thread(shared.started.wait, 10)
    rest = [asyncio.ensure_future(shared.embed(texts)) for texts in DOCUMENTS[1:]]
    queued = sum(map(len, DOCUMENTS[1:]))  # 11 texts: one full batch and a part one
    await queued_texts(shared, queued)
    shared.gate.set()
    results = [await first, *await asyncio.gather(*rest)]

    assert [len(run) for run in shared.runs] == [2, 8, queued - 8]
    for texts, result in zip(DOCUMENTS, results, strict=True):
        alone = await model.embed(texts)
        assert result.vectors.shape == (len(texts), model.dimension)
        np.testing.assert_allclose(result.vectors, alone.vectors, atol=2e-3)
        assert result.token_counts == alone.token_counts
        assert result.tokens == alone.tokens


async def test_a_query_goes_ahead_of_queued_document_chunks() -> None:
    model = RecordingEmbedder(batch_size=4, parallel_runs=1)
    model.gate.clear()
    document = long_document(12)
    indexing = asyncio.ensure_future(model.embed(document))
    await asyncio.to_thread(model.started.wait, 10)
    query = asyncio.ensure_future(model.embed([QUERY]))
    await queued_texts(model, len(document) - 4 + 1)  # the document's rest and the query
    model.gate.set()
    await asyncio.gather(indexing, query)

    query_ids = model.tokenize([QUERY])[0]
    assert len(model.runs) == 4
    # the document's first run was already going; the query is in the very next one
    assert query_ids not in model.runs[0]
    assert query_ids in model.runs[1]


def long_document(count: int) -> list[str]:
    return [f"Chunk {i} of a long report on bridge tolls and river traffic." for i in range(count)]


LARGE = long_document(16)
MEMO = ["A short memo on ferry timetables.", "Its second paragraph."]


async def large_then_small(model: RecordingEmbedder) -> list[EmbeddingResult]:
    """A 16-chunk document asked for in slices of 4 (the first takes the only run slot, held
    at the gate, and the others queue), then a 2-chunk memo; the gate opens once all wait."""
    model.gate.clear()
    slices = [
        asyncio.ensure_future(model.embed(LARGE[i : i + 4], job_position=i + 4))
        for i in range(0, len(LARGE), 4)
    ]
    await asyncio.to_thread(model.started.wait, 10)
    # Each slice is tokenised in a thread: the memo is asked for once they all wait, so it is
    # the last to arrive (else which comes first is up to the threads).
    await queued_texts(model, 12)
    memo = asyncio.ensure_future(model.embed(MEMO, job_position=len(MEMO)))
    await queued_texts(model, 12 + 2)
    model.gate.set()
    return list(await asyncio.gather(*slices, memo))


async def test_a_small_documents_chunks_go_ahead_of_the_rest_of_a_large_one_queued_earlier() -> (
    None
):
    model = RecordingEmbedder(batch_size=4, parallel_runs=1)
    results = await large_then_small(model)

    memo_ids = model.tokenize(MEMO)
    assert len(model.runs) == 5  # 18 texts in batches of up to 4
    assert all(ids in model.runs[1] for ids in memo_ids)  # the very next run
    assert [len(r) for r in results] == [4, 4, 4, 4, 2]  # and the large one is all there
    assert sorted(map(tuple, (ids for run in model.runs for ids in run))) == sorted(
        map(tuple, model.tokenize(LARGE) + memo_ids)
    )


async def test_without_a_head_start_documents_keep_their_order() -> None:
    """What lets a small document overtake is the large one's allowance (``job_position``): a
    large job's later texts are due later, not put last."""
    model = RecordingEmbedder(batch_size=4, parallel_runs=1)
    model._scheduler(asyncio.get_running_loop()).DUE_SECONDS_PER_TEXT = 0.0
    await large_then_small(model)

    assert not any(ids in model.runs[1] for ids in model.tokenize(MEMO))
    assert all(ids in model.runs[-1] for ids in model.tokenize(MEMO))


async def test_a_cancelled_caller_loses_its_place() -> None:
    model = RecordingEmbedder(batch_size=4, parallel_runs=1)
    model.gate.clear()
    first = asyncio.ensure_future(model.embed(["holding the only run slot"]))
    await asyncio.to_thread(model.started.wait, 10)
    gone = asyncio.ensure_future(model.embed([f"never embedded {i}" for i in range(9)]))
    await queued_texts(model, 9)
    gone.cancel()
    kept = asyncio.ensure_future(model.embed(["still wanted"]))
    await queued_texts(model, 1)  # the cancelled caller's nine no longer count
    model.gate.set()
    await first
    assert len(await kept) == 1
    with pytest.raises(asyncio.CancelledError):
        await gone
    run_texts = [ids for run in model.runs for ids in run]
    assert len(run_texts) == 2


async def test_a_failing_run_fails_its_callers_and_the_next_run_works() -> None:
    model = RecordingEmbedder(batch_size=8, parallel_runs=1)
    model.failing_run = 1
    model.gate.clear()
    first = asyncio.ensure_future(model.embed(["first"]))
    await asyncio.to_thread(model.started.wait, 10)
    sharing = [asyncio.ensure_future(model.embed([text])) for text in ("second", "third")]
    await queued_texts(model, 2)
    model.gate.set()
    assert len(await first) == 1
    outcomes = await asyncio.gather(*sharing, return_exceptions=True)
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
    recovered = await model.embed(["fourth"])
    assert len(recovered) == 1


async def test_parallel_runs_default_to_the_cpus_the_process_may_use() -> None:
    import os

    assert MiniLMEmbedder(batch_size=8).parallel_runs == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="parallel_runs"):
        MiniLMEmbedder(parallel_runs=0)
