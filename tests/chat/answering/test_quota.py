"""Quotas are checked before any retrieval or model call: a spent token quota is a 429 with
Retry-After at the reset; a model outside the plan is refused; other tenants are unaffected."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from httpx_ws import aconnect_ws

from docuchat_common.events.catalog import QuotaChangedData, QuotaLimitState
from tests.chat.answering.test_ask import DISTANCE_EDUCATION
from tests.chat.conftest import ChatService, Corpus, HttpService, make_kb, outbox_events
from tests.fakes.openai_server import FakeOpenAI


def spent_today(resets_at: datetime) -> QuotaChangedData:
    return QuotaChangedData(
        plan="free",
        limits={
            "daily_tokens": QuotaLimitState(
                used=50_000, limit=50_000, remaining=0, resets_at=resets_at
            ),
            "monthly_tokens": QuotaLimitState(used=50_000, limit=500_000, remaining=450_000),
        },
        exceeded=["daily_tokens"],
    )


async def test_a_spent_quota_refuses_before_any_model_call_and_others_go_on(
    chat: ChatService, corpus: Corpus, ingest: HttpService, fake_openai: FakeOpenAI
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    # the spent tenant asks about its own knowledge base: nothing may reach the model
    session = await chat.new_session(tenant, user, await make_kb(ingest, tenant))
    resets_at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    await chat.set_quota(tenant, spent_today(resets_at))

    for stream in (False, True):
        refused = await chat.client.post(
            f"/api/v1/sessions/{session['id']}/messages",
            json={"content": DISTANCE_EDUCATION, "stream": stream},
            headers=chat.headers(tenant, user),
        )
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert (body["code"], body["limit"]) == ("quota_exceeded", "daily_tokens")
        assert datetime.fromisoformat(body["resets_at"]) == resets_at
        assert 3 * 3600 - 120 <= int(refused.headers["retry-after"]) <= 3 * 3600 + 1

    url = f"{chat.url.replace('http', 'ws')}/api/v1/sessions/{session['id']}/ws"
    async with aconnect_ws(url, chat.client, headers=chat.headers(tenant, user)) as ws:
        await ws.send_json({"content": DISTANCE_EDUCATION})
        frame = await ws.receive_json()
    assert (frame["type"], frame["status"], frame["code"]) == ("error", 429, "quota_exceeded")
    # a session that is not there is a 404 first, spent or not
    missing = await chat.client.post(
        f"/api/v1/sessions/{uuid.uuid4()}/messages",
        json={"content": DISTANCE_EDUCATION},
        headers=chat.headers(tenant, user),
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "session_not_found")

    assert fake_openai.chat_requests == []
    assert await chat.messages(tenant, user, session["id"]) == []
    assert await outbox_events(chat) == []

    other_user = uuid.uuid4()
    other = await chat.new_session(corpus.tenant_id, other_user, corpus.knowledge_base_id)
    answered = await chat.ask(corpus.tenant_id, other_user, other["id"], DISTANCE_EDUCATION)
    assert answered.status_code == 201, answered.text
    assert answered.json()["grounded"] is True


async def test_a_quota_whose_period_ended_is_not_enforced(
    chat: ChatService, corpus: Corpus
) -> None:
    user = uuid.uuid4()
    await chat.set_quota(corpus.tenant_id, spent_today(datetime.now(UTC) - timedelta(seconds=1)))
    session = await chat.new_session(corpus.tenant_id, user, corpus.knowledge_base_id)
    answered = await chat.ask(corpus.tenant_id, user, session["id"], DISTANCE_EDUCATION)
    assert answered.status_code == 201, answered.text


async def test_a_model_outside_the_plan_is_refused(
    chat: ChatService, ingest: HttpService, fake_openai: FakeOpenAI
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    session = await chat.new_session(tenant, user, await make_kb(ingest, tenant))
    await chat.set_quota(
        tenant, QuotaChangedData(plan="free", limits={}, allowed_models=["gpt-4o"])
    )
    refused = await chat.ask(tenant, user, session["id"], DISTANCE_EDUCATION)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "model_not_allowed"
    assert refused.json()["allowed_models"] == ["gpt-4o"]
    assert fake_openai.chat_requests == []
    assert await chat.messages(tenant, user, session["id"]) == []


async def test_questions_over_a_websocket_count_against_the_plans_request_rate(
    chat: ChatService, ingest: HttpService
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    empty_kb = await make_kb(ingest, tenant)  # answered at once: "not in your documents"
    session = await chat.new_session(tenant, user, empty_kb)
    await chat.set_quota(tenant, QuotaChangedData(plan="free", limits={}, requests_per_minute=1))
    url = f"{chat.url.replace('http', 'ws')}/api/v1/sessions/{session['id']}/ws"
    async with aconnect_ws(url, chat.client, headers=chat.headers(tenant, user)) as ws:
        await ws.send_json({"content": DISTANCE_EDUCATION})
        first = await ws.receive_json()
        while first["type"] not in ("done", "error"):
            first = await ws.receive_json()
        await ws.send_json({"content": DISTANCE_EDUCATION})
        second = await ws.receive_json()
    assert first["type"] == "done", first
    assert (second["type"], second["status"], second["code"]) == ("error", 429, "rate_limited")


async def test_a_question_over_the_plans_search_rate_waits_like_any_rate_limit(
    chat: ChatService, ingest: HttpService, fake_openai: FakeOpenAI
) -> None:
    """A question's search counts against the tenant's request rate at ingest, with the
    tenant's own searches: when that is spent the caller gets 429 rate_limited with Retry-After,
    not a 502."""
    tenant, user = uuid.uuid4(), uuid.uuid4()
    kb_id = await make_kb(ingest, tenant)
    state = QuotaChangedData(plan="free", limits={}, requests_per_minute=2)
    await chat.set_quota(tenant, state)
    await ingest.runtime.state["quota"].wait_for(tenant, lambda s: s == state, timeout=30)
    for _ in range(2):  # the tenant's own searches spend ingest's count
        searched = await ingest.client.post(
            f"/api/v1/knowledge-bases/{kb_id}/search",
            json={"query": "copyright"},
            headers=ingest.headers(tenant, user),
        )
        assert searched.status_code == 200, searched.text
    session = await chat.new_session(tenant, user, kb_id)

    refused = await chat.ask(tenant, user, session["id"], DISTANCE_EDUCATION)

    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert fake_openai.chat_requests == []
