"""A failing model: a clear 5xx problem with a stable code after the adapter's retries, the
question kept (marked failed), no answer stored, nothing charged."""

from __future__ import annotations

import uuid

import pytest

from tests.chat.answering.test_ask import DISTANCE_EDUCATION, stream_answer
from tests.chat.conftest import ChatService, Corpus, outbox_events, stored_session
from tests.fakes.openai_server import FakeOpenAI

ATTEMPTS = 3  # the first call and llm_max_retries (2) retries


async def assert_nothing_charged(
    chat: ChatService, corpus: Corpus, user: uuid.UUID, session_id: str
) -> None:
    (question,) = await chat.messages(corpus.tenant_id, user, session_id)
    assert (question["role"], question["status"]) == ("user", "failed")
    assert await outbox_events(chat) == []


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("500", 502, "llm_error"),
        ("429", 503, "llm_rate_limited"),
        ("timeout", 504, "llm_timeout"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_failing_model_is_a_clear_error_and_costs_nothing(
    chat: ChatService,
    corpus: Corpus,
    fake_openai: FakeOpenAI,
    fault: str,
    status: int,
    code: str,
    stream: bool,
) -> None:
    if fault == "500":
        fake_openai.fail(500, times=ATTEMPTS)
    elif fault == "429":
        fake_openai.rate_limit(retry_after=0, times=ATTEMPTS)
    else:
        fake_openai.delay(10, times=ATTEMPTS)  # past llm_timeout_seconds (2)
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)

    answer = await chat.client.post(
        f"/api/v1/sessions/{session['id']}/messages",
        json={"content": DISTANCE_EDUCATION, "stream": stream},
        headers=chat.headers(corpus.tenant_id, user),
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code
    if fault == "429":
        assert answer.headers["retry-after"]
    assert 2 <= len(fake_openai.chat_requests) <= ATTEMPTS  # retried within the budget
    await assert_nothing_charged(chat, corpus, user, session["id"])


async def test_a_failure_the_retries_absorb_is_charged_once(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    fake_openai.fail(500, times=1)
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    answer = await chat.ask(corpus.tenant_id, user, session["id"], DISTANCE_EDUCATION)
    assert answer.status_code == 201, answer.text
    assert len(fake_openai.chat_requests) == 2
    types = [e["type"] for e in await outbox_events(chat)]
    assert sorted(types) == ["message.completed", "tokens.consumed"]


async def test_a_stream_broken_midway_ends_with_an_error_event_and_no_charge(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    fake_openai.break_stream(after_words=3)
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    events = await stream_answer(chat, corpus.tenant_id, user, session["id"], DISTANCE_EDUCATION)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "error" and "done" not in kinds
    assert events[-1][1]["code"].startswith("llm_")
    await assert_nothing_charged(chat, corpus, user, session["id"])


async def test_an_unreachable_search_is_a_503_and_the_question_is_kept_as_failed(
    chat_app: ChatService, fake_openai: FakeOpenAI
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    session_id = await stored_session(chat_app, tenant, user, uuid.uuid4())
    answer = await chat_app.ask(tenant, user, session_id, DISTANCE_EDUCATION)
    assert answer.status_code == 503, answer.text
    assert answer.json()["code"] == "retrieval_unavailable"
    (question,) = await chat_app.messages(tenant, user, session_id)
    assert question["status"] == "failed"
    assert fake_openai.requests == []
    assert await outbox_events(chat_app) == []
