"""An ingest service (API role) in-process on this test's database and the session broker,
over HTTP, with its consumers and quota guard running."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from docuchat_ingest.app import build_runtime
from docuchat_ingest.blobs import LocalBlobStore
from docuchat_ingest.settings import IngestSettings
from tests.in_process import InProcessService, serve


class IngestService(InProcessService):
    def as_user(self, tenant_id: uuid.UUID, role: str = "owner", **kw: Any) -> dict[str, str]:
        return self.signer.headers(tenant_id, role=role, **kw)


@pytest.fixture
async def ingest(settings_for: Any, infra: Any, tmp_path: Path) -> AsyncIterator[IngestService]:
    settings = settings_for(
        IngestSettings, "ingest", blob_dir=tmp_path / "blobs", vector_dir=tmp_path / "vectors"
    )
    runtime = build_runtime(settings, role="api")
    async with serve(runtime, infra.bootstrap_servers, tmp_path / "keys") as service:
        yield IngestService(service.runtime, service.client, service.signer, service.producer)


@pytest.fixture
def blobs(ingest: IngestService, tmp_path: Path) -> LocalBlobStore:
    """This test's own blob directory (the runtime reads the store per request)."""
    store = LocalBlobStore(tmp_path / "blobs")
    ingest.runtime.state["blobs"] = store
    return store
