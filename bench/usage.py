"""Usage metering throughput, measured in one run.

1,000 tenants are created first and the usage service subscribes them (each has a plan and a
quota state, as in a running system: every batch re-evaluates the state of the tenants it
touched). Then 100,000 ``tokens.consumed`` events (20 users, 3 models) are put on the tokens
topic of a fresh embedded broker; then, on the same data:
- a bare aiokafka consumer reads them all (the ceiling: nothing but reading);
- the usage service's real consumer meters them into PostgreSQL (batched, deduplicated,
  quota state evaluated and quota.changed written to the outbox as it goes).
Goal: usage ≥ 25% of the bare read rate.

    .venv/bin/python -m bench.usage [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select

from bench.infra import UsageInfra, cpu_seconds, usage_infra
from docuchat.cli import run_event_loop
from docuchat_common.events.catalog import (
    TenantCreated,
    TenantCreatedData,
    TokensConsumed,
    TokensConsumedData,
)
from docuchat_common.events.topics import TENANTS, TOKENS
from docuchat_common.metrics import CONSUMER_MESSAGES
from docuchat_common.service import ServiceRuntime
from docuchat_usage.app import build_runtime
from docuchat_usage.metering.consumers import TOKENS_GROUP
from docuchat_usage.models import QuotaState, metered_events
from docuchat_usage.settings import UsageSettings


async def produce_tenants(bootstrap: str, tenants: list[uuid.UUID]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for tenant in tenants:
            created = TenantCreated(
                tenant_id=tenant,
                source="bench",
                data=TenantCreatedData(
                    tenant_id=tenant, name="b", owner_user_id=uuid.uuid4(), plan="enterprise"
                ),
            )
            await producer.send(TENANTS.name, created.model_dump_json().encode(), key=created.key)
        await producer.flush()
    finally:
        await producer.stop()


async def produce(bootstrap: str, events: int, tenants: list[uuid.UUID]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    users = [uuid.uuid4() for _ in range(20)]
    models = ["gpt-4o-mini", "llama-3-8b", "all-MiniLM-L6-v2"]
    rnd = random.Random(7)
    started = time.perf_counter()
    try:
        pending = []
        for i in range(events):
            tenant = tenants[i % len(tenants)]
            event = TokensConsumed(
                tenant_id=tenant,
                source="bench",
                data=TokensConsumedData(
                    user_id=rnd.choice(users),
                    kind="chat",
                    model=rnd.choice(models),
                    prompt_tokens=rnd.randint(50, 2000),
                    completion_tokens=rnd.randint(10, 500),
                ),
            )
            pending.append(
                await producer.send(TOKENS.name, event.model_dump_json().encode(), key=event.key)
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def bare_read(bootstrap: str, events: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=2000
    )
    await consumer.start()
    partitions = [TopicPartition(TOKENS.name, p) for p in range(TOKENS.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    seen = 0
    started = time.perf_counter()
    try:
        while seen < events:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return time.perf_counter() - started


def usage_runtime(bootstrap: str, database_url: str) -> ServiceRuntime:
    settings = UsageSettings(
        environment="test",
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        migrate_on_start=False,
        kafka_session_timeout_ms=2000,
        kafka_heartbeat_interval_ms=300,
        quota_reset_interval_seconds=3600,
    )
    return build_runtime(settings)


async def subscribe_tenants(bootstrap: str, database_url: str, tenants: list[uuid.UUID]) -> None:
    """The usage service subscribes the tenants (plan and first quota state), then stops."""
    await produce_tenants(bootstrap, tenants)
    runtime = usage_runtime(bootstrap, database_url)
    await runtime.start()
    try:
        while True:
            async with runtime.database.transaction() as session:
                states = await session.scalar(select(func.count()).select_from(QuotaState))
            if (states or 0) >= len(tenants):
                return
            await asyncio.sleep(0.1)  # progress poll interval, not a readiness guess
    finally:
        await runtime.stop()


def metered() -> float:
    """Token events the running consumer has handled and committed (its own counter: polling
    the database would load the machine being measured; reading this one metric, not the whole
    registry, keeps the poll itself out of the figures)."""
    wanted = {"service": "usage", "topic": TOKENS.name, "group": TOKENS_GROUP}
    return sum(
        sample.value
        for metric in CONSUMER_MESSAGES.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels["outcome"] in ("ok", "duplicate")
        and all(sample.labels[k] == v for k, v in wanted.items())
    )


@dataclass
class UsageRead:
    seconds: float  # from start to the last event metered
    steady_rate: float  # events/s committed after the first batch's commit, over the time since
    cpu: dict[str, float]  # CPU seconds each part spent meanwhile


def parts_cpu(infra: UsageInfra) -> dict[str, float]:
    """CPU seconds so far: the usage consumer (it runs in this process), PostgreSQL (with its
    backends), the broker."""
    own = psutil.Process().cpu_times()
    return {
        "usage consumer": own.user + own.system,
        "PostgreSQL": cpu_seconds(infra.postgres_pid),
        "broker": cpu_seconds(infra.broker_pid),
    }


async def usage_read(infra: UsageInfra, events: int) -> UsageRead:
    """The usage service's consumer meters the topic from the start. The watch runs from
    before the start: the consumer may commit its first batches while ``start`` returns."""
    runtime = usage_runtime(infra.bootstrap, infra.database_url)
    before = metered()
    cpu_before = parts_cpu(infra)
    started = time.perf_counter()
    first: tuple[float, float] | None = None  # (when, how many) at the first commit seen

    async def watch() -> float:
        nonlocal first
        while True:
            done = metered() - before
            if done and first is None:
                first = (time.perf_counter(), done)
            if done >= events:
                return time.perf_counter()
            await asyncio.sleep(0.01)  # progress poll interval, not a readiness guess

    watching = asyncio.create_task(watch())
    try:
        await runtime.start()
        finished = await watching
        cpu_after = parts_cpu(infra)
        async with runtime.database.transaction() as session:
            stored = await session.scalar(select(func.count()).select_from(metered_events))
        if stored != events:
            raise AssertionError(f"{stored} events claimed in the database, {events} expected")
    finally:
        watching.cancel()
        await runtime.stop()
    assert first is not None
    first_at, first_done = first
    return UsageRead(
        seconds=finished - started,
        steady_rate=(events - first_done) / (finished - first_at),
        cpu={part: cpu_after[part] - cpu_before[part] for part in cpu_before},
    )


async def run(events: int) -> None:
    async with usage_infra() as infra:
        tenants = [uuid.uuid4() for _ in range(1000)]
        await subscribe_tenants(infra.bootstrap, infra.database_url, tenants)
        produced = await produce(infra.bootstrap, events, tenants)
        bare = await bare_read(infra.bootstrap, events)
        usage = await usage_read(infra, events)
    bare_rate = events / bare
    print(f"events: {events:,} on {TOKENS.partitions} partitions, 1,000 tenants")
    print(f"(produced in {produced:.1f} s)")
    print(f"{'consumer':<34}{'seconds':>10}{'events/s':>12}")
    print(f"{'bare aiokafka read':<34}{bare:>10.2f}{bare_rate:>12,.0f}")
    from_start_rate = events / usage.seconds
    print(f"{'usage, from start (join incl.)':<34}{usage.seconds:>10.2f}{from_start_rate:>12,.0f}")
    print(f"{'usage, first commit to last':<34}{'':>10}{usage.steady_rate:>12,.0f}")
    from_start, steady_ratio = from_start_rate / bare_rate, usage.steady_rate / bare_rate
    print(
        f"ratio usage / bare: {from_start:.0%} from start, {steady_ratio:.0%} steady (goal >= 25%)"
    )
    # What the goal asks of the machine: every part runs on the same cores, so the CPU each
    # spends per event, times the goal's rate, is the cores that rate takes.
    per_event = {part: seconds / events * 1e6 for part, seconds in usage.cpu.items()}
    print(
        "CPU per event metered: "
        + ", ".join(f"{part} {micros:.1f} µs" for part, micros in per_event.items())
        + f" = {sum(per_event.values()):.1f} µs"
    )
    goal_rate = 0.25 * bare_rate
    cores = goal_rate * sum(per_event.values()) / 1e6
    print(
        f"at the goal's {goal_rate:,.0f} events/s that is {cores:.2f} cores busy;"
        f" this machine has {psutil.cpu_count()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    run_event_loop(run(args.events))  # the loop the service runs on in production


if __name__ == "__main__":
    main()
