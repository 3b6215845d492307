"""Upload → indexed through the gateway, all-in-one and split (each target its own process)."""

from __future__ import annotations

import io
import uuid
import zipfile
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


async def test_a_zip_of_every_supported_kind_is_indexed_file_by_file(
    gateway: httpx.AsyncClient,
) -> None:
    headers = await _owner(gateway)
    created = await gateway.post(
        "/api/v1/knowledge-bases", json={"name": "Mixed bag"}, headers=headers
    )
    assert created.status_code == 201, created.text
    kb_id = created.json()["id"]
    members = {
        "pdf/two-columns.pdf": "pdf/multicolumn/pyPdf-026-latex-multicolumn.pdf",
        "pdf/table.pdf": "pdf/tables/pymupdf-test-styled-table.pdf",
        "word/headers.docx": "docx/pandoc-headers.docx",
        "notes/bad-unicode.md": "md/pymupdf-test_markdown_bad_unicode.md",
        "text/koi8-r.txt": "txt/encodings/chardet-koi8-r.txt",
        "text/shift_jis.txt": "txt/encodings/chardet-shift_jis.txt",
        "text/utf16.txt": "txt/encodings/chardet-utf16le-nobom.txt",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, source in members.items():
            archive.writestr(name, (CORPUS / "docs" / source).read_bytes())

    uploaded = await gateway.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": ("bundle.zip", buffer.getvalue(), "application/zip")},
        headers=headers,
    )
    assert uploaded.status_code == 202, uploaded.text
    body = uploaded.json()
    assert body["skipped"] == []
    ids = {d["filename"]: d["id"] for d in body["documents"]}
    assert set(ids) == set(members)
    assert body["archive"]["filename"] == "bundle.zip"
    # A client that follows the upload's id (as for any upload) finds a document there.
    followed = await gateway.get(f"/api/v1/documents/{body['id']}", headers=headers)
    assert followed.status_code == 200, followed.text
    assert followed.json()["id"] == body["documents"][0]["id"]
    assert followed.json()["kb_id"] == kb_id

    async def all_done() -> dict[str, dict[str, Any]] | None:
        listed = await gateway.get(
            f"/api/v1/knowledge-bases/{kb_id}/documents", params={"limit": 50}, headers=headers
        )
        items = {d["filename"]: d for d in listed.json()["items"]}
        finished = all(d["status"] in ("indexed", "failed") for d in items.values())
        return items if len(items) == len(members) and finished else None

    done = await eventually(all_done, timeout=180, what="every file of the ZIP to be indexed")
    assert {name: d["status"] for name, d in done.items()} == dict.fromkeys(members, "indexed")
    assert done["pdf/two-columns.pdf"]["pages"] == _pdf_pages(
        "pdf/multicolumn/pyPdf-026-latex-multicolumn.pdf"
    )
    assert all(d["chunks"] >= 1 for d in done.values())


def _pdf_pages(source: str) -> int:
    import pymupdf

    with pymupdf.open(CORPUS / "docs" / source) as doc:
        return int(doc.page_count)
