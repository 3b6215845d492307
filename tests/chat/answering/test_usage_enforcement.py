"""The quota loop end to end with the real services: chat's answers are metered by usage from
tokens.consumed; crossing the daily limit publishes quota.changed and chat refuses the next
question with 429 before any model call; a plan upgrade lifts it, and so does the day ending."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from docuchat_usage.models import Plan
from docuchat_usage.quotas.service import QuotaService
from tests.chat.conftest import CRAZY_ONES, ChatService, HttpService, index, make_kb
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers import eventually
from tests.usage.conftest import UsageService, usage  # noqa: F401 (the fixture)
from tests.usage.test_metering import tenant_created

QUESTION = "What do the crazy ones do, according to the text?"
# Tokens a day: one answer with its passages (~300 LLM tokens) spends it; indexing the document
# (~250 embedding tokens) does not count against it.
DAILY_LIMIT = 200


async def _spent(chat: ChatService, tenant: uuid.UUID) -> None:
    await chat.quota.wait_for(
        tenant, lambda s: s is not None and "daily_tokens" in s.exceeded, timeout=30
    )


async def _ask(chat: ChatService, tenant: uuid.UUID, user: uuid.UUID, session: str) -> Any:
    return await chat.ask(tenant, user, session, QUESTION)


async def test_spending_the_daily_tokens_stops_chat_until_an_upgrade_or_the_next_day(
    chat: ChatService,
    ingest: HttpService,
    usage: UsageService,  # noqa: F811
    fake_openai: FakeOpenAI,
) -> None:
    tenant, user = uuid.uuid4(), uuid.uuid4()
    async with usage.runtime.database.transaction() as session:  # plans are data
        await session.execute(
            update(Plan).where(Plan.id == "free").values(daily_tokens=DAILY_LIMIT)
        )
    await usage.publish(tenant_created(tenant))
    await chat.quota.wait_for(tenant, lambda s: s is not None and s.plan == "free", timeout=30)
    kb_id = await make_kb(ingest, tenant)
    await index(ingest, tenant, kb_id, CRAZY_ONES)
    chat_session = (await chat.new_session(tenant, user, kb_id))["id"]

    answered = await _ask(chat, tenant, user, chat_session)
    assert answered.status_code == 201, answered.text
    spent_tokens = answered.json()["usage"]["total_tokens"]

    # chat's outbox → tokens.consumed → usage's counters → quota.changed → chat's guard
    await _spent(chat, tenant)
    answer_usage = answered.json()["usage"]

    async def metered() -> dict[str, Any] | None:
        report: dict[str, Any] = (
            await usage.client.get("/api/v1/usage", headers=usage.token(tenant))
        ).json()
        tokens = report["tokens"]
        chat_metered = (tokens["prompt"], tokens["completion"]) == (
            answer_usage["prompt_tokens"],
            answer_usage["completion_tokens"],
        )
        return report if chat_metered and tokens["embedding"] > 0 else None

    report = await eventually(metered, what="chat's and ingest's tokens in /usage")
    assert report["tokens"]["total"] == spent_tokens + report["tokens"]["embedding"]
    models = {m["model"]: m for m in report["by_model"]}
    assert models["gpt-4o-mini"]["total"] == spent_tokens
    assert models["gpt-4o-mini"]["embedding"] == 0
    [embedding_model] = set(models) - {"gpt-4o-mini"}
    assert models[embedding_model]["embedding"] == report["tokens"]["embedding"]
    by_user = {u["user_id"]: u for u in report["by_user"]}
    assert by_user[str(user)]["total"] == spent_tokens
    assert report["limits"]["daily_tokens"]["remaining"] == 0

    model_calls = len(fake_openai.chat_requests)
    refused = await _ask(chat, tenant, user, chat_session)
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "quota_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert len(fake_openai.chat_requests) == model_calls, "a refused question reached the model"

    upgraded = await usage.client.put(
        "/api/v1/usage/plan", json={"plan": "pro"}, headers=usage.token(tenant)
    )
    assert upgraded.status_code == 200, upgraded.text
    await chat.quota.wait_for(tenant, lambda s: s is not None and s.plan == "pro", timeout=30)
    on_pro = await _ask(chat, tenant, user, chat_session)
    assert on_pro.status_code == 201, on_pro.text
    chat_total = spent_tokens + on_pro.json()["usage"]["total_tokens"]

    async def all_metered() -> bool:
        tokens = (await usage.client.get("/api/v1/usage", headers=usage.token(tenant))).json()[
            "tokens"
        ]
        return bool(tokens["prompt"] + tokens["completion"] == chat_total)

    # (usage has every answer of today before we pretend the day is over)
    await eventually(all_metered, what="the answer on the pro plan metered")

    # Back on the small plan the day's tokens are spent again, until the day ends.
    await usage.client.put("/api/v1/usage/plan", json={"plan": "free"}, headers=usage.token(tenant))
    await _spent(chat, tenant)
    assert (await _ask(chat, tenant, user, chat_session)).status_code == 429
    tomorrow = datetime.combine(
        datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC
    ) + timedelta(seconds=1)
    async with usage.runtime.database.transaction() as session:
        assert await QuotaService(session, usage.runtime.outbox).reset_due(now=tomorrow) >= 1
    usage.runtime.relay.wake()
    await chat.quota.wait_for(tenant, lambda s: s is not None and not s.exceeded, timeout=30)

    async def answers_again() -> bool:
        return bool((await _ask(chat, tenant, user, chat_session)).status_code == 201)

    await eventually(answers_again, what="chat to answer after the reset")
