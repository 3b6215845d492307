"""QuotaGuard on the real broker: the state it rebuilds from ``docuchat.quota`` and enforces.

The session broker's quota topic is shared with other tests: every test uses fresh tenant ids
and never assumes the topic is empty.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from docuchat_common.errors import Forbidden, PayloadTooLarge, QuotaExceeded
from docuchat_common.events.catalog import QuotaChanged, QuotaChangedData, QuotaLimitState
from docuchat_common.events.envelope import utcnow
from docuchat_common.events.topics import QUOTA
from docuchat_common.health import HealthChecks
from docuchat_common.metrics import registry
from docuchat_common.quota import MovingWindow, QuotaGuard, QuotaStateUnavailable


def limit(used: int, cap: int | None, resets_at: datetime | None = None) -> QuotaLimitState:
    remaining = None if cap is None else max(0, cap - used)
    return QuotaLimitState(used=used, limit=cap, remaining=remaining, resets_at=resets_at)


def quota(
    tenant_id: uuid.UUID,
    *,
    plan: str = "free",
    limits: dict[str, QuotaLimitState] | None = None,
    exceeded: list[str] | None = None,
    occurred_at: datetime | None = None,
    **fixed: Any,
) -> QuotaChanged:
    data = QuotaChangedData(
        plan=plan,
        limits=limits or {"daily_tokens": limit(0, 1000, utcnow() + timedelta(hours=1))},
        exceeded=exceeded or [],
        **fixed,
    )
    event = QuotaChanged(tenant_id=tenant_id, source="usage", data=data)
    return event.model_copy(update={"occurred_at": occurred_at}) if occurred_at else event


class Publisher:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def event(self, event: QuotaChanged, *, partition: int | None = None) -> int:
        """Publish as usage does (key = tenant id); returns the partition it landed on."""
        return await self.raw(event.model_dump_json().encode(), event.key, partition=partition)

    async def raw(
        self, value: bytes | None, key: bytes | None, *, partition: int | None = None
    ) -> int:
        metadata = await self.producer.send_and_wait(
            QUOTA.name, value, key=key, partition=partition
        )
        return int(metadata.partition)


@pytest.fixture
async def publish(infra: Any, guard: QuotaGuard) -> AsyncIterator[Publisher]:
    # Depends on the guard: it creates the topic before anything is published.
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap_servers)
    await producer.start()
    yield Publisher(producer)
    await producer.stop()


@pytest.fixture
def service() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"  # its own metric labels


@pytest.fixture
async def guard(infra: Any, service: str) -> AsyncIterator[QuotaGuard]:
    guard = QuotaGuard(infra.bootstrap_servers, service=service)
    await guard.start()
    yield guard
    await guard.stop()


def plan_is(plan: str) -> Any:
    return lambda state: state is not None and state.plan == plan


async def test_state_appears_is_replaced_and_never_goes_back_in_time(
    guard: QuotaGuard, publish: Publisher
) -> None:
    tenant, marker = uuid.uuid4(), uuid.uuid4()
    t0 = utcnow()
    assert guard.state(tenant) is None

    partition = await publish.event(quota(tenant, plan="free", occurred_at=t0))
    state = await guard.wait_for(tenant, plan_is("free"))
    assert state is not None
    assert state.limits["daily_tokens"].limit == 1000

    newer = quota(tenant, plan="pro", occurred_at=t0 + timedelta(seconds=2))
    await publish.event(newer)
    assert await guard.wait_for(tenant, plan_is("pro")) == newer.data

    # An older state published after the newer one, then a marker behind it on the same
    # partition: once the marker is applied, the older state has been read (and ignored).
    await publish.event(quota(tenant, plan="stale", occurred_at=t0 + timedelta(seconds=1)))
    await publish.event(quota(marker, plan="marker"), partition=partition)
    await guard.wait_for(marker, plan_is("marker"))
    assert guard.state(tenant) == newer.data


async def test_a_spent_daily_limit_is_refused_until_it_resets(
    guard: QuotaGuard, publish: Publisher
) -> None:
    spent, other, reset_passed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    resets_at = utcnow() + timedelta(seconds=600)
    await publish.event(
        quota(
            spent,
            limits={
                "daily_tokens": limit(1200, 1000, resets_at),
                "monthly_tokens": limit(1200, 30_000, resets_at + timedelta(days=20)),
                "documents": limit(3, 50),
            },
            exceeded=["daily_tokens"],
        )
    )
    await publish.event(quota(other))
    await publish.event(
        quota(
            reset_passed,
            limits={"daily_tokens": limit(1200, 1000, utcnow() - timedelta(seconds=5))},
            exceeded=["daily_tokens"],
        )
    )
    for tenant in (spent, other, reset_passed):
        await guard.wait_for(tenant, lambda state: state is not None)

    for limits in ((), ("daily_tokens",), ("monthly_tokens", "daily_tokens")):
        with pytest.raises(QuotaExceeded) as raised:
            guard.check(spent, *limits)
        error = raised.value
        assert error.status == 429
        assert error.code == "quota_exceeded"
        assert 590 < error.retry_after <= 600
        assert 590 < int(error.headers["Retry-After"]) <= 600
        assert error.detail.startswith("daily_tokens quota spent; resets at ")
        assert error.extra == {"limit": "daily_tokens", "resets_at": resets_at.isoformat()}

    guard.check(spent, "monthly_tokens", "documents")  # limits not spent pass
    guard.check(other)
    guard.check(other, "daily_tokens")
    guard.check(reset_passed)  # the period ended: the reset is on its way, never block
    guard.check(uuid.uuid4(), "daily_tokens")  # no state yet: allowed


async def test_retry_after_follows_the_limit_that_frees_up_last(
    guard: QuotaGuard, publish: Publisher
) -> None:
    both, documents = uuid.uuid4(), uuid.uuid4()
    day_end = utcnow() + timedelta(hours=2)
    month_end = utcnow() + timedelta(days=10)
    await publish.event(
        quota(
            both,
            limits={
                "daily_tokens": limit(1000, 1000, day_end),
                "monthly_tokens": limit(30_000, 30_000, month_end),
            },
            exceeded=["daily_tokens"],  # remaining == 0 counts as spent too
        )
    )
    await publish.event(
        quota(documents, limits={"documents": limit(50, 50)}, exceeded=["documents"])
    )
    for tenant in (both, documents):
        await guard.wait_for(tenant, lambda state: state is not None)

    with pytest.raises(QuotaExceeded) as raised:
        guard.check(both)
    assert raised.value.extra["limit"] == "monthly_tokens"
    assert raised.value.retry_after == pytest.approx(10 * 86400, abs=5)
    with pytest.raises(QuotaExceeded) as raised:
        guard.check(both, "daily_tokens")
    assert raised.value.retry_after == pytest.approx(2 * 3600, abs=5)

    with pytest.raises(QuotaExceeded) as raised:
        guard.check(documents, "documents")
    assert raised.value.retry_after == 3600  # never resets: check back in an hour
    assert raised.value.extra == {"limit": "documents", "resets_at": None}
    guard.check(documents, "daily_tokens")


async def test_a_guard_started_later_rebuilds_the_state_before_start_returns(
    infra: Any, guard: QuotaGuard, publish: Publisher
) -> None:
    tenants = [uuid.uuid4() for _ in range(5)]
    t0 = utcnow()
    for n, tenant in enumerate(tenants):
        await publish.event(quota(tenant, plan="old", occurred_at=t0))
        await publish.event(quota(tenant, plan=f"new-{n}", occurred_at=t0 + timedelta(seconds=1)))

    late = QuotaGuard(infra.bootstrap_servers, service="test-late")
    await late.start()
    try:
        # No waiting: start() returned only after reading up to the end offsets.
        states = [late.state(t) for t in tenants]
        assert [s.plan if s else None for s in states] == [f"new-{n}" for n in range(5)]
        for tenant in tenants:
            await guard.wait_for(tenant, lambda state: state is not None and state.plan != "old")
            assert late.state(tenant) == guard.state(tenant)
    finally:
        await late.stop()


async def test_malformed_and_unknown_messages_are_skipped(
    infra: Any, guard: QuotaGuard, publish: Publisher
) -> None:
    tenant = uuid.uuid4()
    key = str(tenant).encode()
    good = quota(tenant, plan="after-the-bad-ones")
    envelope = json.loads(good.model_dump_json())
    partition = await publish.raw(b"{not json", key)
    for value in (
        b"\xff\xfe\x00",
        b"[]",
        json.dumps({**envelope, "type": "quota.reset"}).encode(),  # a type added later
        json.dumps({**envelope, "version": 2}).encode(),  # a version this guard predates
        json.dumps({**envelope, "data": {"limits": "nope"}}).encode(),
        json.dumps({**envelope, "occurred_at": "yesterday"}).encode(),
    ):
        await publish.raw(value, key, partition=partition)
    assert guard.state(tenant) is None

    await publish.event(good, partition=partition)
    assert await guard.wait_for(tenant, plan_is("after-the-bad-ones")) == good.data
    assert guard.ready

    late = QuotaGuard(infra.bootstrap_servers, service="test-late")
    await late.start()  # the bad messages are in its replay too
    try:
        assert late.state(tenant) == good.data
    finally:
        await late.stop()


async def test_a_tombstone_forgets_the_tenant(guard: QuotaGuard, publish: Publisher) -> None:
    tenant = uuid.uuid4()
    await publish.event(quota(tenant))
    await guard.wait_for(tenant, lambda state: state is not None)
    await publish.raw(None, str(tenant).encode())
    assert await guard.wait_for(tenant, lambda state: state is None) is None


async def test_fixed_limits_models_and_file_size(guard: QuotaGuard, publish: Publisher) -> None:
    restricted, anything = uuid.uuid4(), uuid.uuid4()
    await publish.event(
        quota(restricted, allowed_models=["gpt-4o-mini"], max_file_bytes=10_000_000)
    )
    await publish.event(quota(anything, allowed_models=["*"], max_file_bytes=None))
    for tenant in (restricted, anything):
        await guard.wait_for(tenant, lambda state: state is not None)

    guard.check_fixed(restricted, model="gpt-4o-mini", file_bytes=10_000_000)
    with pytest.raises(Forbidden) as forbidden:
        guard.check_fixed(restricted, model="gpt-4o")
    assert (forbidden.value.status, forbidden.value.code) == (403, "model_not_allowed")
    with pytest.raises(PayloadTooLarge) as too_large:
        guard.check_fixed(restricted, file_bytes=10_000_001)
    assert (too_large.value.status, too_large.value.code) == (413, "file_too_large")
    assert too_large.value.extra == {"max_file_bytes": 10_000_000}

    guard.check_fixed(anything, model="any-model", file_bytes=10**12)
    guard.check_fixed(uuid.uuid4(), model="any-model", file_bytes=10**12)


async def test_readiness_and_metrics(guard: QuotaGuard, publish: Publisher, service: str) -> None:
    health = HealthChecks("test")
    health.add("quota", guard.check_ready)
    assert (await health.readiness())[0]

    tenant = uuid.uuid4()
    await publish.event(quota(tenant))
    await guard.wait_for(tenant, lambda state: state is not None)
    labels = {"service": service}
    assert (registry.get_sample_value("docuchat_quota_states", labels) or 0) >= 1
    lag_count = registry.get_sample_value("docuchat_quota_apply_lag_seconds_count", labels)
    assert lag_count is not None
    assert lag_count >= 1

    await guard.stop()
    assert not guard.ready
    ok, body = await health.readiness()
    assert not ok
    assert body["checks"]["quota"]["error"] == "QuotaStateUnavailable"


async def test_start_fails_clearly_when_the_broker_stays_down() -> None:
    from docuchat.devstack.process import free_port

    guard = QuotaGuard(f"127.0.0.1:{free_port()}", service="test", start_timeout=1.5)
    with pytest.raises(QuotaStateUnavailable, match=r"cannot read docuchat\.quota .* 1\.5s"):
        await guard.start()
    assert not guard.ready
    with pytest.raises(QuotaStateUnavailable):
        await guard.check_ready()


async def test_start_waits_for_a_late_broker_and_creates_the_topic(tmp_path: Any) -> None:
    from docuchat.devstack import TansuBroker

    broker = TansuBroker(log_path=tmp_path / "tansu.log")  # fresh: no topics at all
    guard = QuotaGuard(broker.bootstrap_servers, service="test", start_timeout=60)
    starting = asyncio.create_task(guard.start())
    try:
        await asyncio.to_thread(broker.start)
        await starting
        assert guard.ready
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        try:
            tenant = uuid.uuid4()
            event = quota(tenant, plan="late")
            await producer.send_and_wait(
                QUOTA.name, event.model_dump_json().encode(), key=event.key
            )
            assert len(await producer.partitions_for(QUOTA.name)) == QUOTA.partitions
        finally:
            await producer.stop()
        await guard.wait_for(tenant, plan_is("late"))
    finally:
        starting.cancel()
        await guard.stop()
        await asyncio.to_thread(broker.stop)


async def test_tokens_spent_here_count_until_usage_has_metered_them(
    guard: QuotaGuard, publish: Publisher
) -> None:
    tenant, neighbour = uuid.uuid4(), uuid.uuid4()
    resets = utcnow() + timedelta(hours=2)
    before = utcnow() - timedelta(seconds=5)
    await publish.event(
        quota(
            tenant,
            limits={"daily_tokens": limit(900, 1000, resets)},
            occurred_at=before,
        )
    )
    await publish.event(quota(neighbour, limits={"daily_tokens": limit(900, 1000, resets)}))
    await guard.wait_for(tenant, plan_is("free"), timeout=30)
    await guard.wait_for(neighbour, plan_is("free"), timeout=30)
    guard.check(tenant, "daily_tokens")

    guard.debit(tenant, 60)
    guard.check(tenant, "daily_tokens")  # 960 of 1000
    guard.debit(tenant, 60)
    with pytest.raises(QuotaExceeded) as refused:
        guard.check(tenant, "daily_tokens")  # 1020: spent before usage says so
    assert refused.value.extra["limit"] == "daily_tokens"
    assert 7000 < refused.value.retry_after <= 7200
    guard.check(tenant, "documents")  # other limits are not token limits
    guard.check(neighbour)  # another tenant's spending is its own

    # A state computed just after the spending may not include it yet: the debits still count.
    def pro(used: int, cap: int, seconds_later: float) -> QuotaChanged:
        return quota(
            tenant,
            plan="pro",
            limits={"daily_tokens": limit(used, cap, resets)},
            occurred_at=utcnow() + timedelta(seconds=seconds_later),
        )

    await publish.event(pro(1020, 1100, 1))
    await guard.wait_for(tenant, lambda s: s is not None and s.limits["daily_tokens"].limit == 1100)
    with pytest.raises(QuotaExceeded):
        guard.check(tenant)  # 1020 + 120 in flight to usage
    # One computed well after them has them: they are no longer added.
    await publish.event(pro(1020, 1101, 3))
    await guard.wait_for(tenant, lambda s: s is not None and s.limits["daily_tokens"].limit == 1101)
    guard.check(tenant)


async def test_spending_of_a_period_that_ended_does_not_count_in_the_next(
    guard: QuotaGuard, publish: Publisher
) -> None:
    tenant = uuid.uuid4()
    midnight = utcnow() + timedelta(minutes=30)
    await publish.event(quota(tenant, limits={"daily_tokens": limit(500, 1000, midnight)}))
    await guard.wait_for(tenant, plan_is("free"), timeout=30)
    guard.debit(tenant, 600)
    with pytest.raises(QuotaExceeded):
        guard.check(tenant, "daily_tokens")

    # The reset arrives at once (usage published it right after the debit): a new day, with
    # nothing used. Today's debit may not be in usage's figures yet, but it is not tomorrow's.
    await publish.event(
        quota(
            tenant,
            plan="pro",
            limits={"daily_tokens": limit(0, 1000, midnight + timedelta(days=1))},
        )
    )
    await guard.wait_for(tenant, plan_is("pro"), timeout=30)
    guard.check(tenant, "daily_tokens")


def test_the_moving_window_allows_the_limit_in_any_window_and_says_when_to_retry() -> None:
    now = [1000.0]
    window = MovingWindow(60.0, clock=lambda: now[0])
    tenant, other = uuid.uuid4(), uuid.uuid4()

    assert [window.hit(tenant, 3) for _ in range(3)] == [None, None, None]
    now[0] += 20
    assert window.hit(tenant, 3) == 40.0  # until the first hit leaves the window
    assert window.hit(other, 3) is None  # counted per key

    now[0] += 40  # the window moves past the three hits
    assert [window.hit(tenant, 3) for _ in range(3)] == [None, None, None]
    assert window.hit(tenant, 3) is not None


async def test_guards_that_share_read_the_topic_once_and_the_last_to_stop_closes_it(
    infra: Any, publish: Publisher
) -> None:
    """The all-in-one process runs chat's and ingest's guards over one reader of the topic (and
    so does this test process: apps of other tests may hold the same feed)."""
    chat, ingest = (f"test-{name}-{uuid.uuid4().hex[:8]}" for name in ("chat", "ingest"))
    chat_guard = QuotaGuard(infra.bootstrap_servers, service=chat, shared=True)
    ingest_guard = QuotaGuard(infra.bootstrap_servers, service=ingest, shared=True)
    await asyncio.gather(chat_guard.start(), ingest_guard.start())
    try:
        feed = chat_guard._feed
        assert ingest_guard._feed is feed
        assert {chat, ingest} <= set(feed.services)

        tenant = uuid.uuid4()
        await publish.event(quota(tenant, plan="pro"))
        await chat_guard.wait_for(tenant, plan_is("pro"))
        assert ingest_guard.state(tenant) == chat_guard.state(tenant)
        # Both services' metrics, from the one reader.
        for service in (chat, ingest):
            assert registry.get_sample_value("docuchat_quota_states", {"service": service})

        # One guard stopping leaves the other following the topic.
        await chat_guard.stop()
        assert not chat_guard.ready and ingest_guard.ready
        await publish.event(quota(tenant, plan="team"))
        await ingest_guard.wait_for(tenant, plan_is("team"))

        # The reader stops with the last guard that uses it; a guard started later joins the
        # one still running, or a fresh one that rebuilds the state.
        await ingest_guard.stop()
        assert not {chat, ingest} & set(feed.services)
        assert feed.ready == bool(feed.services)
        late = QuotaGuard(infra.bootstrap_servers, service=chat, shared=True)
        await late.start()
        try:
            assert late._feed is feed if feed.ready else late._feed is not feed
            assert plan_is("team")(late.state(tenant))
        finally:
            await late.stop()
    finally:
        await chat_guard.stop()
        await ingest_guard.stop()
