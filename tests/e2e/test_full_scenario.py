"""The whole product through the gateway, all-in-one and split (each target its own process):
register → upload → indexed, with progress on SSE → search → a streamed, cited answer → /usage
shows the tokens → the quota runs out → 429 → plan upgrade → chat works again → the tenant is
deleted → its data is gone from every service."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from docuchat.stack import DevStack
from tests.e2e.database import sql
from tests.helpers import eventually

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PDF = CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf"
QUESTION = "What does the DMCA say about distance education?"
PAGE = 15
PASSWORD = "correct horse battery staple"
# A plan is data: one whose day allows no LLM tokens, for the quota to be spent at once (the
# stack answers extractively, which runs no model and spends none; embedding tokens are metered
# but not counted against the token limits).
TINY_PLAN = """
INSERT INTO plans (id, name, description, position, daily_tokens, monthly_tokens, documents,
                   storage_bytes, knowledge_bases, max_file_bytes, requests_per_minute,
                   allowed_models)
SELECT 'tiny-e2e', 'Tiny (e2e)', 'no tokens a day', 99, 0, monthly_tokens, documents,
       storage_bytes, knowledge_bases, max_file_bytes, requests_per_minute, allowed_models
FROM plans WHERE id = 'free'
ON CONFLICT (id) DO NOTHING
"""


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "" and data:
            yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())


async def test_register_upload_search_chat_meter_limit_upgrade_and_delete(
    stack: DevStack, gateway: httpx.AsyncClient
) -> None:
    registered = await gateway.post(
        "/api/v1/auth/register",
        json={
            "email": f"scenario-{uuid.uuid4().hex[:8]}@example.com",
            "password": PASSWORD,
            "tenant_name": "Scenario",
        },
    )
    assert registered.status_code == 201, registered.text
    tenant = registered.json()["tenant"]["id"]
    headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}

    async def default_kb() -> str | None:
        listed = await gateway.get("/api/v1/knowledge-bases", headers=headers)
        return next((kb["id"] for kb in listed.json().get("items", []) if kb["is_default"]), None)

    kb_id = await eventually(default_kb, what="the default knowledge base")

    # --- upload, and watch it being indexed ------------------------------------------------
    uploaded = await gateway.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (PDF.name, PDF.read_bytes(), "application/pdf")},
        headers=headers,
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id = uploaded.json()["id"]
    seen: list[dict[str, Any]] = []
    async with gateway.stream(
        "GET", f"/api/v1/documents/{document_id}/events", headers=headers, timeout=180
    ) as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        async for kind, data in sse(events):
            seen.append(data)
            if kind == "done":
                break
    assert seen[-1]["status"] == "indexed", seen[-1]
    progress = [d["progress"] for d in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress), "no progress in between"

    # --- search -----------------------------------------------------------------------------
    found = await gateway.post(
        f"/api/v1/knowledge-bases/{kb_id}/search", json={"query": QUESTION}, headers=headers
    )
    assert found.status_code == 200, found.text
    hits = found.json()["hits"]
    assert hits and all(h["document_id"] == document_id for h in hits)
    assert any(h["page"] <= PAGE <= (h.get("page_end") or h["page"]) for h in hits[:5])

    # --- a streamed, cited answer -----------------------------------------------------------
    session = await gateway.post(
        "/api/v1/sessions", json={"knowledge_base_id": kb_id}, headers=headers
    )
    assert session.status_code == 201, session.text
    ask = f"/api/v1/sessions/{session.json()['id']}/messages"
    async with gateway.stream(
        "POST", ask, json={"content": QUESTION, "stream": True}, headers=headers
    ) as answer:
        assert answer.status_code == 200
        streamed = [(kind, data) async for kind, data in sse(answer)]
    kinds = [kind for kind, _ in streamed]
    assert "token" in kinds and kinds[-2:] == ["citations", "done"], kinds
    citations = streamed[-2][1]
    assert any(c["document_id"] == document_id for c in citations)

    # --- metered ------------------------------------------------------------------------------
    async def tokens_shown() -> dict[str, Any] | None:
        report: dict[str, Any] = (await gateway.get("/api/v1/usage", headers=headers)).json()
        # tokens.consumed and document.indexed travel on different topics: wait for both
        metered = report["tokens"]["embedding"] > 0 and report["documents"]["count"] == 1
        return report if metered else None

    report = await eventually(tokens_shown, what="the embedding tokens and the document in /usage")
    assert report["tokens"]["total"] >= report["tokens"]["embedding"]

    # --- the quota runs out, then an upgrade lifts it ---------------------------------------
    await sql(stack, "docuchat_usage", TINY_PLAN)
    tiny = await gateway.put("/api/v1/usage/plan", json={"plan": "tiny-e2e"}, headers=headers)
    assert tiny.status_code == 200, tiny.text

    async def refused() -> httpx.Response | None:
        r = await gateway.post(ask, json={"content": QUESTION}, headers=headers)
        return r if r.status_code == 429 else None

    refusal = await eventually(refused, what="chat to refuse the spent tenant")
    assert refusal.json()["code"] == "quota_exceeded"
    assert refusal.headers["content-type"].startswith("application/problem+json")
    assert int(refusal.headers["retry-after"]) >= 1

    pro = await gateway.put("/api/v1/usage/plan", json={"plan": "pro"}, headers=headers)
    assert pro.status_code == 200, pro.text

    async def answered() -> httpx.Response | None:
        r = await gateway.post(ask, json={"content": QUESTION}, headers=headers)
        return r if r.status_code == 201 else None

    again = await eventually(answered, what="chat to answer after the upgrade")
    assert again.json()["citations"]

    # --- delete the tenant: gone everywhere ---------------------------------------------------
    deleted = await gateway.delete("/api/v1/tenant", headers=headers)
    assert deleted.status_code == 204, deleted.text
    login = await gateway.post(
        "/api/v1/auth/login",
        json={"email": registered.json()["user"]["email"], "password": PASSWORD},
    )
    assert login.status_code == 401

    tenant_id = uuid.UUID(tenant)
    leftovers = {
        "docuchat_ingest": ["knowledge_bases", "documents"],
        "docuchat_chat": ["sessions", "messages"],
        "docuchat_usage": ["subscriptions", "usage_buckets", "tenant_period_usage"],
    }

    async def purged() -> bool:
        for database, tables in leftovers.items():
            for table in tables:
                rows = await sql(
                    stack,
                    database,
                    f"SELECT 1 FROM {table} WHERE tenant_id = $1 LIMIT 1",
                    tenant_id,
                )
                if rows:
                    return False
        return not (stack.data_dir / "blobs" / tenant).exists()

    await eventually(purged, timeout=60, what="every service to purge the tenant")
    # The vector store too: the knowledge base is gone, and so are its chunks.
    gone = await gateway.post(
        f"/api/v1/knowledge-bases/{kb_id}/search", json={"query": QUESTION}, headers=headers
    )
    assert gone.status_code in (401, 404), gone.text
