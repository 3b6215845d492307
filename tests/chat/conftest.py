"""Chat served over real HTTP (uvicorn on a local port) on this test's database and the session
broker; ingest (API and worker, the real model and vector store) served the same way once per
session with two corpus documents indexed, for chat to retrieve from; the fake OpenAI server as
the model."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from docuchat_chat.app import build_runtime as build_chat
from docuchat_chat.models import ChatSession, outbox
from docuchat_chat.sessions.repository import SessionRepository
from docuchat_chat.settings import ChatSettings
from docuchat_common.events.catalog import QuotaChanged, QuotaChangedData
from docuchat_common.events.envelope import Event
from docuchat_common.quota import QuotaGuard
from docuchat_common.service import ServiceRuntime
from docuchat_ingest.app import build_runtime as build_ingest
from docuchat_ingest.settings import IngestSettings
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import eventually
from tests.signer import Signer

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
DMCA = CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf"
CRAZY_ONES = CORPUS / "docs" / "txt" / "utf8" / "pypdf-crazyones.txt"
# The similarity below which a passage is not evidence (the service's default, for MiniLM).
RELEVANCE_THRESHOLD = ChatSettings.model_fields["relevance_threshold"].default


@dataclass
class HttpService:
    runtime: ServiceRuntime
    url: str
    client: httpx.AsyncClient
    signer: Signer
    producer: AIOKafkaProducer
    server: uvicorn.Server | None = None  # to stop it as a SIGTERM would

    def headers(
        self, tenant_id: uuid.UUID, user_id: uuid.UUID | None = None, role: str = "owner"
    ) -> dict[str, str]:
        return self.signer.headers(tenant_id, user_id, role=role)

    async def publish(self, *events: Event[Any]) -> None:
        for event in events:
            await self.producer.send_and_wait(
                event.topic.name, event.model_dump_json().encode(), key=event.key
            )


@asynccontextmanager
async def serve_http(
    runtime: ServiceRuntime, bootstrap_servers: str, keys_dir: Path
) -> AsyncIterator[HttpService]:
    """The runtime's app under uvicorn on a free local port, lifespan included: real sockets,
    so streams, client disconnects and WebSockets behave as they do in production."""
    signer = Signer(keys_dir)
    runtime.token_verifier = signer.verifier()
    app = runtime.create_app()
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        if task.done():
            task.result()  # a failed startup: raise its error
            raise RuntimeError(f"{runtime.name} stopped while starting")
        return server.started

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers)
    try:
        await eventually(started, timeout=120, what=f"{runtime.name} to start")
        await producer.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            yield HttpService(runtime, url, client, signer, producer, server)
    finally:
        await producer.stop()
        server.should_exit = True
        await task
        sock.close()


# --- ingest with a corpus, once per session -----------------------------------------------------


@dataclass
class Corpus:
    tenant_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    dmca_id: str
    crazy_ones_id: str


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signing key ring for chat and ingest: a token chat forwards, ingest accepts."""
    return tmp_path_factory.mktemp("chat-keys")


@pytest.fixture(scope="session")
async def ingest(
    infra: Any, templates: dict[str, str], keys_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HttpService]:
    name = f"t_ingest_chat_{uuid.uuid4().hex[:8]}"
    infra.create_database(name, templates["ingest"])
    root = tmp_path_factory.mktemp("chat-ingest")
    settings = IngestSettings(
        environment="test",
        database_url=infra.async_url(name),
        kafka_bootstrap_servers=infra.bootstrap_servers,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        consumer_group_prefix=f"test-{uuid.uuid4().hex[:8]}.",
        migrate_on_start=False,
        log_json=True,
        blob_dir=root / "blobs",
        vector_dir=root / "vectors",
    )
    async with serve_http(
        build_ingest(settings, role="all"), infra.bootstrap_servers, keys_dir
    ) as service:
        yield service


async def make_kb(ingest: HttpService, tenant: uuid.UUID, **body: Any) -> uuid.UUID:
    created = await ingest.client.post(
        "/api/v1/knowledge-bases",
        json={"name": f"Docs {uuid.uuid4().hex[:6]}", **body},
        headers=ingest.headers(tenant),
    )
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["id"])


async def index(ingest: HttpService, tenant: uuid.UUID, kb_id: uuid.UUID, path: Path) -> str:
    """Upload a corpus file and wait until the worker has indexed it; its document id."""
    uploaded = await ingest.client.post(
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        headers=ingest.headers(tenant),
    )
    assert uploaded.status_code == 202, uploaded.text
    document_id: str = uploaded.json()["id"]

    async def indexed() -> bool:
        got = await ingest.client.get(
            f"/api/v1/documents/{document_id}", headers=ingest.headers(tenant)
        )
        assert got.json()["status"] != "failed", got.text
        return bool(got.json()["status"] == "indexed")

    await eventually(indexed, timeout=180, what=f"{path.name} indexed")
    return document_id


