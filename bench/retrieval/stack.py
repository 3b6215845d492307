"""The product on the embedded stack for the retrieval benchmarks: an owner on the bench plan
(enterprise without a request rate), BEIR records uploaded as TXT documents through the
gateway, searches through it."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.retrieval.beir import Record
from docuchat.devstack import free_port
from docuchat.stack import DevStack, StackConfig

KB = "/api/v1/knowledge-bases"
GATEWAY_LIMITS_OFF = {
    "DOCUCHAT_GATEWAY_IP_RATE": "100000",
    "DOCUCHAT_GATEWAY_IP_BURST": "100000",
    "DOCUCHAT_GATEWAY_TENANT_RATE": "100000",
    "DOCUCHAT_GATEWAY_TENANT_BURST": "100000",
}
UPLOADS_IN_FLIGHT = 8


@contextlib.contextmanager
def running_stack(
    data_dir: Path | None = None, extra_env: Mapping[str, str] | None = None
) -> Iterator[DevStack]:
    """An all-in-one stack on free ports, its data in ``data_dir`` (kept: a later run starts on
    the same database, shard and blobs) or in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = DevStack(
            StackConfig(
                data_dir=data_dir or Path(tmp),
                gateway_port=free_port(),
                postgres_port=None,
                kafka_port=None,
                base_service_port=0,
                ready_timeout=180,
                # The gateway's abuse limits (per IP and per tenant) would space a bench's
                # back-to-back requests; the bench measures the API, not them.
                extra_env={**GATEWAY_LIMITS_OFF, **(extra_env or {})},
            )
        )
        stack.start()  # synchronous: the supervisor owns its children from this thread
        try:
            asyncio.run(ensure_bench_plan(stack))
            yield stack
        finally:
            stack.stop()


# The benches' tenants are on this plan: enterprise's limits without a request rate (3,000 a
# minute would cut a load test short). Plans are data: an operator adds one with SQL, as here.
BENCH_PLAN = "bench"


