"""Retrieval benchmarks on the embedded stack, in one run: quality on a BEIR data set (SciFact
by default) through the API in three modes, then search latency.

    .venv/bin/python -m bench.retrieval                 # both (make eval runs --quality-only)
    .venv/bin/python -m bench.retrieval --quality-only --limit 500
    .venv/bin/python -m bench.retrieval --latency-only --data-dir /tmp/bench-kb   # reusable

Measured 2026-11-23 on 2 shared cores (`--latency-kb beir`, one run, ~35 min):
SciFact train (809 queries, 5,183 records → 12,390 chunks), nDCG@10 / recall@10 / MRR@10:
dense 0.678 / 0.815 / 0.642, BM25 0.691 / 0.813 / 0.658, hybrid 0.724 / 0.835 / 0.696.
Latency on 15,185 chunks (SciFact + the corpus documents), 789 queries: route through the
gateway p50 28.7 ms, p99 66.9 ms; bare in-process embedding + hybrid query p50 33.8 ms, p99
77.3 ms (the route adds nothing measurable); a repeated question (cached embedding) p50 22.3 ms.

`--latency-only`, 2026-11-24, on the 20,000+ chunk knowledge base (bench/retrieval/large_kb.py:
20,206 chunks, the 69 readable corpus documents + 1,478 SciFact records in 64-wordpiece chunks,
indexed in 17 min, then reused), 789 queries: route p50 38.7 ms, p99 66.9 ms; bare p50 17.4 ms,
p99 33.8 ms: the API adds 21.3 ms at p50 (goal <= 10 ms). Of the route, the gateway with
forward-auth takes 4.0 ms and the search service 31.7 ms (p50s, Traefik's access log), ~14 ms
over the same embedding and query done bare. Three other runs that day: +24.3 (a loaded
machine: bare p50 45.3 ms), +19.6, +17.8 ms.

The same, later that night on a quiet machine, after forward-auth reused its signed identity,
pooled connections stopped pinging on every checkout, the request-rate counter stopped starting
a thread per request, and a query's embedding took one thread trip: route p50 20.9 ms, p99
30.4 ms; bare p50 11.6 ms, p99 19.3 ms: the API adds 9.3 ms at p50 (a second run: 9.5 ms).
Gateway with forward-auth 2.1 ms; inside the service (Server-Timing, p50) knowledge base 1.2 ms,
embedding 7.4 ms, sparse 0.1 ms, store 4.6 ms.

`--quality-only` again on the final code, 2026-11-24: dense 0.678 / 0.815 / 0.642, BM25 0.691 /
0.813 / 0.658, hybrid 0.725 / 0.837 / 0.695 (5,183 records indexed in 575 s, 0 failed).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from pathlib import Path

import httpx

from bench.retrieval import latency, quality
from bench.retrieval.beir import SCIFACT, Dataset, Record, load
from bench.retrieval.large_kb import corpus_files, open_large_kb
from bench.retrieval.stack import Tenant, running_stack
from docuchat.stack import DevStack


def subset(dataset: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` judged queries and a corpus holding their relevant documents plus
    distractors up to ``limit`` records (for quick runs)."""
    if not limit:
        return dataset
    queries = dict(list(dataset.queries.items())[:limit])
    qrels = {q: dataset.qrels[q] for q in queries}
    wanted = {d for rel in qrels.values() for d in rel}
    corpus = [r for r in dataset.corpus if r.id in wanted]
    rest = [r for r in dataset.corpus if r.id not in wanted]
    corpus += random.Random(0).sample(rest, max(0, min(len(rest), limit - len(corpus))))
    return Dataset(corpus, queries, qrels)


async def run(
    stack: DevStack,
    dataset: Dataset,
    records: list[Record],
    *,
    quality_only: bool,
    latency_only: bool,
    latency_kb: str,
    documents: bool = True,
) -> list[str]:
    lines: list[str] = []
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=120) as client:
        kb_id = ""
        tenant: Tenant | None = None
        if not latency_only:
            tenant = await Tenant.register(client)
            kb_id, failed, seconds = await quality.ingest(tenant, dataset, "BEIR")
            scores = await quality.evaluate(tenant, kb_id, dataset)
            report = quality.QualityReport(len(dataset.corpus), failed, seconds, scores)
            lines += ["", "== retrieval quality (through the search API) ==", *report.lines()]
            print("\n".join(lines), flush=True)
            if quality_only:
                return lines
        if latency_kb == "large" or tenant is None:
            large = await open_large_kb(client, stack.data_dir, records)
            how = (
                "reused"
                if large.built_in_seconds is None
                else f"built in {large.built_in_seconds:.0f} s"
            )
            print(
                f"latency knowledge base: {large.chunks} chunks in {large.documents} documents"
                f" ({how})",
                flush=True,
            )
            tenant, searched = large.tenant, large.id
        else:  # the evaluation's knowledge base, with the corpus's documents added
            searched = kb_id
            if documents:
                await tenant.upload_files(searched, corpus_files())
            await tenant.wait_indexed(searched)
        queries = [*dataset.queries.values()]
        with tempfile.TemporaryDirectory() as copy:
            result = await latency.measure(
                tenant,
                searched,
                stack.data_dir / "vectors",
                Path(copy) / "shard",
                queries,
                stack.logs_dir / "access.log",
            )
        lat = ["", "== search latency ==", *result.lines()]
        print("\n".join(lat), flush=True)
        return lines + lat


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval")
    parser.add_argument("--dataset", type=Path, default=SCIFACT, help="a BEIR data set folder")
    parser.add_argument("--split", default="train", help="qrels split (qrels/<split>.tsv)")
    parser.add_argument("--limit", type=int, default=None, help="queries (and records) to use")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--quality-only", action="store_true", help="skip the latency part")
    only.add_argument(
        "--latency-only",
        action="store_true",
        help="skip the quality part: search latency on the 20,000+ chunk knowledge base",
    )
    parser.add_argument(
        "--latency-kb",
        choices=("large", "beir"),
        default="large",
        help="search latency on the 20,000+ chunk knowledge base (the corpus documents and "
        "SciFact records in 64-wordpiece chunks, bench/retrieval/large_kb.py), or on the "
        "evaluation's knowledge base plus the corpus documents (no second indexing)",
    )
    parser.add_argument(
        "--no-documents",
        action="store_true",
        help="with --latency-kb beir: leave the corpus documents out (quick runs)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the stack's data here; a directory holding the 20,000+ chunk knowledge base "
        "from an earlier run is reused instead of indexing it again",
    )
    args = parser.parse_args(argv)
    full = load(args.dataset, args.split)
    dataset = subset(full, args.limit)
    if args.data_dir:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    with running_stack(args.data_dir) as stack:
        asyncio.run(
            run(
                stack,
                dataset,
                full.corpus,
                quality_only=args.quality_only,
                latency_only=args.latency_only,
                latency_kb=args.latency_kb,
                documents=not args.no_documents,
            )
        )


if __name__ == "__main__":
    main()