@pytest.fixture(scope="session")
async def corpus(ingest: HttpService) -> Corpus:
    tenant = uuid.uuid4()
    kb_id = await make_kb(ingest, tenant)
    dmca = await index(ingest, tenant, kb_id, DMCA)
    crazy = await index(ingest, tenant, kb_id, CRAZY_ONES)
    return Corpus(tenant, kb_id, dmca, crazy)


# --- chat -----------------------------------------------------------------------------------------


class ChatService(HttpService):
    async def new_session(
        self, tenant: uuid.UUID, user: uuid.UUID, kb_id: uuid.UUID, **body: Any
    ) -> dict[str, Any]:
        created = await self.client.post(
            "/api/v1/sessions",
            json={"knowledge_base_id": str(kb_id), **body},
            headers=self.headers(tenant, user),
        )
        assert created.status_code == 201, created.text
        session: dict[str, Any] = created.json()
        return session

    async def ask(
        self, tenant: uuid.UUID, user: uuid.UUID, session_id: str, content: str
    ) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/sessions/{session_id}/messages",
            json={"content": content},
            headers=self.headers(tenant, user),
        )

    async def messages(
        self, tenant: uuid.UUID, user: uuid.UUID, session_id: str
    ) -> list[dict[str, Any]]:
        listed = await self.client.get(
            f"/api/v1/sessions/{session_id}/messages",
            params={"limit": 100},
            headers=self.headers(tenant, user),
        )
        assert listed.status_code == 200, listed.text
        items: list[dict[str, Any]] = listed.json()["items"]
        return items

    @property
    def quota(self) -> QuotaGuard:
        guard: QuotaGuard = self.runtime.state["quota"]
        return guard

    async def set_quota(self, tenant: uuid.UUID, state: QuotaChangedData) -> None:
        """Publish a quota state as usage would, and wait until chat enforces it."""
        await self.publish(QuotaChanged(tenant_id=tenant, source="usage", data=state))
        await self.quota.wait_for(tenant, lambda s: s == state, timeout=30)


async def stored_session(
    chat: HttpService, tenant: uuid.UUID, user: uuid.UUID, kb_id: uuid.UUID
) -> str:
    """A session written straight to chat's database, past the knowledge-base check at
    creation: one whose knowledge base went away, or could not be reached, later."""
    session_id = uuid.uuid4()
    async with chat.runtime.database.transaction() as db:
        await SessionRepository(db).add(
            ChatSession(id=session_id, tenant_id=tenant, user_id=user, knowledge_base_id=kb_id)
        )
    return str(session_id)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, JSON data) pairs of a text/event-stream response, as they arrive."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())


async def outbox_events(chat: HttpService) -> list[dict[str, Any]]:
    """The events chat has put in its outbox, oldest first."""
    async with chat.runtime.database.transaction() as session:
        rows = await session.execute(select(outbox.c.payload).order_by(outbox.c.seq))
        return [r.payload for r in rows]


def chat_settings(settings_for: Any, **overrides: Any) -> ChatSettings:
    settings: ChatSettings = settings_for(ChatSettings, "chat", **overrides)
    return settings


@asynccontextmanager
async def serve_chat(
    settings_for: Any, infra: Any, keys_dir: Path, **overrides: Any
) -> AsyncIterator[ChatService]:
    settings = chat_settings(settings_for, relevance_threshold=RELEVANCE_THRESHOLD, **overrides)
    async with serve_http(build_chat(settings), infra.bootstrap_servers, keys_dir) as service:
        yield ChatService(
            service.runtime,
            service.url,
            service.client,
            service.signer,
            service.producer,
            service.server,
        )


def fake_llm(fake_openai: FakeOpenAI) -> dict[str, Any]:
    """Settings for the fake OpenAI server as the default model, with short timeouts."""
    return {
        "llm_provider": "openai",
        "llm_base_url": fake_openai.base_url,
        "llm_api_key": "sk-test-default",
        "llm_model": "gpt-4o-mini",
        "llm_timeout_seconds": 2.0,
        "llm_retry_budget_seconds": 5.0,
    }


@pytest.fixture
async def chat_app(
    settings_for: Any, infra: Any, keys_dir: Path, fake_openai: FakeOpenAI
) -> AsyncIterator[ChatService]:
    """Chat without a retrieval service: for what never asks a question."""
    async with serve_chat(
        settings_for, infra, keys_dir, retrieval_url="http://127.0.0.1:9", **fake_llm(fake_openai)
    ) as service:
        yield service


@pytest.fixture
async def chat(
    settings_for: Any, infra: Any, keys_dir: Path, ingest: HttpService, fake_openai: FakeOpenAI
) -> AsyncIterator[ChatService]:
    """Chat retrieving from the session's ingest, answering with the fake model."""
    async with serve_chat(
        settings_for, infra, keys_dir, retrieval_url=ingest.url, **fake_llm(fake_openai)
    ) as service:
        yield service
