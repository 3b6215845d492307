"""The one knowledge base of 20,000+ chunks that the latency benchmarks search (retrieval's
search latency, chat's time to first token): the corpus documents plus SciFact records, in
the smallest chunks a knowledge base allows.

Embedding work grows with the wordpieces embedded, not with the chunk count (the text is the
same in any chunk size, 2.2M wordpieces for all records plus the documents), so the fewest
wordpieces that reach 20,000 chunks are: 64-wordpiece chunks without overlap, every corpus
document (~9,000 chunks) and only as many records as the remainder needs (~1,600 of 5,183,
~1M wordpieces in all). The records judged relevant to some SciFact query come first, so
that every query's evidence is indexed (chat's questions find relevant passages). How many
records are needed is counted before uploading with the product's own parser and chunker.

A data directory that already holds the knowledge base (``bench-kb.json`` beside the stack's
data) is reused: the stack starts on the same PostgreSQL data, shard and blobs, and only the
chunk count is checked.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.retrieval.beir import SCIFACT, Record
from bench.retrieval.stack import BENCH_PLAN, Tenant
from docuchat_ingest.chunking import Chunker
from docuchat_ingest.parsing import parse_document
from docuchat_ingest.pipeline.indexer import chunk_inputs

DOCS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "docs"
TYPES = {".pdf", ".docx", ".md", ".txt"}
CHUNKS = {"chunk_size": 64, "chunk_overlap": 0}
MIN_CHUNKS = 20_000
# Records beyond the exact count: a few documents of the corpus may index differently on
# another version of a parser.
MARGIN = 200
STATE_FILE = "bench-kb.json"


def corpus_files() -> list[Path]:
    """The corpus's readable documents (not the encrypted or malformed ones)."""
    return sorted(
        p
        for p in DOCS.rglob("*")
        if p.suffix in TYPES and not {"encrypted", "malformed"} & set(p.parts)
    )


def judged_ids(root: Path = SCIFACT) -> set[str]:
    """Records judged relevant to some query, in any split."""
    ids: set[str] = set()
    for split in (root / "qrels").glob("*.tsv"):
        with split.open(encoding="utf-8") as f:
            next(f)
            ids |= {line.split("\t")[1] for line in f if line.strip()}
    return ids


def record_chunks(records: Sequence[Record]) -> list[tuple[Record, int]]:
    """The judged records first, then the others in corpus order, each with the chunks the
    worker will make of it uploaded as TXT (the same parser and chunker)."""
    chunker = Chunker(max_tokens=CHUNKS["chunk_size"], overlap_tokens=CHUNKS["chunk_overlap"])
    judged = judged_ids()
    ordered = [r for r in records if r.id in judged] + [r for r in records if r.id not in judged]
    counted = []
    for record in ordered:
        parsed = parse_document(
            record.body.encode(),
            filename=f"{record.id}.txt",
            media_type="text/plain",
            max_pages=500,
        )
        counted.append((record, len(chunker.chunk(chunk_inputs(parsed)))))
    return counted


def records_needed(counted: Sequence[tuple[Record, int]], have: int) -> list[Record]:
    """The first records whose chunks, added to ``have``, reach MIN_CHUNKS + MARGIN."""
    chosen = []
    for record, chunks in counted:
        if have >= MIN_CHUNKS + MARGIN:
            break
        chosen.append(record)
        have += chunks
    return chosen


@dataclass(frozen=True)
class Saved:
    """What a later run needs to use the knowledge base again."""

    tenant_id: str
    email: str
    password: str
    knowledge_base_id: str


@dataclass
class LargeKnowledgeBase:
    tenant: Tenant
    id: str
    chunks: int
    documents: int
    built_in_seconds: float | None  # None: reused


async def _reuse(client: httpx.AsyncClient, saved: Saved) -> Tenant:
    """The saved tenant with a new API key, and its plan state published again: the embedded
    broker forgot it, and the quota guards would otherwise enforce no plan at all (unlike
    after a fresh build)."""
    login = await client.post(
        "/api/v1/auth/login", json={"email": saved.email, "password": saved.password}
    )
    login.raise_for_status()
    owner = {"Authorization": f"Bearer {login.json()['access_token']}"}
    plan = await client.put("/api/v1/usage/plan", json={"plan": BENCH_PLAN}, headers=owner)
    plan.raise_for_status()
    return await Tenant.with_api_key(client, owner, saved.tenant_id)


async def open_large_kb(
    client: httpx.AsyncClient, data_dir: Path, records: Sequence[Record]
) -> LargeKnowledgeBase:
    """The knowledge base saved in ``data_dir``, or a new one built there."""
    state = data_dir / STATE_FILE
    if state.exists():
        saved = Saved(**json.loads(state.read_text()))
        tenant = await _reuse(client, saved)
        kb_id = saved.knowledge_base_id
        documents, chunks = await tenant.census(kb_id)
        return LargeKnowledgeBase(tenant, kb_id, chunks, documents, None)

    started = time.perf_counter()
    email, password = f"bench-{uuid.uuid4().hex[:6]}@example.com", "correct horse battery staple"
    tenant = await Tenant.register(client, email=email, password=password)
    kb_id = await tenant.knowledge_base("latency, 20,000+ chunks", **CHUNKS)
    files = corpus_files()
    await tenant.upload_files(kb_id, files)
    # The records' chunks are counted while the documents index.
    counted = await asyncio.to_thread(record_chunks, records)
    await tenant.wait_indexed(kb_id)
    have = await tenant.chunks(kb_id)
    await tenant.upload(kb_id, records_needed(counted, have))
    failed = await tenant.wait_indexed(kb_id)
    documents, chunks = await tenant.census(kb_id)
    if chunks < MIN_CHUNKS:
        raise AssertionError(f"only {chunks} chunks indexed ({failed} documents failed)")
    saved = Saved(tenant.id, email, password, kb_id)
    state.write_text(json.dumps(asdict(saved), indent=2))
    return LargeKnowledgeBase(tenant, kb_id, chunks, documents, time.perf_counter() - started)
