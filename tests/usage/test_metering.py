"""Tokens and documents from events become usage a tenant can read, exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from docuchat_common.events.catalog import (
    DocumentDeleted,
    DocumentDeletedData,
    DocumentIndexed,
    DocumentIndexedData,
    TenantCreated,
    TenantCreatedData,
    TokensConsumed,
    TokensConsumedData,
)
from docuchat_common.events.consumer import DLQ_CONSUMER_HEADER
from docuchat_usage.metering.consumers import TOKENS_GROUP
from docuchat_usage.models import UsageBucket
from tests.helpers import allow_connections, eventually, read_topic
from tests.usage.conftest import UsageService


def tenant_created(tenant: uuid.UUID, plan: str = "free") -> TenantCreated:
    return TenantCreated(
        tenant_id=tenant,
        source="auth",
        data=TenantCreatedData(tenant_id=tenant, name="T", owner_user_id=uuid.uuid4(), plan=plan),
    )


def chat_tokens(
    tenant: uuid.UUID,
    user: uuid.UUID | None,
    prompt: int,
    completion: int,
    *,
    model: str = "gpt-4o-mini",
    at: datetime | None = None,
) -> TokensConsumed:
    return TokensConsumed(
        tenant_id=tenant,
        source="chat",
        occurred_at=at or datetime.now(UTC),
        data=TokensConsumedData(
            user_id=user,
            kind="chat",
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
        ),
    )


def embedding_tokens(tenant: uuid.UUID, amount: int) -> TokensConsumed:
    return TokensConsumed(
        tenant_id=tenant,
        source="ingest",
        data=TokensConsumedData(
            kind="embedding", model="all-MiniLM-L6-v2", embedding_tokens=amount
        ),
    )


async def summary_when(
    usage: UsageService, tenant: uuid.UUID, total: int, window: str = "24h"
) -> dict[str, Any]:
    """/usage once it shows ``total`` tokens and the tenant's plan (tokens and tenant.created
    travel on different topics, so either may arrive first)."""

    async def probe() -> dict[str, Any] | None:
        response = await usage.client.get(
            "/api/v1/usage", params={"window": window}, headers=usage.token(tenant)
        )
        body: dict[str, Any] = response.json()
        return body if body["tokens"]["total"] == total and body["plan"] else None

    return await eventually(probe, what=f"{total} tokens and a plan in /usage")


async def test_tokens_from_chat_and_ingest_show_up_by_user_and_model(usage: UsageService) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    alice, bob = uuid.uuid4(), uuid.uuid4()
    await usage.publish(
        tenant_created(tenant),
        chat_tokens(tenant, alice, 100, 20),
        chat_tokens(tenant, bob, 50, 5, model="llama-3"),
        embedding_tokens(tenant, 300),
        chat_tokens(other, alice, 999, 999),
    )
    body = await summary_when(usage, tenant, 475)
    assert body["tokens"] == {"prompt": 150, "completion": 25, "embedding": 300, "total": 475}
    assert {m["model"]: m["total"] for m in body["by_model"]} == {
        "all-MiniLM-L6-v2": 300,
        "gpt-4o-mini": 120,
        "llama-3": 55,
    }
    assert {u["user_id"]: u["total"] for u in body["by_user"]} == {
        str(alice): 120,
        str(bob): 55,
        None: 300,
    }
    assert body["plan"] == "free"
    # The plan's token limits count the LLM's tokens; the embedding tokens are reported above.
    assert body["limits"]["daily_tokens"]["used"] == 175
    assert body["limits"]["monthly_tokens"]["used"] == 175
    assert body["remaining"]["daily_tokens"] == body["limits"]["daily_tokens"]["limit"] - 175

    history = (
        await usage.client.get(
            "/api/v1/usage/history", params={"days": 7}, headers=usage.token(tenant)
        )
    ).json()
    assert len(history) == 7
    assert history[-1]["date"] == datetime.now(UTC).date().isoformat()
    assert history[-1]["tokens"] == 475
    assert [d["tokens"] for d in history[:-1]] == [0] * 6


async def test_duplicates_and_a_replaying_consumer_group_change_nothing(
    usage: UsageService, settings_for: Any
) -> None:
    tenant = uuid.uuid4()
    events = [chat_tokens(tenant, None, 10, 1) for _ in range(5)]
    await usage.publish(tenant_created(tenant), *events, *events[:2])  # two redelivered
    await summary_when(usage, tenant, 55)

    # A second consumer group reads every topic from the start into the same database.
    from docuchat_usage.app import build_runtime
    from docuchat_usage.settings import UsageSettings

    replay = build_runtime(
        settings_for(
            UsageSettings, "usage", consumer_group_prefix=f"replay-{uuid.uuid4().hex[:6]}."
        )
    )
    await replay.start()
    try:
        marker = uuid.uuid4()
        await usage.publish(tenant_created(marker), chat_tokens(marker, None, 1, 0))

        async def replay_caught_up() -> bool:
            async with replay.database.transaction() as session:
                n = await session.scalar(
                    select(func.count())
                    .select_from(UsageBucket)
                    .where(UsageBucket.tenant_id == marker)
                )
            return bool(n)

        await eventually(replay_caught_up, what="the replaying group to reach the marker")
    finally:
        await replay.stop()
    body = await summary_when(usage, tenant, 55)
    assert body["by_user"] == [
        {"prompt": 50, "completion": 5, "embedding": 0, "total": 55, "user_id": None}
    ]


async def test_late_events_land_in_their_own_day_and_do_not_count_today(
    usage: UsageService,
) -> None:
    tenant = uuid.uuid4()
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await usage.publish(
        tenant_created(tenant),
        chat_tokens(tenant, None, 40_000, 20_000, at=yesterday),
        chat_tokens(tenant, None, 7, 3),
    )
    body = await summary_when(usage, tenant, 60_010, window="7d")
    assert body["limits"]["daily_tokens"]["used"] == 10  # yesterday's 60k are not today's
    assert body["exceeded"] == []
    history = (
        await usage.client.get(
            "/api/v1/usage/history", params={"days": 2}, headers=usage.token(tenant)
        )
    ).json()
    assert [d["tokens"] for d in history] == [60_000, 10]


async def test_unknown_tenants_and_malformed_messages_leave_the_counters_right(
    usage: UsageService, infra: Any
) -> None:
    tenant, stranger = uuid.uuid4(), uuid.uuid4()
    marker = str(uuid.uuid4())
    invalid = json.dumps({"type": "tokens.consumed", "version": 1, "data": {}, "m": marker})
    # Well formed but for its id, which only PostgreSQL finds is no UUID: its batch fails, and
    # replayed one event at a time, this one alone is dead-lettered.
    not_a_uuid = chat_tokens(tenant, None, 1_000, 1_000).to_json_dict()
    not_a_uuid["id"] = "z" * 36
    bad_id = json.dumps(not_a_uuid).encode()
    await usage.publish(
        tenant_created(tenant),
        chat_tokens(stranger, None, 5, 5),  # a tenant usage has never heard of
        raw=[b"{broken", invalid.encode(), bad_id],
    )
    await usage.publish(chat_tokens(tenant, None, 3, 2))
    body = await summary_when(usage, tenant, 5)
    assert body["tokens"]["total"] == 5
    stranger_view = (await usage.client.get("/api/v1/usage", headers=usage.token(stranger))).json()
    assert stranger_view["tokens"]["total"] == 10  # metered, though it has no plan (yet)
    assert stranger_view["plan"] is None

    # Every usage service of the session reads the shared topic: this one's dead letters are
    # those its own group sent.
    group = usage.runtime.consumers.group_prefix + TOKENS_GROUP

    def dead_letters_of(value: bytes) -> Callable[[], Awaitable[list[Any]]]:
        async def probe() -> list[Any]:
            return [
                r
                for r in await read_topic(infra.bootstrap_servers, "docuchat.tokens.dlq", 1)
                if r.value == value and (DLQ_CONSUMER_HEADER, group.encode()) in r.headers
            ]

        return probe

    # The invalid envelope went to the dead-letter topic, alone, with the reason.
    [dead] = await eventually(
        dead_letters_of(invalid.encode()), what="the invalid event in docuchat.tokens.dlq"
    )
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["x-dlq-error-type"] == "ValidationError"
    assert headers["x-dlq-origin"].startswith("docuchat.tokens/")

    await eventually(dead_letters_of(bad_id), what="the event with a bad id in the DLQ")
    assert (await summary_when(usage, tenant, 5))["tokens"]["total"] == 5  # it counted nothing


async def test_documents_and_storage_count_indexed_documents_once(usage: UsageService) -> None:
    tenant = uuid.uuid4()
    kb, doc_a, doc_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def indexed(doc: uuid.UUID, size: int) -> DocumentIndexed:
        return DocumentIndexed(
            tenant_id=tenant,
            source="ingest",
            data=DocumentIndexedData(
                document_id=doc,
                knowledge_base_id=kb,
                pages=1,
                chunks=1,
                size_bytes=size,
                embedding_tokens=10,
                embedding_model="m",
            ),
        )

    await usage.publish(
        tenant_created(tenant), indexed(doc_a, 1000), indexed(doc_b, 500), indexed(doc_a, 1200)
    )
    await usage.publish(
        DocumentDeleted(
            tenant_id=tenant,
            source="ingest",
            data=DocumentDeletedData(
                document_id=doc_b, knowledge_base_id=kb, size_bytes=500, was_indexed=True
            ),
        )
    )

    async def documents() -> dict[str, int] | None:
        body = (await usage.client.get("/api/v1/usage", headers=usage.token(tenant))).json()
        return (
            body["documents"] if body["documents"] == {"count": 1, "storage_bytes": 1200} else None
        )

    assert await eventually(documents, what="one document of 1200 bytes")


async def test_a_redelivery_in_a_later_batch_and_other_encodings_are_metered_once(
    usage: UsageService,
) -> None:
    tenant = uuid.uuid4()
    events = [chat_tokens(tenant, None, 10, 1) for _ in range(3)]
    await usage.publish(tenant_created(tenant), *events)
    await summary_when(usage, tenant, 33)

    # The same events again, after they were committed: a later batch, dropped by the claim.
    # Beside them, an event the fast decoder refuses but the catalog accepts (another spelling
    # of its UUIDs), which is metered, and a newer version of the event, which is skipped.
    respelled = chat_tokens(tenant, None, 100, 0).to_json_dict()
    respelled["id"] = respelled["id"].upper()
    respelled["tenant_id"] = respelled["tenant_id"].upper()
    newer = {**chat_tokens(tenant, None, 5000, 0).to_json_dict(), "version": 2}
    await usage.publish(*events)
    for value in (respelled, newer):  # keyed by the tenant: one partition, in order
        await usage.producer.send_and_wait(
            "docuchat.tokens", json.dumps(value).encode(), key=str(tenant).encode()
        )
    await usage.publish(chat_tokens(tenant, None, 1, 0))  # after them all on that partition
    body = await summary_when(usage, tenant, 134)
    assert body["tokens"] == {"prompt": 131, "completion": 3, "embedding": 0, "total": 134}


async def test_a_database_outage_delays_metering_and_dead_letters_nothing(
    usage: UsageService, databases: dict[str, str], group_prefix: str, infra: Any
) -> None:
    from prometheus_client import REGISTRY

    tenant = uuid.uuid4()
    await usage.publish(tenant_created(tenant), chat_tokens(tenant, None, 10, 1))
    await summary_when(usage, tenant, 11)
    labels = {"service": "usage", "group": group_prefix + TOKENS_GROUP}

    def holding() -> float:
        """Token messages the consumer holds through the outage."""
        return REGISTRY.get_sample_value("docuchat_consumer_held_messages", labels) or 0.0

    await allow_connections(databases["usage"], False)
    try:
        await usage.publish(*(chat_tokens(tenant, None, 10, 1) for _ in range(3)))

        async def held() -> bool:
            return holding() >= 1

        await eventually(held, what="the token consumer to hold its batch")
    finally:
        await allow_connections(databases["usage"], True)

    await summary_when(usage, tenant, 44)
    dead = await read_topic(infra.bootstrap_servers, "docuchat.tokens.dlq", 0)
    assert not [r for r in dead if str(tenant).encode() in r.value]


async def test_a_stop_during_a_database_outage_ends_and_loses_nothing(
    settings_for: Any, infra: Any, tmp_path: Path, databases: dict[str, str], group_prefix: str
) -> None:
    """The token batch held by the outage does not keep the service from stopping (it is
    abandoned uncommitted past the grace); the next process meters it, once."""
    from prometheus_client import REGISTRY

    from docuchat_usage.app import build_runtime
    from docuchat_usage.settings import UsageSettings
    from tests.in_process import serve

    settings = settings_for(
        UsageSettings,
        "usage",
        quota_reset_interval_seconds=3600,
        consumer_graceful_timeout_seconds=1.0,
    )
    labels = {"service": "usage", "group": group_prefix + TOKENS_GROUP}

    def holding() -> float:
        """Token messages the consumer holds through the outage."""
        return REGISTRY.get_sample_value("docuchat_consumer_held_messages", labels) or 0.0

    async def held() -> bool:
        return holding() >= 1

    tenant = uuid.uuid4()
    first = serve(build_runtime(settings), infra.bootstrap_servers, tmp_path / "keys")
    service = await first.__aenter__()
    usage = UsageService(service.runtime, service.client, service.signer, service.producer)
    await usage.publish(tenant_created(tenant), chat_tokens(tenant, None, 10, 1))
    await summary_when(usage, tenant, 11)
    await allow_connections(databases["usage"], False)
    try:
        await usage.publish(*(chat_tokens(tenant, None, 10, 1) for _ in range(3)))
        await eventually(held, what="the token consumer to hold its batch")
        async with asyncio.timeout(60):  # a stop that hangs fails here
            await first.__aexit__(None, None, None)
    finally:
        await allow_connections(databases["usage"], True)

    async with serve(build_runtime(settings), infra.bootstrap_servers, tmp_path / "keys") as again:
        usage = UsageService(again.runtime, again.client, again.signer, again.producer)
        await summary_when(usage, tenant, 44)
    dead = await read_topic(infra.bootstrap_servers, "docuchat.tokens.dlq", 0)
    assert not [r for r in dead if str(tenant).encode() in r.value]