async def ensure_bench_plan(stack: DevStack) -> None:
    import asyncpg

    url = stack.postgres.async_url("docuchat_usage").replace("postgresql+asyncpg", "postgresql")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            INSERT INTO plans (id, name, description, position, daily_tokens, monthly_tokens,
                documents, storage_bytes, knowledge_bases, max_file_bytes, requests_per_minute,
                allowed_models)
            SELECT $1, 'Benchmark', 'Enterprise without a request rate', position + 1,
                daily_tokens, monthly_tokens, documents, storage_bytes, knowledge_bases,
                max_file_bytes, NULL, allowed_models
            FROM plans WHERE id = 'enterprise'
            ON CONFLICT (id) DO NOTHING
            """,
            BENCH_PLAN,
        )
    finally:
        await conn.close()


@dataclass
class Tenant:
    client: httpx.AsyncClient
    headers: dict[str, str]
    id: str
    # document id -> the corpus ids uploaded as it (a duplicate upload maps to the first)
    corpus_ids: dict[str, list[str]] = field(default_factory=dict)
    last_server_timing: str | None = None  # of the last search: the service's own steps

    @classmethod
    async def register(
        cls,
        client: httpx.AsyncClient,
        *,
        email: str | None = None,
        password: str = "correct horse battery staple",
    ) -> Tenant:
        owner = (
            await client.post(
                "/api/v1/auth/register",
                json={
                    "email": email or f"bench-{uuid.uuid4().hex[:6]}@example.com",
                    "password": password,
                    "tenant_name": "Retrieval bench",
                },
            )
        ).json()
        headers = {"Authorization": f"Bearer {owner['access_token']}"}
        # No plan limits in the way of a benchmark (tenant.created reaches usage first).
        for _ in range(300):
            plan = await client.put(
                "/api/v1/usage/plan", json={"plan": BENCH_PLAN}, headers=headers
            )
            if plan.status_code == 200:
                break
            await asyncio.sleep(0.2)
        return await cls.with_api_key(client, headers, owner["tenant"]["id"])

    @classmethod
    async def with_api_key(
        cls, client: httpx.AsyncClient, owner: dict[str, str], tenant_id: str
    ) -> Tenant:
        """The tenant acting through a new API key of its owner's: a key outlives the
        15-minute access token over a long ingestion or benchmark."""
        key = await client.post(
            "/api/v1/api-keys",
            json={"name": "bench", "scopes": ["read", "write", "chat"]},
            headers=owner,
        )
        key.raise_for_status()
        return cls(client, {"Authorization": f"Bearer {key.json()['key']}"}, tenant_id)

    async def knowledge_base(self, name: str, **settings: Any) -> str:
        body: dict[str, Any] = {"name": name}
        if settings:
            body["settings"] = settings
        created = await self.client.post(KB, json=body, headers=self.headers)
        created.raise_for_status()
        kb_id: str = created.json()["id"]
        return kb_id

    async def upload(self, kb_id: str, records: Sequence[Record]) -> None:
        """Every record as a TXT document (title line + text), a few uploads in flight."""
        queue: asyncio.Queue[Record] = asyncio.Queue()
        for record in records:
            queue.put_nowait(record)

        async def uploader() -> None:
            while not queue.empty():
                record = queue.get_nowait()
                while True:
                    r = await self.client.post(
                        f"{KB}/{kb_id}/documents",
                        files={"file": (f"{record.id}.txt", record.body.encode(), "text/plain")},
                        headers=self.headers,
                    )
                    if r.status_code == 429:
                        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    r.raise_for_status()
                    self.corpus_ids.setdefault(r.json()["id"], []).append(record.id)
                    break

        await asyncio.gather(*(uploader() for _ in range(UPLOADS_IN_FLIGHT)))

    async def upload_files(self, kb_id: str, paths: Sequence[Path]) -> int:
        """Files as they are (the service detects their type); how many were accepted."""
        accepted = 0
        for path in paths:
            r = await self.client.post(
                f"{KB}/{kb_id}/documents",
                files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
                headers=self.headers,
            )
            accepted += r.status_code in (200, 202)
        return accepted

    async def wait_indexed(self, kb_id: str) -> int:
        """Until nothing in the knowledge base is queued or processing (an hour at most);
        how many failed."""
        for _ in range(1800):
            pending = 0
            for status in ("queued", "processing"):
                r = await self.client.get(
                    f"{KB}/{kb_id}/documents",
                    params={"status": status, "limit": 1},
                    headers=self.headers,
                )
                r.raise_for_status()
                pending += len(r.json()["items"])
            if not pending:
                failed = await self.client.get(
                    f"{KB}/{kb_id}/documents",
                    params={"status": "failed", "limit": 100},
                    headers=self.headers,
                )
                return len(failed.json()["items"])
            await asyncio.sleep(2)
        raise TimeoutError("documents still pending")

    async def chunks(self, kb_id: str) -> int:
        """The chunks of the knowledge base's documents, as the documents API counts them."""
        return (await self.census(kb_id))[1]

    async def census(self, kb_id: str) -> tuple[int, int]:
        """The knowledge base's documents and their chunks, as the documents API counts them."""
        documents, total, cursor = 0, 0, None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            r = await self.client.get(
                f"{KB}/{kb_id}/documents", params=params, headers=self.headers
            )
            r.raise_for_status()
            page = r.json()
            documents += len(page["items"])
            total += sum(d["chunks"] or 0 for d in page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return documents, total

    async def search(
        self, kb_id: str, query: str, top_k: int, mode: str = "hybrid"
    ) -> list[dict[str, Any]]:
        while True:
            r = await self.client.post(
                f"{KB}/{kb_id}/search",
                params={"mode": mode},
                json={"query": query, "top_k": top_k},
                headers=self.headers,
            )
            if r.status_code == 429:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
                continue
            r.raise_for_status()
            self.last_server_timing = r.headers.get("server-timing")
            hits: list[dict[str, Any]] = r.json()["hits"]
            return hits

    def ranked_corpus_ids(self, hits: Sequence[dict[str, Any]]) -> list[str]:
        ranked: list[str] = []
        for hit in hits:
            ranked += self.corpus_ids.get(hit["document_id"], [])
        return list(dict.fromkeys(ranked))
