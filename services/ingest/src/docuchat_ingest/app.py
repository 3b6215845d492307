"""Ingest: knowledge bases, documents, the indexing pipeline and retrieval.

Routes and workers arrive with their issues; the runtime (database, outbox, broker, health,
metrics) is in place. Roles: ``api`` serves HTTP, ``worker`` consumes document.uploaded.
"""

from __future__ import annotations

from pathlib import Path

from docuchat_common.events.catalog import (
    DocumentDeleted,
    DocumentFailed,
    DocumentIndexed,
    DocumentProgressed,
    DocumentUploaded,
    TokensConsumed,
)
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.models import metadata
from docuchat_ingest.settings import IngestSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: IngestSettings | None = None, *, role: str = "all") -> ServiceRuntime:
    settings = settings or IngestSettings()
    return ServiceRuntime(
        name="ingest" if role != "worker" else "ingest-worker",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[],
        run_consumers=role in ("all", "worker"),
        publishes=[
            DocumentUploaded,
            DocumentProgressed,
            DocumentIndexed,
            DocumentFailed,
            DocumentDeleted,
            TokensConsumed,
        ],
    )
