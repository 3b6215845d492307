"""The same exchange over a WebSocket, and clients (or the server) that go away mid-answer:
generation stops, what was generated is stored as incomplete and metered."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from httpx_ws import WebSocketUpgradeError, aconnect_ws
from sqlalchemy import text
from sse_starlette.sse import AppStatus

from docuchat_chat.llm.tokens import TokenCounter
from tests.chat.answering.test_ask import (
    DISTANCE_EDUCATION,
    UNANSWERABLE,
    assert_cites_distance_education,
)
from tests.chat.conftest import (
    ChatService,
    Corpus,
    HttpService,
    fake_llm,
    outbox_events,
    serve_chat,
    sse_events,
)
from tests.fakes.openai_server import CITED_ANSWER, FakeOpenAI, message_text
from tests.helpers import eventually

LONG_ANSWER = "The act [1] " + " ".join(f"requires{i}" for i in range(80))


async def ws_exchange(ws: Any, content: str) -> list[dict[str, Any]]:
    await ws.send_json({"content": content})
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] not in ("done", "error"):
        frames.append(await ws.receive_json())
    return frames


async def test_a_websocket_carries_the_same_exchange(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    url = f"{chat.url.replace('http', 'ws')}/api/v1/sessions/{session['id']}/ws"
    async with aconnect_ws(url, chat.client, headers=chat.headers(corpus.tenant_id, user)) as ws:
        first = await ws_exchange(ws, DISTANCE_EDUCATION)
        assert "".join(f["text"] for f in first if f["type"] == "token") == CITED_ANSWER
        citations, done = first[-2], first[-1]
        assert citations["type"] == "citations"
        assert_cites_distance_education(citations["citations"], corpus)
        assert done["usage"]["completion_tokens"] > 0

        second = await ws_exchange(ws, UNANSWERABLE)  # the socket stays open for more
        assert [f["type"] for f in second] == ["token", "citations", "done"]
        assert second[1]["citations"] == []

        await ws.send_text("not json")
        assert (await ws.receive_json())["code"] == "validation_error"

    stored = await chat.messages(corpus.tenant_id, user, session["id"])
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1]["id"] == done["message_id"] and stored[1]["content"] == CITED_ANSWER
    assert (stored[1]["grounded"], stored[3]["grounded"]) == (True, False)
    assert len(fake_openai.chat_requests) == 1


async def test_a_websocket_for_someone_elses_session_answers_not_found(
    chat: ChatService, corpus: Corpus
) -> None:
    session = await chat.new_session(corpus.tenant_id, uuid.uuid4(), corpus.knowledge_base_id)
    url = f"{chat.url.replace('http', 'ws')}/api/v1/sessions/{session['id']}/ws"
    other = chat.headers(corpus.tenant_id, uuid.uuid4())
    # refused at the upgrade, with the HTTP answer: a problem+json 404
    with pytest.raises(WebSocketUpgradeError) as refused:
        async with aconnect_ws(url, chat.client, headers=other):
            pass
    # (httpx-ws closes the refused response's stream: its status and headers remain)
    response = refused.value.response
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def assert_partial_answer_stored_and_metered(
    chat: ChatService,
    corpus: Corpus,
    fake_openai: FakeOpenAI,
    user: uuid.UUID,
    session_id: str,
    received: str,
) -> None:
    async def provider_hung_up() -> bool:
        return fake_openai.hangups == 1

    # Generation stops at the provider too: chat hangs up on the model's stream, which the
    # model server sees before it has sent the whole answer.
    await eventually(provider_hung_up, what="chat to hang up on the model's stream")
    assert fake_openai.frames_sent < len(LONG_ANSWER.split())

    async def stored() -> dict[str, Any] | None:
        messages = await chat.messages(corpus.tenant_id, user, session_id)
        return messages[1] if len(messages) == 2 else None

    answer = await eventually(stored, what="the partial answer stored")
    assert (answer["complete"], answer["status"], answer["grounded"]) == (
        False,
        "incomplete",
        True,
    )
    assert answer["content"].startswith(received)
    assert len(answer["content"]) < len(LONG_ANSWER)  # generation stopped with the client
    assert [c["number"] for c in answer["citations"]] == [1]

    counted = TokenCounter().count_text(answer["content"], "gpt-4o-mini")
    assert answer["usage"]["completion_tokens"] == counted
    assert answer["usage"]["prompt_tokens"] > 0
    events = {e["type"]: e["data"] for e in await outbox_events(chat)}
    assert events["tokens.consumed"]["completion_tokens"] == counted
    assert events["tokens.consumed"]["prompt_tokens"] == answer["usage"]["prompt_tokens"]
    assert events["message.completed"]["complete"] is False


async def test_a_client_leaving_mid_stream_stops_the_answer_and_its_part_is_metered(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = LONG_ANSWER
    fake_openai.token_delay = 0.05
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    received: list[str] = []
    async with chat.client.stream(
        "POST",
        f"/api/v1/sessions/{session['id']}/messages",
        json={"content": DISTANCE_EDUCATION, "stream": True},
        headers=chat.headers(corpus.tenant_id, user),
    ) as response:
        async for kind, data in sse_events(response):
            assert kind == "token"
            received.append(data["text"])
            if len(received) == 5:
                break  # leaving the block hangs up
    await assert_partial_answer_stored_and_metered(
        chat, corpus, fake_openai, user, session["id"], "".join(received)
    )


async def test_a_websocket_closed_mid_answer_stores_and_meters_the_part(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reply = LONG_ANSWER
    fake_openai.token_delay = 0.05
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    url = f"{chat.url.replace('http', 'ws')}/api/v1/sessions/{session['id']}/ws"
    received: list[str] = []
    async with aconnect_ws(url, chat.client, headers=chat.headers(corpus.tenant_id, user)) as ws:
        await ws.send_json({"content": DISTANCE_EDUCATION})
        while len(received) < 5:
            frame = await ws.receive_json()
            assert frame["type"] == "token"
            received.append(frame["text"])
    await assert_partial_answer_stored_and_metered(
        chat, corpus, fake_openai, user, session["id"], "".join(received)
    )
    prompt = fake_openai.chat_requests[0].body["messages"]
    assert message_text(prompt[-1]) == DISTANCE_EDUCATION


async def test_a_websocket_outliving_its_token_is_told_to_reconnect(
    chat: ChatService, corpus: Corpus, fake_openai: FakeOpenAI
) -> None:
    user = uuid.uuid4()
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    claims = {
        "sub": str(user),
        "tid": str(corpus.tenant_id),
        "role": "member",
        "scopes": ["chat"],
    }
    # valid for the upgrade, but already inside the service's 5 s margin before expiry: by the
    # time a question comes, the socket has outlived what the token may still be trusted for
    token = chat.signer.keys.sign(claims, audience="docuchat", ttl_seconds=3)
    url = f"{chat.url.replace('http', 'ws')}/api/v1/sessions/{session['id']}/ws"
    async with aconnect_ws(url, chat.client, headers={"Authorization": f"Bearer {token}"}) as ws:
        (error,) = await ws_exchange(ws, DISTANCE_EDUCATION)
    assert (error["code"], error["status"]) == ("token_expired", 401)
    assert fake_openai.chat_requests == []


async def test_a_server_shutting_down_mid_answer_ends_the_stream_with_a_final_event(
    settings_for: Any,
    infra: Any,
    keys_dir: Path,
    ingest: HttpService,
    corpus: Corpus,
    fake_openai: FakeOpenAI,
) -> None:
    """SIGTERM (a pod being replaced) while an answer streams: the client gets a last event
    saying so, and the answer so far is stored and metered, before the server cancels it."""
    fake_openai.reply = LONG_ANSWER
    fake_openai.token_delay = 0.1  # ~8 s of answer, longer than the grace below
    user = uuid.uuid4()
    try:
        async with serve_chat(
            settings_for,
            infra,
            keys_dir,
            retrieval_url=ingest.url,
            stream_shutdown_grace_seconds=1.5,
            **fake_llm(fake_openai),
        ) as chat:
            assert chat.server is not None
            session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
            events: list[tuple[str, Any]] = []
            async with chat.client.stream(
                "POST",
                f"/api/v1/sessions/{session['id']}/messages",
                json={"content": DISTANCE_EDUCATION, "stream": True},
                headers=chat.headers(corpus.tenant_id, user),
            ) as response:
                async for kind, data in sse_events(response):
                    events.append((kind, data))
                    if len(events) == 3:
                        # What uvicorn's SIGTERM handler does (calling it would also
                        # re-raise the signal at this test process when the server exits).
                        chat.server.should_exit = True
                        AppStatus.should_exit = True
            received = "".join(d["text"] for kind, d in events if kind == "token")

            kind, last = events[-1]
            assert (kind, last["code"], last["status"]) == ("error", "shutting_down", 503)
            async with chat.runtime.database.transaction() as db:
                rows = (
                    await db.execute(
                        text(
                            "SELECT content, complete FROM messages "
                            "WHERE session_id = :s AND role = 'assistant'"
                        ),
                        {"s": session["id"]},
                    )
                ).all()
            [(content, complete)] = rows
            assert complete is False
            assert content.startswith(received) and len(content) < len(LONG_ANSWER)
            metered = [e for e in await outbox_events(chat) if e["type"] == "tokens.consumed"]
            assert metered[0]["data"]["completion_tokens"] == TokenCounter().count_text(
                content, "gpt-4o-mini"
            )
    finally:
        AppStatus.should_exit = False  # process-wide in sse-starlette: later servers go on
