from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from docuchat_chat.llm.openai_compat import RetryPolicy
from docuchat_chat.llm.port import LLMProvider
from docuchat_chat.llm.registry import ProviderRegistry
from docuchat_chat.llm.tokens import TokenCounter
from docuchat_chat.settings import ChatSettings
from tests.chat.llm.support import FAST_POLICY, openai_config
from tests.fakes import FakeOpenAI


@pytest.fixture(scope="session")
def token_counter(tmp_path_factory: pytest.TempPathFactory) -> TokenCounter:
    return TokenCounter(Path(tmp_path_factory.mktemp("tiktoken")))


MakeRegistry = Callable[..., ProviderRegistry]


@pytest.fixture
async def make_registry(token_counter: TokenCounter) -> AsyncIterator[MakeRegistry]:
    """Fresh registries (so breakers start closed), closed after the test."""
    made: list[ProviderRegistry] = []

    def make(policy: RetryPolicy = FAST_POLICY, **settings: object) -> ProviderRegistry:
        registry = ProviderRegistry(
            ChatSettings(**settings),  # type: ignore[arg-type]
            token_counter=token_counter,
            policy=policy,
        )
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.aclose()


@pytest.fixture
def provider(fake_openai: FakeOpenAI, make_registry: MakeRegistry) -> LLMProvider:
    return make_registry().provider(openai_config(fake_openai))
