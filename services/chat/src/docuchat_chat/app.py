"""Chat: sessions, grounded answers with citations, streaming, LLM providers.

Routes and consumers arrive with the chat issue; the runtime is in place.
"""

from __future__ import annotations

from pathlib import Path

from docuchat_chat.models import metadata
from docuchat_chat.settings import ChatSettings
from docuchat_common.events.catalog import MessageCompleted, TokensConsumed
from docuchat_common.service import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: ChatSettings | None = None) -> ServiceRuntime:
    settings = settings or ChatSettings()
    return ServiceRuntime(
        name="chat",
        settings=settings,
        metadata=metadata,
        migrations_dir=MIGRATIONS,
        publishes=[TokensConsumed, MessageCompleted],
    )
