"""The OpenAI-compatible adapter against the fake server: streaming, usage, retries within the
budget, error mapping, the circuit breaker and closing a stream early."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import AsyncIterator

import pytest

from docuchat.devstack.process import free_port
from docuchat_chat.llm.openai_compat import RetryPolicy
from docuchat_chat.llm.port import LLMProvider, LLMRequest, ProviderConfig, ProviderError, Usage
from docuchat_chat.llm.tokens import TokenCounter
from tests.chat.llm.conftest import MakeRegistry
from tests.chat.llm.support import FAST_POLICY, QUESTION, openai_config
from tests.fakes import CITED_ANSWER, FakeOpenAI
from tests.fakes.openai_server import count_tokens
from tests.helpers import eventually


async def drain(stream: AsyncIterator[str | Usage]) -> tuple[str, Usage]:
    parts: list[str] = []
    usage: Usage | None = None
    async for item in stream:
        if isinstance(item, Usage):
            assert usage is None, "exactly one Usage"
            usage = item
        else:
            assert usage is None, "Usage comes last"
            parts.append(item)
    assert usage is not None
    return "".join(parts), usage


async def fails(provider: LLMProvider, request: LLMRequest = QUESTION) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await drain(provider.stream(request))
    return caught.value


# -- answers and usage ---------------------------------------------------------------------------


async def test_stream_yields_deltas_then_the_reported_usage(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    deltas = [item async for item in provider.stream(QUESTION)]

    texts = [d for d in deltas if isinstance(d, str)]
    assert len(texts) == count_tokens(CITED_ANSWER)  # one delta per word, as the fake sends
    assert "".join(texts) == CITED_ANSWER
    assert deltas[-1] == Usage(
        prompt_tokens=sum(count_tokens(m.content) for m in QUESTION.messages),
        completion_tokens=count_tokens(CITED_ANSWER),
        reported=True,
    )
    (sent,) = fake_openai.chat_requests
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["max_tokens"] == QUESTION.max_tokens
    assert sent.api_key == "sk-test"
    assert [m["role"] for m in sent.body["messages"]] == ["system", "user"]


async def test_usage_is_counted_with_tiktoken_when_the_provider_reports_none(
    fake_openai: FakeOpenAI, provider: LLMProvider, token_counter: TokenCounter
) -> None:
    fake_openai.report_usage = False

    text, usage = await drain(provider.stream(QUESTION))
    completion = await provider.complete(QUESTION)

    expected = Usage(
        prompt_tokens=token_counter.count_messages(QUESTION.messages, "gpt-4o-mini"),
        completion_tokens=token_counter.count_text(CITED_ANSWER, "gpt-4o-mini"),
        reported=False,
    )
    assert text == CITED_ANSWER
    assert usage == expected
    assert completion.usage == expected
    # tiktoken's count, not the fake's one-per-word count
    assert usage.completion_tokens != count_tokens(CITED_ANSWER)


async def test_complete_returns_the_whole_answer(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    completion = await provider.complete(QUESTION)

    assert completion.text == CITED_ANSWER
    assert completion.finish_reason == "stop"
    assert completion.usage.completion_tokens == count_tokens(CITED_ANSWER)
    assert completion.usage.reported
    assert fake_openai.chat_requests[0].body["stream"] is True  # see the next test


async def test_a_long_steady_answer_is_not_a_timeout(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    # The read timeout bounds the silence between tokens, not the whole answer: a slow model
    # writing a long answer completes, streamed or not.
    policy = dataclasses.replace(FAST_POLICY, read_timeout=0.3, budget=0.6)
    provider = make_registry(policy).provider(openai_config(fake_openai))
    fake_openai.reply = " ".join(["slow"] * 12)
    fake_openai.token_delay = 0.1  # 1.2 s in all, twice the budget

    completion = await provider.complete(QUESTION)
    text, _ = await drain(provider.stream(QUESTION))

    assert completion.text == text == fake_openai.reply
    assert len(fake_openai.chat_requests) == 2


async def test_complete_reports_a_length_cut(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.reply = " ".join(["word"] * 100)

    completion = await provider.complete(dataclasses.replace(QUESTION, max_tokens=5))

    assert completion.finish_reason == "length"
    assert completion.text == "word word word word word "


# -- retries -------------------------------------------------------------------------------------


async def test_a_server_error_is_retried_then_the_answer_streams(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.fail(500)

    text, _ = await drain(provider.stream(QUESTION))

    assert text == CITED_ANSWER
    assert len(fake_openai.chat_requests) == 2


async def test_a_hang_up_before_the_first_delta_is_retried(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.break_stream(after_words=0)  # headers and the role chunk, then the line drops

    text, _ = await drain(provider.stream(QUESTION))

    assert text == CITED_ANSWER
    assert len(fake_openai.chat_requests) == 2


async def test_a_hang_up_after_deltas_fails_without_replaying_the_answer(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.break_stream(after_words=3)
    received: list[str | Usage] = []

    async def consume() -> None:
        async for item in provider.stream(QUESTION):
            received.append(item)

    with pytest.raises(ProviderError) as caught:
        await consume()

    assert received == re.findall(r"\s*\S+\s*", CITED_ANSWER)[:3]
    assert caught.value.code in ("llm_error", "llm_unavailable")
    assert len(fake_openai.chat_requests) == 1


async def test_rate_limit_waits_for_retry_after_then_succeeds(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.rate_limit(retry_after=0.4)

    started = time.monotonic()
    text, _ = await drain(provider.stream(QUESTION))

    assert text == CITED_ANSWER
    assert time.monotonic() - started >= 0.4
    assert len(fake_openai.chat_requests) == 2


async def test_rate_limit_past_the_budget_fails_at_once_with_retry_after(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.rate_limit(retry_after=120)

    started = time.monotonic()
    error = await fails(provider)

    assert time.monotonic() - started < FAST_POLICY.budget / 2  # did not sleep 120 s
    assert (error.status, error.code, error.retry_after) == (503, "llm_rate_limited", 120)
    assert len(fake_openai.chat_requests) == 1


async def test_rate_limit_on_every_attempt_gives_llm_rate_limited(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.rate_limit(retry_after=0.05, times=FAST_POLICY.max_retries + 1)

    error = await fails(provider)

    assert (error.status, error.code) == (503, "llm_rate_limited")
    assert len(fake_openai.chat_requests) == FAST_POLICY.max_retries + 1


def silent_provider(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry, policy: RetryPolicy
) -> LLMProvider:
    """A provider under ``policy`` whose endpoint says nothing for 30 s, every attempt."""
    fake_openai.delay(30, times=10)
    return make_registry(policy).provider(openai_config(fake_openai))


async def test_a_silent_provider_is_retried_then_times_out(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    policy = dataclasses.replace(FAST_POLICY, read_timeout=0.3, max_retries=5, budget=1.2)
    provider = silent_provider(fake_openai, make_registry, policy)

    error = await fails(provider)

    assert (error.status, error.code) == (504, "llm_timeout")
    assert len(fake_openai.chat_requests) >= 2  # retried while the budget lasted
    assert len(fake_openai.chat_requests) <= policy.max_retries + 1


async def test_an_attempt_is_cut_to_what_is_left_of_the_budget(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    # A read timeout far beyond the budget: only the budget can end this call early, so the
    # margin below can be wide enough for a loaded machine and still tell the two apart.
    policy = dataclasses.replace(FAST_POLICY, read_timeout=20, max_retries=5, budget=1.0)
    provider = silent_provider(fake_openai, make_registry, policy)

    started = time.monotonic()
    error = await fails(provider)
    elapsed = time.monotonic() - started

    assert (error.status, error.code) == (504, "llm_timeout")
    assert elapsed < policy.read_timeout / 2, elapsed
    assert len(fake_openai.chat_requests) == 1  # no time was left for another attempt


async def test_a_refused_connection_is_llm_unavailable(make_registry: MakeRegistry) -> None:
    provider = make_registry().provider(
        ProviderConfig(
            kind="openai", model="gpt-4o-mini", base_url=f"http://127.0.0.1:{free_port()}/v1"
        )
    )

    error = await fails(provider)

    assert (error.status, error.code) == (503, "llm_unavailable")


# -- errors that are not the endpoint's fault ----------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_key_is_llm_auth_failed_without_retry(
    fake_openai: FakeOpenAI, provider: LLMProvider, status: int
) -> None:
    fake_openai.fail(status, message="Incorrect API key provided: sk-te***")

    error = await fails(provider)

    assert (error.status, error.code) == (502, "llm_auth_failed")
    assert "sk-te" not in str(error)  # the provider's message (with key hints) stays out
    assert len(fake_openai.chat_requests) == 1


async def test_a_bad_request_is_llm_error_without_retry(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.fail(400)

    error = await fails(provider)

    assert (error.status, error.code) == (502, "llm_error")
    assert len(fake_openai.chat_requests) == 1


# -- circuit breaker -----------------------------------------------------------------------------


async def test_the_breaker_opens_after_consecutive_failures_fails_fast_then_recovers(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    registry = make_registry(
        dataclasses.replace(FAST_POLICY, max_retries=0),
        llm_breaker_threshold=2,
        llm_breaker_cooldown_seconds=0.5,
    )
    provider = registry.provider(openai_config(fake_openai))
    fake_openai.fail(500, times=2)

    first, second = await fails(provider), await fails(provider)
    assert [e.code for e in (first, second)] == ["llm_error", "llm_error"]
    assert await registry.breakers.state(fake_openai.base_url) == "opened"

    fast = await fails(provider)
    assert (fast.status, fast.code) == (503, "llm_unavailable")
    assert fast.retry_after is not None
    assert 0 < fast.retry_after <= 0.5
    assert len(fake_openai.chat_requests) == 2  # the open breaker sent nothing

    # Once the cool-down passes, the breaker lets one call through (half-open); until then
    # each call fails fast and sends nothing.
    fake_openai.fail(500)

    async def let_through() -> ProviderError | None:
        error = await fails(provider)
        return error if error.code != "llm_unavailable" else None

    reopened = await eventually(let_through, timeout=5, what="the breaker half-open")
    assert reopened.code == "llm_error"  # half-open: one failure re-opens it
    assert await registry.breakers.state(fake_openai.base_url) == "opened"
    assert (await fails(provider)).code == "llm_unavailable"
    assert len(fake_openai.chat_requests) == 3

    async def answered() -> str | None:
        try:
            text, _ = await drain(provider.stream(QUESTION))
        except ProviderError as error:
            if error.code != "llm_unavailable":  # still open fails fast; anything else is wrong
                raise
            return None
        return text

    text = await eventually(answered, timeout=5, what="the breaker half-open again")
    assert text == CITED_ANSWER  # half-open: a success closes it
    assert await registry.breakers.state(fake_openai.base_url) == "closed"


async def test_concurrent_streams_share_the_pool(
    fake_openai: FakeOpenAI, provider: LLMProvider
) -> None:
    fake_openai.token_delay = 0.01

    answers = await asyncio.gather(*(drain(provider.stream(QUESTION)) for _ in range(64)))

    assert {text for text, _ in answers} == {CITED_ANSWER}
    assert len(fake_openai.chat_requests) == 64


async def test_rejected_keys_do_not_open_the_breaker_for_other_tenants(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    registry = make_registry(llm_breaker_threshold=2)
    bad_key = registry.provider(openai_config(fake_openai, api_key="sk-revoked"))
    good_key = registry.provider(openai_config(fake_openai, api_key="sk-good"))
    fake_openai.fail(401, times=3)

    for _ in range(3):
        assert (await fails(bad_key)).code == "llm_auth_failed"

    text, _ = await drain(good_key.stream(QUESTION))
    assert text == CITED_ANSWER
    assert await registry.breakers.state(fake_openai.base_url) == "closed"


async def test_one_breaker_per_endpoint_whatever_the_key(
    fake_openai: FakeOpenAI, make_registry: MakeRegistry
) -> None:
    no_retries = dataclasses.replace(FAST_POLICY, max_retries=0)
    registry = make_registry(no_retries, llm_breaker_threshold=2)
    fake_openai.fail(503, times=2)
    for key in ("sk-a", "sk-b"):
        assert (await fails(registry.provider(openai_config(fake_openai, key)))).code == (
            "llm_unavailable"
        )

    error = await fails(registry.provider(openai_config(fake_openai, "sk-c")))

    assert error.retry_after is not None  # the breaker's answer, not the server's
    assert len(fake_openai.chat_requests) == 2


# -- closing early -------------------------------------------------------------------------------


async def test_closing_the_stream_hangs_up_and_generation_stops(
    fake_openai: FakeOpenAI, provider: LLMProvider, token_counter: TokenCounter
) -> None:
    words = [f"word{i}" for i in range(200)]
    fake_openai.reply = " ".join(words)
    fake_openai.token_delay = 0.01
    stream = provider.stream(QUESTION)
    assert isinstance(stream, AsyncIterator)

    received = [await anext(stream) for _ in range(3)]
    await stream.aclose()  # type: ignore[attr-defined]

    assert "".join(map(str, received)) == "word0 word1 word2 "

    async def hung_up() -> bool:
        return fake_openai.hangups == 1

    await eventually(hung_up, timeout=5, what="the fake to see the hang-up")
    sent = fake_openai.frames_sent
    assert sent < len(words)
    # What was generated can still be counted (the final Usage never came).
    partial = token_counter.usage(QUESTION.messages, "".join(map(str, received)), provider.model)
    assert partial.completion_tokens > 0
    assert not partial.reported
