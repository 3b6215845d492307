"""What the LLM adapter tests share: a fast retry policy, a question, a provider config."""

from __future__ import annotations

from docuchat_chat.llm.openai_compat import RetryPolicy
from docuchat_chat.llm.port import ChatMessage, LLMRequest, Passage, ProviderConfig
from tests.fakes import FakeOpenAI

# Short enough to keep the suite fast, long enough for the fake to answer on a busy machine.
FAST_POLICY = RetryPolicy(
    connect_timeout=2.0,
    read_timeout=2.0,
    max_retries=2,
    budget=5.0,
    backoff_initial=0.01,
    backoff_max=0.05,
)

QUESTION = LLMRequest(
    messages=(
        ChatMessage("system", "Answer from the numbered passages and cite them like [1]."),
        ChatMessage("user", "[1] The warranty lasts two years.\n\nHow long is the warranty?"),
    ),
    passages=(Passage(1, "The warranty lasts two years."),),
    max_tokens=64,
)


def openai_config(fake: FakeOpenAI, api_key: str = "sk-test") -> ProviderConfig:
    return ProviderConfig(
        kind="openai", model="gpt-4o-mini", base_url=fake.base_url, api_key=api_key
    )
