"""Ingest: knowledge bases, documents, the indexing pipeline and retrieval.

Roles: ``api`` serves HTTP and keeps knowledge bases in step with tenants; ``worker`` will
consume document.uploaded (the pipeline); ``all`` is both; ``relay`` only publishes the outbox.
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
from docuchat_common.quota import QuotaGuard
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.knowledge_bases import consumers as kb_consumers
from docuchat_ingest.knowledge_bases.router import router as kb_router
from docuchat_ingest.models import metadata
from docuchat_ingest.settings import IngestSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: IngestSettings | None = None, *, role: str = "all") -> ServiceRuntime:
    settings = settings or IngestSettings()
    api = role in ("all", "api")
    runtime = ServiceRuntime(
        name="ingest" if role != "worker" else "ingest-worker",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[kb_router] if api else [],
        publishes=[
            DocumentUploaded,
            DocumentProgressed,
            DocumentIndexed,
            DocumentFailed,
            DocumentDeleted,
            TokensConsumed,
        ],
    )
    if api:
        kb_consumers.register(runtime)
        _enforce_quotas(runtime)
    return runtime


def _enforce_quotas(runtime: ServiceRuntime) -> None:
    """The tenant quota state (from usage's quota.changed), in memory before serving."""
    guard = QuotaGuard(runtime.settings.kafka_bootstrap_servers, service=runtime.name)
    runtime.state["quota"] = guard
    runtime.health.add("quota", guard.check_ready)

    async def start(_: ServiceRuntime) -> None:
        await guard.start()

    async def stop(_: ServiceRuntime) -> None:
        await guard.stop()

    runtime.on_start(start)
    runtime.on_stop(stop)
