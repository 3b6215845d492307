"""Retrieval quality through the API: a BEIR corpus uploaded record by record (TXT documents),
its judged queries sent to the search route in each mode (dense only, BM25 only, hybrid),
chunk hits folded into documents, nDCG@10 / recall@10 / MRR@10 over the qrels.

    .venv/bin/python -m bench.retrieval --quality-only
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.retrieval.beir import Dataset, Scores, score
from bench.retrieval.stack import Tenant

MODES = ("dense", "sparse", "hybrid")
# Chunks asked per query: documents hold one to three chunks, so 20 chunks give at least the
# 10 documents nDCG@10 ranks.
TOP_K = 20


@dataclass
class QualityReport:
    documents: int
    failed: int
    ingest_seconds: float
    scores: dict[str, Scores]

    def lines(self) -> list[str]:
        out = [
            f"{self.documents} records uploaded as documents, {self.failed} failed, "
            f"indexed in {self.ingest_seconds:.0f} s"
        ]
        names = {"dense": "dense", "sparse": "BM25", "hybrid": "hybrid"}
        out += [self.scores[m].row(names[m]) for m in MODES if m in self.scores]
        return out


async def ingest(tenant: Tenant, dataset: Dataset, name: str = "BEIR") -> tuple[str, int, float]:
    started = time.perf_counter()
    kb_id = await tenant.knowledge_base(name)
    await tenant.upload(kb_id, dataset.corpus)
    failed = await tenant.wait_indexed(kb_id)
    return kb_id, failed, time.perf_counter() - started


async def evaluate(tenant: Tenant, kb_id: str, dataset: Dataset) -> dict[str, Scores]:
    results: dict[str, Scores] = {}
    for mode in MODES:
        runs = {
            qid: tenant.ranked_corpus_ids(await tenant.search(kb_id, text, TOP_K, mode))
            for qid, text in dataset.queries.items()
        }
        results[mode] = score(runs, dataset.qrels)
    return results
