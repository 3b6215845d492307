"""Register, upload, ask through the gateway (all-in-one and split): the answer streams with a
citation of the uploaded document's page, over SSE and over a WebSocket. The stack has no
model: chat's default provider answers extractively from the cited passages."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from httpx_ws import aconnect_ws

from docuchat.stack import DevStack
from tests.helpers import eventually

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PASSWORD = "correct horse battery staple"
QUESTION = "What does the DMCA say about distance education?"
PAGE = 15


async def _owner(gateway: httpx.AsyncClient) -> dict[str, str]:
    registered = await gateway.post(
        "/api/v1/auth/register",
        json={
            "email": f"chat-{uuid.uuid4().hex[:8]}@example.com",
            "password": PASSWORD,
            "tenant_name": "Chat",
        },
    )
    assert registered.status_code == 201, registered.text
    return {"Authorization": f"Bearer {registered.json()['access_token']}"}


async def _indexed_kb(gateway: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    async def default_kb() -> str | None:
        items = (
            (await gateway.get("/api/v1/knowledge-bases", headers=headers)).json().get("items", [])
        )
        return next((kb["id"] for kb in items if kb["is_default"]), None)

    kb_id = await eventually(default_kb, what="the default knowledge base")
    pdf = CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf"
    uploaded = await gateway.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (pdf.name, pdf.read_bytes(), "application/pdf")},
        headers=headers,
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id: str = uploaded.json()["id"]

    async def indexed() -> bool:
        got = await gateway.get(f"/api/v1/documents/{document_id}", headers=headers)
        assert got.json()["status"] != "failed", got.text
        return bool(got.json()["status"] == "indexed")

    await eventually(indexed, timeout=120, what="the document to be indexed")
    return kb_id, document_id


def _assert_cites_the_page(citations: list[dict[str, Any]], document_id: str) -> None:
    assert citations, "no citation"
    assert all(c["document_id"] == document_id for c in citations)
    assert any(c["page"] <= PAGE <= c["page_end"] for c in citations), citations


async def test_a_question_gets_a_streamed_cited_answer(
    gateway: httpx.AsyncClient, stack: DevStack
) -> None:
    headers = await _owner(gateway)
    token = headers["Authorization"].removeprefix("Bearer ")
    kb_id, document_id = await _indexed_kb(gateway, headers)
    created = await gateway.post(
        "/api/v1/sessions", json={"knowledge_base_id": kb_id}, headers=headers
    )
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]

    events: list[tuple[str, Any]] = []
    async with gateway.stream(
        "POST",
        f"/api/v1/sessions/{session_id}/messages",
        json={"content": QUESTION, "stream": True},
        headers=headers,
    ) as response:
        assert response.status_code == 200, await response.aread()
        event, data = "message", []
        async for line in response.aiter_lines():
            if line == "" and data:
                events.append((event, json.loads("\n".join(data))))
                event, data = "message", []
            elif line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
    kinds = [kind for kind, _ in events]
    assert kinds[-2:] == ["citations", "done"] and "token" in kinds
    answer = "".join(data["text"] for kind, data in events if kind == "token")
    assert "[1]" in answer
    # No model runs in this stack (extractive): the answer says its tokens were not metered.
    done = events[-1][1]
    assert done["usage"]["total_tokens"] > 0 and done["usage"]["metered"] is False
    _assert_cites_the_page(events[-2][1], document_id)

    # A browser's WebSocket cannot send headers: the access token rides in the query.
    url = f"{gateway.base_url}".replace("http", "ws") + f"/api/v1/sessions/{session_id}/ws"
    async with aconnect_ws(f"{url}?access_token={token}", gateway, headers={}) as ws:
        await ws.send_json({"content": QUESTION})
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(await ws.receive_json())
    assert frames[-1]["type"] == "done", frames[-1]
    _assert_cites_the_page(frames[-2]["citations"], document_id)

    # So does an EventSource's: the document's progress stream, token in the query only.
    progress = f"/api/v1/documents/{document_id}/events"
    async with gateway.stream("GET", f"{progress}?access_token={token}") as stream:
        assert stream.status_code == 200, await stream.aread()
        body = (await stream.aread()).decode()
    assert "indexed" in body
    refused = await gateway.get(f"{progress}?access_token=not-a-token")
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/problem+json")
    # Only the streams take it: a plain read with a query token is unauthenticated.
    plain = await gateway.get(f"/api/v1/documents/{document_id}?access_token={token}")
    assert plain.status_code == 401

    # The gateway logs the requests, never the tokens in their URLs.
    async def logged() -> str | None:
        log = stack.gateway.access_log_path.read_text()
        return log if f"/api/v1/sessions/{session_id}/ws" in log and progress in log else None

    assert token not in await eventually(logged, what="the streams in the access log")
    # nor do the services (uvicorn logs a WebSocket's URL as it accepts it)
    for log in stack.logs_dir.glob("*.log"):
        assert token not in log.read_text(errors="replace"), log.name

    listed = await gateway.get(f"/api/v1/sessions/{session_id}/messages", headers=headers)
    assert listed.status_code == 200, listed.text
    stored = listed.json()["items"]
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1]["content"] == answer and stored[1]["grounded"] is True
