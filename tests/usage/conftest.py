"""A usage service in-process on this test's database and the session broker, over HTTP, with
its consumers running; events are published the way chat and ingest publish them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from docuchat_common.events.envelope import Event
from docuchat_common.service import ServiceRuntime
from docuchat_usage.app import build_runtime
from docuchat_usage.settings import UsageSettings
from tests.signer import Signer


@dataclass
class UsageService:
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    signer: Signer
    producer: AIOKafkaProducer

    def token(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None, role: str = "owner"
    ) -> dict[str, str]:
        return self.signer.headers(tenant_id, user_id, role)

    async def publish(self, *events: Event[Any], raw: Sequence[bytes] = ()) -> None:
        for event in events:
            await self.producer.send_and_wait(
                event.topic.name, event.model_dump_json().encode(), key=event.key
            )
        for value in raw:
            await self.producer.send_and_wait("docuchat.tokens", value, key=b"x")


@pytest.fixture
async def usage(settings_for: Any, infra: Any, tmp_path: Path) -> AsyncIterator[UsageService]:
    settings: UsageSettings = settings_for(
        UsageSettings, "usage", quota_reset_interval_seconds=3600
    )
    signer = Signer(tmp_path / "keys")
    runtime = build_runtime(settings)
    runtime.token_verifier = signer.verifier()
    app = runtime.create_app()
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://usage") as client:
                yield UsageService(runtime, client, signer, producer)
    finally:
        await producer.stop()
