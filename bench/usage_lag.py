"""Enforcement lag: from publishing the tokens.consumed event that crosses a tenant's daily
limit to an enforcer refusing that tenant, over N trials in one run.

The enforcer is ``QuotaGuard``, the in-memory quota state chat and ingest check before any
work: the path measured is tokens.consumed → usage consumer → quota state → outbox → relay →
docuchat.quota → the guard applies it and ``check()`` raises 429. Goal: p99 <= 1 s.

    .venv/bin/python -m bench.usage_lag [--trials 60]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from aiokafka import AIOKafkaProducer

from bench.infra import usage_infra
from docuchat.cli import run_event_loop
from docuchat_common.errors import QuotaExceeded
from docuchat_common.events.catalog import (
    TenantCreated,
    TenantCreatedData,
    TokensConsumed,
    TokensConsumedData,
)
from docuchat_common.events.envelope import Event
from docuchat_common.quota import QuotaGuard
from docuchat_usage.app import build_runtime
from docuchat_usage.settings import UsageSettings


async def send(
    producer: AIOKafkaProducer, event: Event[TokensConsumedData] | Event[TenantCreatedData]
) -> None:
    await producer.send_and_wait(event.topic.name, event.model_dump_json().encode(), key=event.key)


async def trial(producer: AIOKafkaProducer, guard: QuotaGuard) -> float:
    tenant = uuid.uuid4()
    await send(
        producer,
        TenantCreated(
            tenant_id=tenant,
            source="bench",
            data=TenantCreatedData(tenant_id=tenant, name="t", owner_user_id=uuid.uuid4()),
        ),
    )
    await guard.wait_for(tenant, lambda s: s is not None, timeout=30)
    started = time.perf_counter()
    await send(
        producer,
        TokensConsumed(
            tenant_id=tenant,
            source="bench",
            data=TokensConsumedData(kind="chat", model="m", prompt_tokens=60_000),
        ),
    )
    await guard.wait_for(
        tenant, lambda s: s is not None and "daily_tokens" in s.exceeded, timeout=30
    )
    lag = time.perf_counter() - started
    try:
        guard.check(tenant)
    except QuotaExceeded:
        return lag
    raise AssertionError("the guard did not refuse a tenant over its limit")


async def run(trials: int) -> None:
    async with usage_infra() as (bootstrap, url, _, _):
        settings = UsageSettings(
            environment="test",
            database_url=url,
            kafka_bootstrap_servers=bootstrap,
            migrate_on_start=False,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=300,
        )
        runtime = build_runtime(settings)
        await runtime.start()
        guard = QuotaGuard(bootstrap, service="bench")
        await guard.start()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await trial(producer, guard)  # warm-up: consumer groups joined, caches filled
            lags = [await trial(producer, guard) for _ in range(trials)]
        finally:
            await producer.stop()
            await guard.stop()
            await runtime.stop()
    q = statistics.quantiles(lags, n=100, method="inclusive")
    print(f"enforcement lag over {trials} trials (event crossing the daily limit -> guard refuses)")
    p50, p90, p99 = (q[n - 1] * 1000 for n in (50, 90, 99))
    print(f"p50 {p50:.0f} ms   p90 {p90:.0f} ms   p99 {p99:.0f} ms   max {max(lags) * 1000:.0f} ms")
    print("goal: p99 <= 1000 ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=60)
    args = parser.parse_args()
    run_event_loop(run(args.trials))  # the loop the services run on in production


if __name__ == "__main__":
    main()
