"""Upload → indexed through the gateway, all-in-one and split (API and worker apart)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import eventually

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
PASSWORD = "correct horse battery staple"


async def _owner(gateway: httpx.AsyncClient) -> dict[str, str]:
    body = (
        await gateway.post(
            "/api/v1/auth/register",
            json={
                "email": f"docs-{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "tenant_name": "Docs",
            },
        )
    ).json()
    return {"Authorization": f"Bearer {body['access_token']}"}


async def test_an_uploaded_pdf_is_indexed(gateway: httpx.AsyncClient) -> None:
    headers = await _owner(gateway)

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
    document = uploaded.json()
    assert document["status"] == "queued"

    async def indexed() -> dict[str, Any] | None:
        body: dict[str, Any] = (
            await gateway.get(f"/api/v1/documents/{document['id']}", headers=headers)
        ).json()
        return body if body["status"] in ("indexed", "failed") else None

    done = await eventually(indexed, timeout=120, what="the document to be indexed")
    assert done["status"] == "indexed", done
    assert done["pages"] == 18
    assert done["chunks"] > 18
    assert done["progress"] == 1.0
