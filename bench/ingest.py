"""Ingestion throughput, measured in one run: the corpus's text PDFs and DOCX files uploaded
through the gateway until all are indexed (or failed), against embedding the very same chunk
texts in-process with the same model. Goal: end-to-end time ÷ embedding-only time ≤ 1.3.

    .venv/bin/python -m bench.ingest
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bench.owner import register_owner
from docuchat.devstack import free_port
from docuchat.stack import DevStack, StackConfig
from docuchat_ingest.chunking import Chunker
from docuchat_ingest.embedding.minilm import MiniLMEmbedder, available_cpus
from docuchat_ingest.parsing import ParseError, parse_document
from docuchat_ingest.pipeline.indexer import chunk_inputs

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "docs"
TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


# A browser uploads a few files at once (and so does the bench by default).
UPLOADS_AT_ONCE = 4


def corpus_files() -> list[Path]:
    return sorted((CORPUS / "pdf" / "text").glob("*.pdf")) + sorted(
        (CORPUS / "docx").glob("*.docx")
    )


def stack_cpu_seconds(stack: DevStack) -> dict[str, float]:
    """CPU time used so far by each part of the stack: the service processes, their children
    (the parser), PostgreSQL and its backends, the broker, the gateway."""
    roots = {name: p.pid for name, p in stack.processes.items()}
    roots |= {
        "postgres": stack.postgres.pid,
        "broker": stack.broker.pid,
        "gateway": stack.gateway.pid,
    }
    seen: set[int] = set()
    parts: dict[str, float] = {}
    for name, pid in roots.items():
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in family:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            part = name if proc is root or name in ("postgres", "broker", "gateway") else "parser"
            parts[part] = parts.get(part, 0.0) + (
                times.user + times.system + times.children_user + times.children_system
            )
    return parts


MODEL_METRICS = (
    "docuchat_embedding_model_seconds",
    "docuchat_embedding_model_cpu_seconds",
    "docuchat_embedding_model_tokens",
    "docuchat_embedding_model_input_tokens",
    "docuchat_embedding_model_batches",
    "docuchat_embedding_model_texts",
)


def model_totals(exposition: str) -> dict[str, float]:
    """The embedding model's counters (wall and CPU seconds, wordpieces, positions fed with
    padding) summed over their labels, from a Prometheus exposition."""
    totals = dict.fromkeys(MODEL_METRICS, 0.0)
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            name = sample.name.removesuffix("_total")
            if name in totals:
                totals[name] += sample.value
    return totals


def model_seconds(stack: DevStack) -> dict[str, float]:
    """The ingest worker's embedding model so far (its metrics)."""
    return model_totals(httpx.get(f"{stack.service_url('ingest')}/metrics", timeout=10).text)


def batching(before: dict[str, float], after: dict[str, float]) -> str:
    """How the model was fed between two readings: texts per batch, and the share of the
    positions fed that were padding."""

    def grown(name: str) -> float:
        return (
            after[f"docuchat_embedding_model_{name}"] - before[f"docuchat_embedding_model_{name}"]
        )

    fed, real, batches = grown("input_tokens"), grown("tokens"), grown("batches")
    per_batch = grown("texts") / batches if batches else 0.0
    return f"{per_batch:.1f} texts per batch, {(fed - real) / fed if fed else 0.0:.0%} padding"


@dataclass(frozen=True)
class EndToEnd:
    """One end-to-end run: its time, what it indexed, the CPU each part of the stack (and this
    client) used, the model's share, and the worker's memory."""

    seconds: float
    documents: int
    pages: int
    chunks: int
    cpu: dict[str, float]  # per part of the stack
    client_cpu: float
    model_seconds: float  # wall time of the model's runs, summed over its run slots
    model_cpu: float
    model_batching: str
    rss_mib: float
    parser_rss_mib: list[float]


