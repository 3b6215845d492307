"""Quota state: thresholds, spent limits, plan changes and period resets publish quota.changed."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from docuchat_common.events.topics import QUOTA, ensure_topics
from docuchat_usage.quotas.service import QuotaService
from tests.helpers import eventually
from tests.usage.conftest import UsageService
from tests.usage.test_metering import chat_tokens, embedding_tokens, tenant_created


class QuotaTopic:
    """Reads docuchat.quota from the start: what an enforcer would see."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.seen: list[dict[str, Any]] = []

    async def states(self, tenant: uuid.UUID) -> list[dict[str, Any]]:
        batch = await self.consumer.getmany(timeout_ms=100)
        for records in batch.values():
            for record in records:
                # Other tests put tombstones and garbage on this shared topic: skip them.
                try:
                    self.seen.append(json.loads(record.value))
                except (TypeError, ValueError):
                    continue
        return [
            e["data"]
            for e in self.seen
            if isinstance(e, dict) and e.get("tenant_id") == str(tenant) and "data" in e
        ]

    async def latest(self, tenant: uuid.UUID, **expected: Any) -> dict[str, Any]:
        async def match() -> dict[str, Any] | None:
            states = await self.states(tenant)
            if states and all(states[-1].get(k) == v for k, v in expected.items()):
                return states[-1]
            return None

        return await eventually(match, what=f"quota.changed with {expected}")


