"""A service runtime served in-process for tests: its real app (lifespan included) behind an
HTTP client, identities from a test signer, and a producer to publish events as its peers do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from docuchat_common.events.envelope import Event
from docuchat_common.service import ServiceRuntime
from tests.signer import Signer


@dataclass
class InProcessService:
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    signer: Signer
    producer: AIOKafkaProducer

    async def publish(self, *events: Event[Any]) -> None:
        for event in events:
            await self.producer.send_and_wait(
                event.topic.name, event.model_dump_json().encode(), key=event.key
            )


@asynccontextmanager
async def serve(
    runtime: ServiceRuntime, bootstrap_servers: str, keys_dir: Path
) -> AsyncIterator[InProcessService]:
    signer = Signer(keys_dir)
    runtime.token_verifier = signer.verifier()
    app = runtime.create_app()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    await producer.start()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=f"http://{runtime.name}"
            ) as client:
                yield InProcessService(runtime, client, signer, producer)
    finally:
        await producer.stop()
