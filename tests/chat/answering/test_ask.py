"""Asking about indexed corpus documents: streamed and whole answers cite the right document
and page, are stored with their usage, and are announced through the outbox; a question the
documents cannot answer costs no model call."""

from __future__ import annotations

import uuid
from typing import Any

from docuchat_chat.answering.prompt import NOT_IN_DOCUMENTS
from tests.chat.conftest import (
    ChatService,
    Corpus,
    outbox_events,
    sse_events,
    stored_session,
)
from tests.fakes.openai_server import (
    CITED_ANSWER,
    NO_ANSWER,
    FakeOpenAI,
    count_tokens,
    message_text,
)

DISTANCE_EDUCATION = "What does the DMCA say about distance education?"
DISTANCE_EDUCATION_PAGE = 15
UNANSWERABLE = "What is the boiling point of mercury on Jupiter?"


async def stream_answer(
    chat: ChatService, tenant: uuid.UUID, user: uuid.UUID, session_id: str, content: str
) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    async with chat.client.stream(
        "POST",
        f"/api/v1/sessions/{session_id}/messages",
        json={"content": content, "stream": True},
        headers=chat.headers(tenant, user),
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in sse_events(response):
            events.append(event)
    return events


def assert_cites_distance_education(citations: list[dict[str, Any]], corpus: Corpus) -> None:
    assert [c["number"] for c in citations] == [1]
    cited = citations[0]
    assert cited["document_id"] == corpus.dmca_id
    assert cited["filename"] == "pdfminer-dmca.pdf"
    assert cited["page"] <= DISTANCE_EDUCATION_PAGE <= cited["page_end"]
    assert "distance education" in cited["text"].lower()
    assert cited["chunk_id"]


async def test_a_question_about_a_document_streams_a_cited_answer_that_is_stored(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    assert session["title"] is None

    events = await stream_answer(chat, corpus.tenant_id, user, session["id"], DISTANCE_EDUCATION)
    kinds = [kind for kind, _ in events]
    assert kinds[-2:] == ["citations", "done"]
    assert set(kinds[:-2]) == {"token"} and len(kinds) - 2 == count_tokens(CITED_ANSWER)
    assert "".join(data["text"] for kind, data in events if kind == "token") == CITED_ANSWER
    citations, done = events[-2][1], events[-1][1]
    assert_cites_distance_education(citations, corpus)

    # the model saw the numbered passage and the question, and streamed with usage
    (call,) = fake_openai.chat_requests
    assert call.body["stream"] is True and call.body["model"] == "gpt-4o-mini"
    prompt = [message_text(m) for m in call.body["messages"]]
    assert call.body["messages"][0]["role"] == "system"
    assert "[1] (pdfminer-dmca.pdf, page" in prompt[0]
    assert prompt[-1] == DISTANCE_EDUCATION
    assert done["usage"] == {
        "prompt_tokens": sum(map(count_tokens, prompt)),
        "completion_tokens": count_tokens(CITED_ANSWER),
        "total_tokens": sum(map(count_tokens, prompt)) + count_tokens(CITED_ANSWER),
        "metered": True,
    }

    question, answer = await chat.messages(corpus.tenant_id, user, session["id"])
    assert (question["role"], question["content"], question["status"]) == (
        "user",
        DISTANCE_EDUCATION,
        "answered",
    )
    assert answer["id"] == done["message_id"]
    assert (answer["role"], answer["content"], answer["grounded"]) == (
        "assistant",
        CITED_ANSWER,
        True,
    )
    assert answer["citations"] == citations and answer["usage"] == done["usage"]
    assert (answer["complete"], answer["status"], answer["model"]) == (
        True,
        "complete",
        "gpt-4o-mini",
    )
    titled = await chat.client.get(
        f"/api/v1/sessions/{session['id']}", headers=chat.headers(corpus.tenant_id, user)
    )
    assert titled.json()["title"] == "What does the DMCA say about distance education"
    assert titled.json()["last_message_at"] is not None

    events_out = {e["type"]: e for e in await outbox_events(chat)}
    consumed = events_out["tokens.consumed"]
    assert consumed["tenant_id"] == str(corpus.tenant_id)
    assert (
        consumed["data"].items()
        >= {
            "kind": "chat",
            "model": "gpt-4o-mini",
            "user_id": str(user),
            "prompt_tokens": done["usage"]["prompt_tokens"],
            "completion_tokens": done["usage"]["completion_tokens"],
            "reference": done["message_id"],
        }.items()
    )
    completed = events_out["message.completed"]["data"]
    assert completed["message_id"] == done["message_id"]
    assert (completed["grounded"], completed["citations"], completed["complete"]) == (True, 1, True)


async def test_a_question_the_documents_cannot_answer_costs_no_model_call(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)

    whole = await chat.ask(corpus.tenant_id, user, session["id"], UNANSWERABLE)
    assert whole.status_code == 201, whole.text
    body = whole.json()
    assert (body["role"], body["content"], body["grounded"], body["citations"]) == (
        "assistant",
        NOT_IN_DOCUMENTS,
        False,
        [],
    )
    assert body["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "metered": False,
    }

    streamed = await stream_answer(chat, corpus.tenant_id, user, session["id"], UNANSWERABLE)
    assert [kind for kind, _ in streamed] == ["token", "citations", "done"]
    assert streamed[0][1] == {"text": NOT_IN_DOCUMENTS} and streamed[1][1] == []

    assert fake_openai.chat_requests == []
    types = [e["type"] for e in await outbox_events(chat)]
    assert types == ["message.completed", "message.completed"]  # and no tokens.consumed
    stored = await chat.messages(corpus.tenant_id, user, session["id"])
    assert [(m["role"], m["grounded"]) for m in stored] == [
        ("user", None),
        ("assistant", False),
        ("user", None),
        ("assistant", False),
    ]


async def test_streamed_and_whole_answers_store_the_same_message(
    chat: ChatService, corpus: Corpus
) -> None:
    user = uuid.uuid4()
    first = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    second = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)

    whole = await chat.ask(corpus.tenant_id, user, first["id"], DISTANCE_EDUCATION)
    assert whole.status_code == 201, whole.text
    streamed = await stream_answer(chat, corpus.tenant_id, user, second["id"], DISTANCE_EDUCATION)

    (_, stored_whole) = await chat.messages(corpus.tenant_id, user, first["id"])
    (_, stored_streamed) = await chat.messages(corpus.tenant_id, user, second["id"])
    assert whole.json() == stored_whole
    assert stored_streamed["id"] == streamed[-1][1]["message_id"]
    same = ("role", "content", "grounded", "citations", "usage", "model", "complete", "status")
    assert {k: stored_whole[k] for k in same} == {k: stored_streamed[k] for k in same}
    assert_cites_distance_education(stored_whole["citations"], corpus)


async def test_earlier_turns_go_with_the_next_question(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    await chat.ask(corpus.tenant_id, user, session["id"], DISTANCE_EDUCATION)
    follow_up = "Which study about digital technologies does it require?"
    answered = await chat.ask(corpus.tenant_id, user, session["id"], follow_up)
    assert answered.status_code == 201, answered.text

    last = fake_openai.chat_requests[-1].body["messages"]
    assert [(m["role"], message_text(m)) for m in last[1:]] == [
        ("user", DISTANCE_EDUCATION),
        ("assistant", CITED_ANSWER),
        ("user", follow_up),
    ]


async def test_a_knowledge_base_of_another_tenant_is_not_found(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    intruder, user = uuid.uuid4(), uuid.uuid4()
    created = await chat.client.post(
        "/api/v1/sessions",
        json={"knowledge_base_id": str(corpus.knowledge_base_id)},
        headers=chat.headers(intruder, user),
    )
    assert created.status_code == 404, created.text
    assert created.json()["code"] == "knowledge_base_not_found"
    # a session that got past creation anyway is scoped again by ingest at every question
    session_id = await stored_session(chat, intruder, user, corpus.knowledge_base_id)
    answer = await chat.ask(intruder, user, session_id, DISTANCE_EDUCATION)
    assert answer.status_code == 404, answer.text
    assert answer.json()["code"] == "knowledge_base_not_found"
    assert fake_openai.chat_requests == []


async def test_a_blank_or_overlong_question_is_refused_before_anything_is_stored(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    for content in ("   ", "why? " * 500):
        refused = await chat.ask(corpus.tenant_id, user, session["id"], content)
        assert refused.status_code == 422, refused.text
    # stream is a JSON boolean: "yes" is refused, not guessed at
    for stream in ("yes", 1, "true"):
        refused = await chat.client.post(
            f"/api/v1/sessions/{session['id']}/messages",
            json={"content": "What is distance education?", "stream": stream},
            headers=chat.headers(corpus.tenant_id, user),
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["loc"] == ["body", "stream"]
    assert await chat.messages(corpus.tenant_id, user, session["id"]) == []
    assert fake_openai.requests == []


async def test_an_answer_citing_no_passage_is_not_grounded_but_is_metered(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = NO_ANSWER  # the model found nothing in the passages it was given
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    answer = await chat.ask(corpus.tenant_id, user, session["id"], DISTANCE_EDUCATION)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["content"], body["grounded"], body["citations"]) == (NO_ANSWER, False, [])
    assert body["usage"]["completion_tokens"] == count_tokens(NO_ANSWER)
    assert sorted(e["type"] for e in await outbox_events(chat)) == [
        "message.completed",
        "tokens.consumed",
    ]
