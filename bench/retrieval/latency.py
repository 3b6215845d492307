"""Search latency at 20,000+ chunks: the route through the gateway (forward-auth, the
service's knowledge-base lookup, one query embedding, the hybrid query) against the bare
in-process work (one query embedding with the same model + the same hybrid query on the same
shard), query by query, interleaved so both see the same machine load.

The shard belongs to the running service, so the bare side opens a copy of its directory
(taken once indexing is over); both sides then hold identical points. Every query text is sent
once per side, so the route's query-embedding cache never hits.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from bench.retrieval.gateway_log import AccessLog, GatewaySplit
from bench.retrieval.stack import Tenant
from docuchat_ingest.embedding.minilm import MiniLMEmbedder
from docuchat_ingest.embedding.sparse import SparseEncoder
from docuchat_ingest.vectorstore.edge_store import QdrantEdgeStore

TOP_K = 5  # a knowledge base's default top_k: what chat asks for
WARMUP = 20


@dataclass
class LatencyReport:
    chunks: int
    queries: int
    route_ms: list[float]
    bare_ms: list[float]
    cached_route_ms: list[float]
    gateway: GatewaySplit | None = None
    # The search service's own steps (its Server-Timing header), milliseconds per route call.
    steps: dict[str, list[float]] = field(default_factory=dict)

    @staticmethod
    def pct(values: Sequence[float], q: float) -> float:
        return float(np.percentile(np.asarray(values), q))

    def lines(self) -> list[str]:
        p50_route, p50_bare = self.pct(self.route_ms, 50), self.pct(self.bare_ms, 50)
        return [
            f"{self.chunks} chunks in the searched knowledge base, {self.queries} queries each",
            f"route via gateway  p50 {p50_route:6.1f} ms   p99 {self.pct(self.route_ms, 99):6.1f}"
            " ms   (an aiohttp client)",
            f"bare in-process    p50 {p50_bare:6.1f} ms   p99 {self.pct(self.bare_ms, 99):6.1f} ms"
            "   (query embedding + hybrid query)",
            f"API adds at p50    {p50_route - p50_bare:6.1f} ms   (goal <= 10 ms)",
            *(
                [
                    f"  the route at the gateway (access log): gateway and forward-auth p50 "
                    f"{self.gateway.overhead_p50_ms:.1f} ms, the search service p50 "
                    f"{self.gateway.origin_p50_ms:.1f} ms"
                ]
                if self.gateway
                else []
            ),
            *(
                [
                    "  inside the search service (Server-Timing) p50: "
                    + ", ".join(f"{k} {self.pct(v, 50):.1f} ms" for k, v in self.steps.items())
                    + f"; bare embedding + query here: {p50_bare:.1f} ms"
                ]
                if self.steps
                else []
            ),
            f"route, repeated question (embedding cached)  p50 "
            f"{self.pct(self.cached_route_ms, 50):6.1f} ms   p99 "
            f"{self.pct(self.cached_route_ms, 99):6.1f} ms",
        ]


async def measure(
    tenant: Tenant,
    kb_id: str,
    shard_dir: Path,
    copy_dir: Path,
    queries: Sequence[str],
    access_log: Path | None = None,
) -> LatencyReport:
    shutil.copytree(shard_dir, copy_dir)
    store = QdrantEdgeStore(copy_dir)
    await store.ensure_collection()
    embedder = MiniLMEmbedder()
    sparse = SparseEncoder()
    tenant_id, kb = uuid.UUID(tenant.id), uuid.UUID(kb_id)
    chunks = await store.count(tenant_id, kb)
    listed = await tenant.chunks(kb_id)
    if listed != chunks:
        raise AssertionError(f"the shard copy holds {chunks} chunks, the documents {listed}")

    async def bare(query: str) -> float:
        started = time.perf_counter()
        dense = (await embedder.embed([query])).vectors[0]
        await store.search_hybrid(tenant_id, kb, dense, sparse.encode_query(query), TOP_K)
        return (time.perf_counter() - started) * 1000

    steps: dict[str, list[float]] = {}

    # The route is timed with aiohttp's C-parsing client: httpx's own work per request (about
    # 1.5 ms here) is the client's cost, not the API's.
    lean = aiohttp.ClientSession(str(tenant.client.base_url))
    url = f"/api/v1/knowledge-bases/{kb_id}/search"

    async def route(query: str) -> float:
        while True:
            started = time.perf_counter()
            async with lean.post(
                url, json={"query": query, "top_k": TOP_K}, headers=tenant.headers
            ) as response:
                # the gateway's own 429s are plain text
                body = await response.json(content_type=None) if response.status != 429 else {}
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 429:
                break
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        assert response.status == 200, body
        assert len(body["hits"]) == TOP_K
        for step, ms in server_timing(response.headers.get("server-timing")).items():
            steps.setdefault(step, []).append(ms)
        return elapsed

    try:
        for query in queries[:WARMUP]:
            await route(query + " (warm-up)")
            await bare(query + " (warm-up)")
        log = AccessLog(access_log) if access_log else None
        if log:
            log.mark()
        route_ms, bare_ms = [], []
        steps.clear()  # the warm-up's do not count
        for i, query in enumerate(queries[WARMUP:]):
            # alternate which side goes first, so neither always follows the other
            if i % 2:
                route_ms.append(await route(query))
                bare_ms.append(await bare(query))
            else:
                bare_ms.append(await bare(query))
                route_ms.append(await route(query))
        gateway = log.split("POST", "/search") if log else None
        measured = {step: list(values) for step, values in steps.items()}
        cached = [await route(q) for q in queries[WARMUP:]]
    finally:
        await lean.close()
        await store.close()
    return LatencyReport(chunks, len(route_ms), route_ms, bare_ms, cached, gateway, measured)


def server_timing(header: str | None) -> dict[str, float]:
    """``name;dur=1.5, other;dur=2`` → {"name": 1.5, "other": 2.0}."""
    steps: dict[str, float] = {}
    for entry in (header or "").split(","):
        name, _, params = entry.strip().partition(";")
        if params.startswith("dur="):
            steps[name] = float(params.removeprefix("dur="))
    return steps
