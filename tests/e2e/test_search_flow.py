"""Search through the gateway, all-in-one and split (search served by the ingest process, which
owns the embedded vector store): a known question finds its page, another tenant finds
nothing, odd queries get clear answers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import eventually

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PASSWORD = "correct horse battery staple"
KB = "/api/v1/knowledge-bases"


async def _owner(gateway: httpx.AsyncClient) -> dict[str, str]:
    body = (
        await gateway.post(
            "/api/v1/auth/register",
            json={
                "email": f"search-{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "tenant_name": "Search",
            },
        )
    ).json()
    return {"Authorization": f"Bearer {body['access_token']}"}


async def _indexed_kb(
    gateway: httpx.AsyncClient, headers: dict[str, str], filename: str, data: bytes
) -> tuple[str, str]:
    created = await gateway.post(KB, json={"name": "Searched"}, headers=headers)
    assert created.status_code == 201, created.text
    kb_id: str = created.json()["id"]
    uploaded = await gateway.post(
        f"{KB}/{kb_id}/documents", files={"file": (filename, data)}, headers=headers
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id: str = uploaded.json()["id"]

    async def indexed() -> dict[str, Any] | None:
        body: dict[str, Any] = (
            await gateway.get(f"/api/v1/documents/{document_id}", headers=headers)
        ).json()
        return body if body["status"] in ("indexed", "failed") else None

    done = await eventually(indexed, timeout=120, what=f"{filename} indexed")
    assert done["status"] == "indexed", done
    return kb_id, document_id


async def test_search_finds_the_page_and_stays_in_the_tenant(gateway: httpx.AsyncClient) -> None:
    owner = await _owner(gateway)
    pdf = CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf"
    kb_id, document_id = await _indexed_kb(gateway, owner, pdf.name, pdf.read_bytes())

    answer = await gateway.post(
        f"{KB}/{kb_id}/search",
        json={"query": "residual payments under collective bargaining agreements", "top_k": 3},
        headers=owner,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["knowledge_base"]["id"] == kb_id
    assert len(body["hits"]) == 3
    top = body["hits"][0]
    assert top["document_id"] == document_id and top["filename"] == pdf.name
    assert top["page"] <= 17 <= top["page_end"]
    assert top["similarity"] > 0.3

    # another tenant: the knowledge base does not exist for it, its own holds nothing of this
    stranger = await _owner(gateway)
    stolen = await gateway.post(
        f"{KB}/{kb_id}/search", json={"query": "Vessel Hull Design"}, headers=stranger
    )
    assert stolen.status_code == 404 and stolen.json()["code"] == "knowledge_base_not_found"
    own_kb, _ = await _indexed_kb(gateway, stranger, "notes.txt", b"Quarterly budget notes.")
    own = await gateway.post(
        f"{KB}/{own_kb}/search", json={"query": "Vessel Hull Design"}, headers=stranger
    )
    assert own.status_code == 200
    assert [h["filename"] for h in own.json()["hits"]] == ["notes.txt"]

    empty = await gateway.post(f"{KB}/{kb_id}/search", json={"query": "  "}, headers=owner)
    assert empty.status_code == 422 and empty.json()["code"] == "empty_query"
    long = await gateway.post(f"{KB}/{kb_id}/search", json={"query": "x " * 5000}, headers=owner)
    assert long.status_code == 422 and long.json()["code"] == "query_too_long"
    anonymous = await gateway.post(f"{KB}/{kb_id}/search", json={"query": "vessel"})
    assert anonymous.status_code == 401
