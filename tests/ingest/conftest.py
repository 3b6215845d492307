"""An ingest service (API role) in-process on this test's database and the session broker,
over HTTP, with its consumers and quota guard running."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from docuchat_common.events.envelope import Event
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.app import build_runtime
from docuchat_ingest.settings import IngestSettings
from tests.signer import Signer


@dataclass
class IngestService:
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    signer: Signer
    producer: AIOKafkaProducer

    def as_user(self, tenant_id: uuid.UUID, role: str = "owner", **kw: Any) -> dict[str, str]:
        return self.signer.headers(tenant_id, role=role, **kw)

    async def publish(self, *events: Event[Any]) -> None:
        for event in events:
            await self.producer.send_and_wait(
                event.topic.name, event.model_dump_json().encode(), key=event.key
            )


@pytest.fixture
async def ingest(settings_for: Any, infra: Any, tmp_path: Path) -> AsyncIterator[IngestService]:
    settings: IngestSettings = settings_for(IngestSettings, "ingest")
    signer = Signer(tmp_path / "keys")
    runtime = build_runtime(settings, role="api")
    runtime.token_verifier = signer.verifier()
    app = runtime.create_app()
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
                yield IngestService(runtime, client, signer, producer)
    finally:
        await producer.stop()