@pytest.fixture
async def quota_topic(infra: Any) -> AsyncIterator[QuotaTopic]:
    # The relay creates the topic when it first runs, maybe after this: a consumer assigned to
    # a topic that does not exist yet sees it only at its next metadata refresh (minutes).
    await ensure_topics(infra.bootstrap_servers, [QUOTA])
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(QUOTA.name, p) for p in range(QUOTA.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    try:
        yield QuotaTopic(consumer)
    finally:
        await consumer.stop()


async def test_a_new_tenant_gets_its_plan_limits_published(
    usage: UsageService, quota_topic: QuotaTopic
) -> None:
    tenant = uuid.uuid4()
    await usage.publish(tenant_created(tenant))
    state = await quota_topic.latest(tenant, plan="free")
    assert state["exceeded"] == []
    assert state["limits"]["daily_tokens"]["limit"] == 50_000
    assert state["max_file_bytes"] == 10 * 1024 * 1024


async def test_warning_then_spent_then_a_plan_upgrade_lifts_it(
    usage: UsageService, quota_topic: QuotaTopic
) -> None:
    tenant = uuid.uuid4()
    await usage.publish(tenant_created(tenant), chat_tokens(tenant, None, 40_000, 1_000))
    warned = await quota_topic.latest(tenant, warnings=["daily_tokens"])
    assert warned["exceeded"] == []

    await usage.publish(chat_tokens(tenant, None, 9_000, 500))
    spent = await quota_topic.latest(tenant, exceeded=["daily_tokens"])
    daily = spent["limits"]["daily_tokens"]
    assert (daily["used"], daily["remaining"]) == (50_500, 0)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert daily["resets_at"].startswith(tomorrow)

    # Small increments inside the same bounds are not news.
    published = len(await quota_topic.states(tenant))
    await usage.publish(chat_tokens(tenant, None, 10, 10))
    await eventually(lambda: _used_is(usage, tenant, 50_520), what="the extra tokens metered")
    assert len(await quota_topic.states(tenant)) == published

    member = await usage.client.put(
        "/api/v1/usage/plan", json={"plan": "pro"}, headers=usage.token(tenant, role="member")
    )
    assert member.status_code == 403
    upgraded = await usage.client.put(
        "/api/v1/usage/plan", json={"plan": "pro"}, headers=usage.token(tenant)
    )
    assert upgraded.status_code == 200, upgraded.text
    assert upgraded.json()["plan"]["id"] == "pro"
    lifted = await quota_topic.latest(tenant, plan="pro")
    assert lifted["exceeded"] == []
    unknown = await usage.client.put(
        "/api/v1/usage/plan", json={"plan": "platinum"}, headers=usage.token(tenant)
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_plan"


async def test_indexing_a_large_upload_does_not_spend_the_chat_token_limits(
    usage: UsageService, quota_topic: QuotaTopic
) -> None:
    tenant = uuid.uuid4()
    await usage.publish(tenant_created(tenant))
    await quota_topic.latest(tenant, plan="free")
    # One large upload's embeddings: more than the free plan's day and month of tokens.
    await usage.publish(embedding_tokens(tenant, 600_000), chat_tokens(tenant, None, 900, 100))

    async def metered() -> dict[str, Any] | None:
        body = (await usage.client.get("/api/v1/usage", headers=usage.token(tenant))).json()
        return body if body["tokens"]["total"] == 601_000 else None

    body = await eventually(metered, what="the tokens metered")
    assert body["tokens"]["embedding"] == 600_000
    assert body["limits"]["daily_tokens"]["used"] == 1_000
    assert body["limits"]["monthly_tokens"]["used"] == 1_000
    latest = (await quota_topic.states(tenant))[-1]
    assert latest["exceeded"] == []
    assert latest["warnings"] == []


async def test_the_day_ending_lifts_a_spent_daily_quota(
    usage: UsageService, quota_topic: QuotaTopic
) -> None:
    tenant = uuid.uuid4()
    await usage.publish(tenant_created(tenant), chat_tokens(tenant, None, 60_000, 0))
    await quota_topic.latest(tenant, exceeded=["daily_tokens"])

    just_after_midnight = datetime.combine(
        datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC
    ) + timedelta(seconds=1)
    async with usage.runtime.database.transaction() as session:
        published = await QuotaService(session, usage.runtime.outbox).reset_due(
            now=just_after_midnight
        )
    assert published >= 1
    usage.runtime.relay.wake()
    reset = await quota_topic.latest(tenant, exceeded=[])
    assert reset["limits"]["daily_tokens"]["used"] == 0
    # The monthly count goes on, unless tomorrow starts a new month.
    new_month = just_after_midnight.day == 1
    assert reset["limits"]["monthly_tokens"]["used"] == (0 if new_month else 60_000)


async def _used_is(usage: UsageService, tenant: uuid.UUID, used: int) -> bool:
    body = (await usage.client.get("/api/v1/usage", headers=usage.token(tenant))).json()
    return bool(body["limits"]["daily_tokens"]["used"] == used)


async def test_an_enforcer_refuses_the_tenant_until_the_plan_is_upgraded(
    usage: UsageService, infra: Any
) -> None:
    from docuchat_common.errors import QuotaExceeded
    from docuchat_common.quota import QuotaGuard

    guard = QuotaGuard(infra.bootstrap_servers, service="chat-test")
    await guard.start()
    try:
        tenant, neighbour = uuid.uuid4(), uuid.uuid4()
        await usage.publish(
            tenant_created(tenant), tenant_created(neighbour), chat_tokens(tenant, None, 50_000, 1)
        )
        await guard.wait_for(
            tenant, lambda s: s is not None and s.exceeded == ["daily_tokens"], timeout=30
        )
        with pytest.raises(QuotaExceeded) as refused:
            guard.check(tenant)
        assert refused.value.status == 429
        assert 0 < refused.value.retry_after <= 24 * 3600
        await guard.wait_for(neighbour, lambda s: s is not None, timeout=30)
        guard.check(neighbour)  # another tenant is unaffected

        await usage.client.put(
            "/api/v1/usage/plan", json={"plan": "pro"}, headers=usage.token(tenant)
        )
        await guard.wait_for(tenant, lambda s: s is not None and s.plan == "pro", timeout=30)
        guard.check(tenant)
    finally:
        await guard.stop()


async def test_an_upgrade_before_tenant_created_arrives_is_kept(
    usage: UsageService, quota_topic: QuotaTopic
) -> None:
    """An owner upgrades right after signing up, before usage has read tenant.created."""
    tenant = uuid.uuid4()
    upgraded = await usage.client.put(
        "/api/v1/usage/plan", json={"plan": "enterprise"}, headers=usage.token(tenant)
    )
    assert upgraded.status_code == 200, upgraded.text
    assert upgraded.json()["plan"]["id"] == "enterprise"
    assert (await quota_topic.latest(tenant, plan="enterprise"))["exceeded"] == []

    await usage.publish(tenant_created(tenant, plan="free"))
    # tenant.created, handled, publishes the state again: still the upgraded plan
    states = await quota_topic.states(tenant)

    async def handled_twice() -> list[Any] | None:
        seen = await quota_topic.states(tenant)
        return seen if len(seen) > len(states) else None

    latest = (await eventually(handled_twice, what="tenant.created handled"))[-1]
    assert latest["plan"] == "enterprise"
    current = await usage.client.get("/api/v1/usage/plan", headers=usage.token(tenant))
    assert current.json()["plan"]["id"] == "enterprise"