def end_to_end(files: list[Path], uploads_at_once: int) -> EndToEnd:
    with tempfile.TemporaryDirectory() as tmp:
        stack = DevStack(
            StackConfig(
                data_dir=Path(tmp),
                gateway_port=free_port(),
                postgres_port=None,
                kafka_port=None,
                base_service_port=0,
            )
        )
        stack.start()  # synchronous: the supervisor owns its children from this thread
        try:
            cpu_before, model_before = stack_cpu_seconds(stack), model_seconds(stack)
            client_before = time.process_time()
            elapsed, docs = asyncio.run(upload_all(stack, files, uploads_at_once))
            client_cpu = time.process_time() - client_before
            cpu_after, model_after = stack_cpu_seconds(stack), model_seconds(stack)
            cpu = {part: cpu_after[part] - cpu_before.get(part, 0.0) for part in cpu_after}
            worker = psutil.Process(stack.processes["all"].pid)
            rss = worker.memory_info().rss / 2**20
            parser_rss = [c.memory_info().rss / 2**20 for c in worker.children(recursive=True)]
        finally:
            stack.stop()
    indexed = [d for d in docs if d["status"] == "indexed"]
    for failed in (d for d in docs if d["status"] != "indexed"):
        error = failed.get("error") or {}
        print(f"  not indexed: {failed['filename']}: {error.get('code')}")
    return EndToEnd(
        seconds=elapsed,
        documents=len(indexed),
        pages=sum(d["pages"] or 0 for d in indexed),
        chunks=sum(d["chunks"] or 0 for d in indexed),
        cpu=cpu,
        client_cpu=client_cpu,
        model_seconds=model_after["docuchat_embedding_model_seconds"]
        - model_before["docuchat_embedding_model_seconds"],
        model_cpu=model_after["docuchat_embedding_model_cpu_seconds"]
        - model_before["docuchat_embedding_model_cpu_seconds"],
        model_batching=batching(model_before, model_after),
        rss_mib=rss,
        parser_rss_mib=parser_rss,
    )


async def upload_all(
    stack: DevStack, files: list[Path], uploads_at_once: int
) -> tuple[float, list[dict[str, Any]]]:
    contents = {path: path.read_bytes() for path in files}
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as client:
        headers, kb = await register_owner(client, "Bench")
        # Upgrade so plan limits do not interfere with a throughput measurement.
        upgraded = await client.put(
            "/api/v1/usage/plan", json={"plan": "enterprise"}, headers=headers
        )
        assert upgraded.status_code == 200, upgraded.text
        started = time.perf_counter()
        refused = 0
        uploads = asyncio.Semaphore(uploads_at_once)

        async def upload(path: Path) -> str | None:
            nonlocal refused
            async with uploads:
                while True:
                    r = await client.post(
                        f"/api/v1/knowledge-bases/{kb}/documents",
                        files={"file": (path.name, contents[path], TYPES[path.suffix])},
                        headers=headers,
                    )
                    # The upgrade reaches ingest through quota.changed, a moment after the PUT:
                    # until then the free plan's requests per minute apply. A client waits as
                    # told.
                    if r.status_code != 429:
                        break
                    refused += 1
                    await asyncio.sleep(float(r.headers.get("retry-after", "1")))
            return str(r.json()["id"]) if r.status_code in (200, 202) else None

        ids = [i for i in await asyncio.gather(*map(upload, files)) if i is not None]
        print(f"  uploads done after {time.perf_counter() - started:.1f} s")
        if refused:
            print(f"  {refused} uploads refused with 429 before the plan upgrade arrived")
        # One list request every quarter second, as a dashboard would (a GET per document every half
        # second costs the stack more CPU than some of the documents do).
        wanted = set(ids)
        while True:
            listed = await client.get(
                f"/api/v1/knowledge-bases/{kb}/documents", params={"limit": 100}, headers=headers
            )
            docs = [d for d in listed.json()["items"] if d["id"] in wanted]
            if len(docs) == len(wanted) and all(d["status"] in ("indexed", "failed") for d in docs):
                break
            await asyncio.sleep(0.25)
        return time.perf_counter() - started, docs


