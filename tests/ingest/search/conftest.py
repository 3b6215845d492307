"""Ingest in one process (API and worker, role ``all``): uploads are indexed by the real
pipeline (model, qdrant-edge) and searched through the real route."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from docuchat_ingest.app import build_runtime
from docuchat_ingest.settings import IngestSettings
from tests.helpers import eventually
from tests.in_process import serve
from tests.ingest.conftest import IngestService

KB = "/api/v1/knowledge-bases"
CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"


@pytest.fixture
async def ingest_all(settings_for: Any, infra: Any, tmp_path: Path) -> AsyncIterator[IngestService]:
    settings = settings_for(
        IngestSettings, "ingest", blob_dir=tmp_path / "blobs", vector_dir=tmp_path / "vectors"
    )
    runtime = build_runtime(settings, role="all")
    async with serve(runtime, infra.bootstrap_servers, tmp_path / "keys") as service:
        yield IngestService(service.runtime, service.client, service.signer, service.producer)


async def make_kb(ingest: IngestService, tenant: uuid.UUID, name: str = "Docs", **body: Any) -> str:
    created = await ingest.client.post(
        KB, json={"name": name, **body}, headers=ingest.as_user(tenant)
    )
    assert created.status_code == 201, created.text
    kb_id: str = created.json()["id"]
    return kb_id


async def index(
    ingest: IngestService, tenant: uuid.UUID, kb_id: str, filename: str, data: bytes
) -> str:
    """Upload a file and wait until the worker has indexed it; its document id."""
    uploaded = await ingest.client.post(
        f"{KB}/{kb_id}/documents",
        files={"file": (filename, data, "application/octet-stream")},
        headers=ingest.as_user(tenant),
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id: str = uploaded.json()["id"]

    async def indexed() -> bool:
        got = await ingest.client.get(
            f"/api/v1/documents/{document_id}", headers=ingest.as_user(tenant)
        )
        assert got.json()["status"] != "failed", got.text
        return bool(got.json()["status"] == "indexed")

    await eventually(indexed, timeout=120, what=f"{filename} indexed")
    return document_id


async def search(
    ingest: IngestService, tenant: uuid.UUID, kb_id: str, query: str, **body: Any
) -> Any:
    params = {"mode": body.pop("mode")} if "mode" in body else None
    return await ingest.client.post(
        f"{KB}/{kb_id}/search",
        json={"query": query, **body},
        params=params,
        headers=ingest.as_user(tenant),
    )
