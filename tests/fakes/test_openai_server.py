"""The fake OpenAI server, exercised through the real ``openai.AsyncOpenAI`` client."""

import math
import time
from collections.abc import AsyncIterator, Callable

import httpx
import openai
import pytest

from .openai_server import CITED_ANSWER, NO_ANSWER, FakeOpenAI, fake_embedding

PASSAGES = "Answer from the passages.\n[1] The sky is blue.\n[2] Grass is green."
MESSAGES = [{"role": "system", "content": PASSAGES}, {"role": "user", "content": "Sky colour?"}]
PROMPT_TOKENS = 15  # whitespace-separated words in MESSAGES


@pytest.fixture
async def client(fake_openai: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=fake_openai.base_url, api_key="sk-test", max_retries=0
    ) as client:
        yield client


async def test_completion_cites_numbered_passages_and_reports_usage(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    [choice] = completion.choices
    assert (choice.message.role, choice.message.content) == ("assistant", CITED_ANSWER)
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == len(CITED_ANSWER.split())
    assert completion.usage.total_tokens == PROMPT_TOKENS + len(CITED_ANSWER.split())
    [request] = fake_openai.chat_requests
    assert request.api_key == "sk-test"
    assert request.body["messages"] == MESSAGES


async def test_reply_is_scriptable_and_max_tokens_truncates(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    question = [{"role": "user", "content": "What is in the documents?"}]
    no_passages = await client.chat.completions.create(model="m", messages=question)
    assert no_passages.choices[0].message.content == NO_ANSWER

    fake_openai.reply = lambda messages: f"You said: {messages[-1]['content']}"
    truncated = await client.chat.completions.create(model="m", messages=question, max_tokens=3)
    assert truncated.choices[0].message.content == "You said: What "
    assert truncated.choices[0].finish_reason == "length"


async def test_stream_with_include_usage(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.token_delay = 0.01
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    *text_chunks, last = chunks
    deltas = [c.choices[0].delta.content for c in text_chunks if c.choices[0].delta.content]
    assert len(deltas) == len(CITED_ANSWER.split())
    assert "".join(deltas) == CITED_ANSWER
    assert text_chunks[-1].choices[0].finish_reason == "stop"
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        PROMPT_TOKENS,
        len(CITED_ANSWER.split()),
    )
    assert all(c.usage is None for c in text_chunks)


async def test_embeddings_are_deterministic_normalised_vectors(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    texts = ["the sky is blue", "grass is green", "the sky is blue"]
    first = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    again = await client.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )

    vectors = [item.embedding for item in first.data]
    assert [item.index for item in first.data] == [0, 1, 2]
    assert all(len(v) == fake_openai.embedding_dim for v in vectors)
    assert all(math.isclose(math.hypot(*v), 1.0, rel_tol=1e-5) for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    assert vectors == [item.embedding for item in again.data]  # base64 (default) == float
    assert vectors[0] == fake_embedding("the sky is blue", fake_openai.embedding_dim)
    assert first.usage.prompt_tokens == 11

    fake_openai.embedding_dim = 8
    assert len((await client.embeddings.create(model="e", input="x")).data[0].embedding) == 8
    resized = await client.embeddings.create(model="e", input="x", dimensions=16)
    assert len(resized.data[0].embedding) == 16


@pytest.mark.parametrize(
    ("script", "error"),
    [
        (lambda fake: fake.fail(500), openai.InternalServerError),
        (lambda fake: fake.rate_limit(retry_after=7), openai.RateLimitError),
    ],
)
async def test_scripted_http_errors(
    client: openai.AsyncOpenAI,
    fake_openai: FakeOpenAI,
    script: Callable[[FakeOpenAI], None],
    error: type[openai.APIStatusError],
) -> None:
    script(fake_openai)
    with pytest.raises(error) as raised:
        await client.chat.completions.create(model="m", messages=MESSAGES)
    if error is openai.RateLimitError:
        assert raised.value.response.headers["retry-after"] == "7"

    ok = await client.chat.completions.create(model="m", messages=MESSAGES)  # fault consumed
    assert ok.choices[0].message.content == CITED_ANSWER
    assert len(fake_openai.chat_requests) == 2


async def test_delay_triggers_client_timeout(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    fake_openai.delay(30)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=MESSAGES, timeout=0.2)
    assert time.monotonic() - started < 5
    assert fake_openai.pending_faults == []


async def test_stream_breaking_mid_way(client: openai.AsyncOpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.break_stream(after_words=2)
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    received: list[str] = []

    async def read_all() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError):
        await read_all()
    assert "".join(received) == "According to "


async def test_models_and_request_log_reset_between_tests(
    client: openai.AsyncOpenAI, fake_openai: FakeOpenAI
) -> None:
    assert fake_openai.requests == []
    models = await client.models.list()
    assert [m.id for m in models.data] == list(fake_openai.models)
    assert fake_openai.chat_requests == []  # "no LLM call was made"


async def test_missing_parameters_are_rejected(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="messages"):
        await client.chat.completions.create(model="m", messages=[])


def test_context_manager_serves_http() -> None:
    with FakeOpenAI(embedding_dim=4) as fake:
        url = fake.base_url
        assert httpx.get(f"{url}/models").json()["object"] == "list"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models")
