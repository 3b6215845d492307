"""A BEIR-format data set (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) and the ranking
measures the retrieval benchmark reports: nDCG@k, recall@k and MRR (at k)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "retrieval" / "scifact"


@dataclass(frozen=True)
class Record:
    id: str
    title: str
    text: str

    @property
    def body(self) -> str:
        """What gets uploaded: the title on its own line, then the text."""
        return f"{self.title}\n\n{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Dataset:
    corpus: list[Record]
    queries: dict[str, str]  # only the queries that have judgements in the split
    qrels: dict[str, dict[str, int]]  # query id -> {corpus id: relevance}


def load(root: Path = SCIFACT, split: str = "train") -> Dataset:
    corpus = []
    with (root / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            corpus.append(Record(str(row["_id"]), row.get("title") or "", row.get("text") or ""))
    qrels: dict[str, dict[str, int]] = {}
    with (root / "qrels" / f"{split}.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {}
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return Dataset(corpus, queries, {q: qrels[q] for q in queries})


def ndcg(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    dcg = sum(
        (2 ** relevant.get(doc, 0) - 1) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k])
    )
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2**rel - 1) / math.log2(rank + 2) for rank, rel in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def mrr(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    for rank, doc in enumerate(ranked[:k]):
        if doc in relevant:
            return 1.0 / (rank + 1)
    return 0.0


def first_occurrences(documents: Sequence[str]) -> list[str]:
    """Chunk hits → documents, best first, each document once (its best chunk's rank)."""
    return list(dict.fromkeys(documents))


@dataclass(frozen=True)
class Scores:
    ndcg10: float
    recall10: float
    mrr10: float
    queries: int

    def row(self, name: str) -> str:
        return (
            f"{name:<8} nDCG@10 {self.ndcg10:.3f}   recall@10 {self.recall10:.3f}   "
            f"MRR@10 {self.mrr10:.3f}   ({self.queries} queries)"
        )


def score(runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> Scores:
    """Mean measures over the judged queries (a query missing from ``runs`` scores 0)."""
    n = len(qrels)
    return Scores(
        ndcg10=sum(ndcg(runs.get(q, []), rel) for q, rel in qrels.items()) / n,
        recall10=sum(recall(runs.get(q, []), rel) for q, rel in qrels.items()) / n,
        mrr10=sum(mrr(runs.get(q, []), rel) for q, rel in qrels.items()) / n,
        queries=n,
    )
