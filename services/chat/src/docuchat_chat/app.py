"""Chat: sessions, grounded answers with citations, streaming, LLM providers."""

from __future__ import annotations

from pathlib import Path

from docuchat_chat.answering.retrieval import RetrievalClient
from docuchat_chat.answering.router import router as answering_router
from docuchat_chat.answering.service import Deps
from docuchat_chat.exports.router import router as exports_router
from docuchat_chat.feedback.router import router as feedback_router
from docuchat_chat.llm.registry import ProviderRegistry
from docuchat_chat.llm_settings.crypto import KeyVault
from docuchat_chat.llm_settings.repository import LLMSettingsRepository
from docuchat_chat.llm_settings.router import router as llm_settings_router
from docuchat_chat.llm_settings.service import LLMSettingsService
from docuchat_chat.models import metadata
from docuchat_chat.sessions import consumers as session_consumers
from docuchat_chat.sessions.router import router as sessions_router
from docuchat_chat.settings import ChatSettings
from docuchat_common.events.catalog import MessageCompleted, TokensConsumed
from docuchat_common.logging import get_logger
from docuchat_common.service import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger(__name__)


def build_runtime(settings: ChatSettings | None = None) -> ServiceRuntime:
    settings = settings or ChatSettings()
    runtime = ServiceRuntime(
        name="chat",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        routers=[
            sessions_router,
            answering_router,
            feedback_router,
            exports_router,
            llm_settings_router,
        ],
        publishes=[TokensConsumed, MessageCompleted],
    )
    session_consumers.register(runtime)
    quota = runtime.enforce_quotas()
    vault = KeyVault(settings.llm_key_encryption_keys)
    runtime.state["key_vault"] = vault

    async def start(_: ServiceRuntime) -> None:
        async with runtime.database.transaction() as db:
            rotated = await LLMSettingsService(LLMSettingsRepository(db), vault, None).rotate_keys()
        if rotated:
            log.info("tenant LLM keys re-encrypted with the current key", count=rotated)
        registry = ProviderRegistry(settings)
        retrieval = RetrievalClient(
            settings.retrieval_url, timeout=settings.retrieval_timeout_seconds
        )
        runtime.state["llm"] = registry
        runtime.state["retrieval"] = retrieval
        runtime.state["answering"] = Deps(
            database=runtime.database,
            outbox=runtime.outbox,
            quota=quota,
            retrieval=retrieval,
            providers=registry,
            counter=registry.token_counter,
            vault=vault,
            settings=settings,
        )

    async def stop(_: ServiceRuntime) -> None:
        if "retrieval" in runtime.state:
            await runtime.state.pop("retrieval").aclose()
        if "llm" in runtime.state:
            await runtime.state.pop("llm").aclose()

    runtime.on_start(start)
    runtime.on_stop(stop)
    return runtime
