"""The registry builds providers from configuration and shares clients and breakers."""

from __future__ import annotations

import gc

from pydantic import SecretStr

from docuchat_chat.llm.extractive import ExtractiveProvider
from docuchat_chat.llm.openai_compat import OpenAICompatProvider
from docuchat_chat.llm.port import LLMProvider, ProviderConfig
from docuchat_chat.llm.registry import ProviderRegistry
from docuchat_chat.llm.tokens import TokenCounter
from docuchat_chat.settings import ChatSettings
from tests.chat.llm.conftest import MakeRegistry
from tests.chat.llm.support import QUESTION, openai_config
from tests.fakes import CITED_ANSWER, FakeOpenAI


def test_the_default_config_comes_from_settings(make_registry: MakeRegistry) -> None:
    registry = make_registry(
        llm_provider="openai",
        llm_base_url="http://127.0.0.1:9/v1",
        llm_api_key=SecretStr("sk-default"),
        llm_model="smollm2",
    )

    assert registry.default_config() == ProviderConfig(
        kind="openai", model="smollm2", base_url="http://127.0.0.1:9/v1", api_key="sk-default"
    )
    assert isinstance(registry.provider(), OpenAICompatProvider)
    assert registry.provider().model == "smollm2"


def test_extractive_settings_give_the_extractive_provider(make_registry: MakeRegistry) -> None:
    registry = make_registry(llm_provider="extractive", llm_model="ignored")

    assert registry.default_config().kind == "extractive"
    assert isinstance(registry.provider(), ExtractiveProvider)
    assert isinstance(registry.provider(), LLMProvider)


async def test_one_client_per_endpoint_and_key(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    registry = make_registry()

    same = registry.client(fake_openai.base_url, "sk-a")
    assert registry.client(fake_openai.base_url + "/", "sk-a") is same
    assert registry.client(fake_openai.base_url, "sk-b") is not same

    for key in ("sk-a", "sk-b"):
        completion = await registry.provider(openai_config(fake_openai, key)).complete(QUESTION)
        assert completion.text == CITED_ANSWER
    assert [r.api_key for r in fake_openai.chat_requests] == ["sk-a", "sk-b"]


async def test_an_endpoint_without_a_key_still_gets_a_client(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    provider = make_registry().provider(
        ProviderConfig(kind="openai", model="local", base_url=fake_openai.base_url)
    )

    assert (await provider.complete(QUESTION)).text == CITED_ANSWER


async def test_closed_registry_closes_its_connections(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    registry = make_registry()
    client = registry.client(fake_openai.base_url, "sk-a")
    await registry.provider(openai_config(fake_openai, "sk-a")).complete(QUESTION)

    await registry.aclose()

    assert client._client.is_closed


async def test_warming_loads_the_encodings_before_the_first_question(
    make_registry: MakeRegistry,
) -> None:
    registry = make_registry(llm_provider="openai", llm_model="gpt-4o-mini")

    await registry.warm()

    assert {"gpt-4o-mini", "extractive"} <= registry.token_counter.loaded_models


async def test_the_least_recently_used_client_is_dropped_and_the_pool_stays_open(
    fake_openai: FakeOpenAI, token_counter: TokenCounter
) -> None:
    registry = ProviderRegistry(ChatSettings(), token_counter=token_counter, max_clients=2)
    try:
        first = registry.client(fake_openai.base_url, "sk-1")
        second = registry.client(fake_openai.base_url, "sk-2")
        assert registry.client(fake_openai.base_url, "sk-1") is first  # now the most recent
        registry.client(fake_openai.base_url, "sk-3")  # drops sk-2

        assert registry.client(fake_openai.base_url, "sk-1") is first
        assert registry.client(fake_openai.base_url, "sk-2") is not second
        del second  # a dropped client going away must not close the shared pool
        gc.collect()
        completion = await registry.provider(openai_config(fake_openai, "sk-1")).complete(QUESTION)
        assert completion.text == CITED_ANSWER
    finally:
        await registry.aclose()