async def embedding_only(
    files: list[Path], model_runs: int | None, model_batch: int | None = None
) -> tuple[float, int, float, str]:
    chunker = Chunker(max_tokens=200, overlap_tokens=40)
    texts: list[str] = []
    for path in files:
        try:
            parsed = parse_document(
                path.read_bytes(), filename=path.name, media_type=TYPES[path.suffix]
            )
        except ParseError:
            continue
        texts += [c.embedding_text for c in chunker.chunk(chunk_inputs(parsed))]
    embedder = MiniLMEmbedder(parallel_runs=model_runs, batch_size=model_batch)
    await embedder.embed(texts[:8])  # load the model outside the timing
    counters = model_totals(generate_latest().decode())
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), 64):
        await embedder.embed(texts[i : i + 64])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    fed = batching(counters, model_totals(generate_latest().decode()))
    return elapsed, len(texts), cpu, fed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-runs", type=int, default=None)
    parser.add_argument("--model-batch", type=int, default=None, help="texts per model run")
    parser.add_argument("--parse-processes", type=int, default=None)
    # This machine's speed drifts by tens of percent within minutes: each round measures both
    # sides back to back, and the median round is the figure.
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uploads-at-once", type=int, default=UPLOADS_AT_ONCE)
    args = parser.parse_args()
    model_runs = args.model_runs
    if args.parse_processes is not None:
        os.environ["DOCUCHAT_INGEST_PARSE_PROCESSES"] = str(args.parse_processes)
    if model_runs is not None:
        # The stack's processes inherit this environment.
        os.environ["DOCUCHAT_INGEST_EMBEDDING_PARALLEL_RUNS"] = str(model_runs)
    if args.model_batch is not None:
        os.environ["DOCUCHAT_INGEST_EMBEDDING_BATCH_SIZE"] = str(args.model_batch)
    files = corpus_files()
    cores = available_cpus()
    runs = model_runs or cores
    print(f"model runs at once: {runs} (both sides); {len(files)} files")
    ratios: list[float] = []
    for round_number in range(1, args.rounds + 1):
        # Embedding only, before and after the end-to-end run (A-B-A): their mean cancels a
        # drift of the machine's speed across the round.
        before = asyncio.run(embedding_only(files, model_runs, args.model_batch))
        run = end_to_end(files, args.uploads_at_once)
        e2e, pages, chunks, model_cpu = run.seconds, run.pages, run.chunks, run.model_cpu
        e2e_cpu = sum(run.cpu.values())
        after = asyncio.run(embedding_only(files, model_runs, args.model_batch))
        embed, embed_cpu = (before[0] + after[0]) / 2, (before[2] + after[2]) / 2
        embedded_chunks = after[1]
        ratios.append(e2e / embed)
        print(f"round {round_number}: {run.documents} indexed, {pages} pages, {chunks} chunks")
        print(
            f"  end to end     {e2e:6.1f} s  {pages / e2e:5.1f} pages/s"
            f"  {chunks / e2e:5.1f} chunks/s"
        )
        print(
            f"  embedding only {embed:6.1f} s  ({embedded_chunks} chunks, same model, in-process;"
            f" {before[0]:.1f} s before and {after[0]:.1f} s after the end-to-end run)"
        )
        print(f"  ratio end-to-end / embedding-only: {e2e / embed:.2f}")
        # Wall time swings with whatever else the machine runs; CPU seconds much less so.
        print(
            f"  CPU seconds: whole stack {e2e_cpu:.1f} vs embedding {embed_cpu:.1f}"
            f" = {e2e_cpu / embed_cpu:.2f}; of which "
            + ", ".join(
                f"{part} {cpu:.1f}" for part, cpu in sorted(run.cpu.items(), key=lambda i: -i[1])
            )
        )
        print(
            f"  the model inside the stack: {model_cpu:.1f} CPU s"
            f" ({run.model_seconds:.1f} s of runs, {run.model_seconds / e2e:.2f} of {runs} run"
            f" slots busy; {run.model_batching}; in-process {after[3]});"
            f" the stack's CPU / its model's CPU: {e2e_cpu / model_cpu:.2f}"
        )
        # Near 100%, the end-to-end time is the CPU everything needs over the cores: the model
        # can only get more of them if the rest of the pipeline takes less.
        print(
            f"  the machine was busy {(e2e_cpu + run.client_cpu) / (cores * e2e):.0%} of the"
            f" end-to-end time: the stack's {e2e_cpu:.1f} and this client's {run.client_cpu:.1f}"
            f" CPU s over {cores} cores; the stack's CPU outside its model:"
            f" {e2e_cpu - model_cpu:.1f} s ({(e2e_cpu - model_cpu) / model_cpu:.0%} of the model's)"
        )
        print(
            f"  all-in-one process RSS {run.rss_mib:.0f} MiB; its parser processes "
            + " + ".join(f"{r:.0f}" for r in run.parser_rss_mib)
            + " MiB"
        )
    ordered = sorted(ratios)
    print(
        f"ratio end-to-end / embedding-only, median of {len(ratios)} rounds:"
        f" {ordered[len(ordered) // 2]:.2f} (goal <= 1.3; rounds "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + ")"
    )


if __name__ == "__main__":
    main()
