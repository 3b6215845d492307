"""QuotaGuard: the tenants' quota state, held in memory by the services that enforce it.

Usage owns the counters and publishes each tenant's whole quota state as ``quota.changed`` to
the compacted ``docuchat.quota`` topic (key = tenant id). Chat and ingest must refuse work
within milliseconds of a request, so they never ask usage: every replica reads the topic into
memory and checks there.

- Every replica needs every tenant's state, so the guard assigns all partitions itself and
  reads from the beginning (no consumer group, no committed offsets): the state is rebuilt on
  each start, and compaction keeps that read short.
- ``start()`` returns only once the guard has read up to the end offsets it saw when it
  started, so a service never serves while it does not yet know the quotas.
- The newest event per tenant wins by ``occurred_at``: an older state that arrives later (a
  replay, a republished outbox row) never overwrites a newer one.
- A tombstone (null value, the compacted topic's delete) forgets the tenant.
- A message the guard cannot read is logged and skipped; one bad message must not stop
  enforcement for every tenant. Event types or versions it does not know are skipped too.
- A spent limit whose period has ended is not enforced: usage publishes the reset shortly after,
  but a stale state must never block a tenant past the moment its quota renewed.
- No state for a tenant yet (new tenant, usage behind) means allowed: quotas bound spend, they
  are not an authorization check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Gauge, Histogram
from pydantic import TypeAdapter

from docuchat_common.errors import Forbidden, PayloadTooLarge, QuotaExceeded, RateLimited
from docuchat_common.events.catalog import QuotaChanged, QuotaChangedData, event_union
from docuchat_common.events.envelope import utcnow
from docuchat_common.events.topics import CONSUMER_TIMEOUT_MS, QUOTA, ensure_topics
from docuchat_common.logging import get_logger
from docuchat_common.metrics import registry
from docuchat_common.tasks import stop_task

__all__ = ["QuotaFeed", "QuotaGuard", "QuotaStateUnavailable"]

log = get_logger(__name__)

QUOTA_STATES = Gauge(
    "docuchat_quota_states",
    "Tenants whose quota state this process holds.",
    ["service"],
    registry=registry,
)
QUOTA_APPLY_LAG = Histogram(
    "docuchat_quota_apply_lag_seconds",
    "Time from a quota.changed event occurring to its state being enforced here.",
    ["service"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=registry,
)

# documents and storage_bytes never reset: they free up when the tenant deletes something or
# changes plan, a moment nobody can name. An hour tells clients not to retry in a tight loop
# without locking them out long after they have made room.
NO_RESET_RETRY_AFTER = 3600.0
# The limits that tokens spend (see QuotaGuard.debit).
TOKEN_LIMITS = frozenset({"daily_tokens", "monthly_tokens"})

_EVENTS: TypeAdapter[Any] = TypeAdapter(event_union(QuotaChanged))

Predicate = Callable[[QuotaChangedData | None], bool]


class QuotaStateUnavailable(RuntimeError):
    """The guard could not load the quota state (broker unreachable, or not caught up)."""


RATE_WINDOW_SECONDS = 60.0


class MovingWindow:
    """A moving-window request counter per key: at most ``limit`` hits in any ``window``
    seconds (no burst of twice the limit across a minute boundary).

    Written here rather than taken from ``limits``: its in-memory storage starts a timer thread
    to expire entries whenever the previous one has finished, so on a busy service nearly every
    counted request started a thread. Here each key keeps the times of its recent hits, pruned
    as it is hit; a key with no recent hit is dropped, so memory follows the active tenants.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._hits: dict[Any, deque[float]] = {}
        self._swept = clock()

    def hit(self, key: Any, limit: int) -> float | None:
        """Count a hit: None if allowed, else the seconds until one more would be."""
        now = self.clock()
        if now - self._swept > self.window:  # once a window: O(keys), not per hit
            self._forget_idle(now)
            self._swept = now
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        horizon = now - self.window
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) < limit:
            hits.append(now)
            return None
        return hits[len(hits) - limit] + self.window - now

    def _forget_idle(self, now: float) -> None:
        """Drop the keys with no hit inside the window."""
        horizon = now - self.window
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= horizon]:
            del self._hits[key]


class QuotaFeed:
    """Every tenant's quota state, read from the topic (see the module docstring): what the
    guards of one process hold in common. ``services`` name the guards it serves (in metrics)."""

    def __init__(self, bootstrap_servers: str, *, name: str, max_backoff: float = 5.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.name = name
        self.max_backoff = max_backoff
        self.services: list[str] = []
        self.events: dict[uuid.UUID, QuotaChanged] = {}
        self.updated = asyncio.Condition()
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self._live = False  # caught up: lag is measured only for live events, not the replay
        self._starting = asyncio.Lock()

    async def start(self, start_timeout: float) -> None:
        """Load every tenant's state, then keep following the topic in the background (once:
        a started feed returns at once)."""
        async with self._starting:
            if self._task is not None:
                return
            deadline = asyncio.get_running_loop().time() + start_timeout
            consumer, end_offsets = await self._connect(deadline, start_timeout)
            try:
                await self._catch_up(consumer, end_offsets, deadline, start_timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    await consumer.stop()
                raise
            self._consumer = consumer
            self._live = True
            self._task = asyncio.create_task(self._follow(consumer), name=f"quota-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        self._live = False

    @property
    def ready(self) -> bool:
        return self._task is not None and not self._task.done()

    def state(self, tenant_id: uuid.UUID) -> QuotaChangedData | None:
        event = self.events.get(tenant_id)
        return event.data if event is not None else None

    # --- reading the topic --------------------------------------------------------------------

    async def _connect(self, deadline: float, budget: float) -> tuple[Any, dict[Any, int]]:
        """A consumer assigned to every partition at the beginning, and their end offsets."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        loop = asyncio.get_running_loop()
        delay = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                client_id=f"docuchat-{self.name}-quota",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                retry_backoff_ms=200,
                consumer_timeout_ms=CONSUMER_TIMEOUT_MS,
                # Bounds the event → enforcement lag on brokers that hold a fetch for its whole
                # wait (measured on tansu: ~77 ms at the 500 ms default, ~3 ms at 100 ms).
                fetch_max_wait_ms=100,
            )

            async def attempt(consumer: Any = consumer) -> dict[Any, int]:
                # Assigning a partition of a topic that does not exist yet would hang.
                await ensure_topics(self.bootstrap_servers, [QUOTA])
                await consumer.start()
                partitions = consumer.partitions_for_topic(QUOTA.name) or range(QUOTA.partitions)
                tps = [TopicPartition(QUOTA.name, p) for p in sorted(partitions)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends: dict[Any, int] = await consumer.end_offsets(tps)
                return ends

            try:
                remaining = max(0.1, deadline - loop.time())
                async with asyncio.timeout(remaining):
                    ends = await attempt()
                return consumer, ends
            except Exception as exc:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    await consumer.stop()
                if loop.time() + delay >= deadline:
                    raise QuotaStateUnavailable(
                        f"cannot read {QUOTA.name} from {self.bootstrap_servers} "
                        f"within {budget:g}s: {_describe(exc)}"
                    ) from exc
                log.warning(
                    "quota topic unreachable; retrying",
                    feed=self.name,
                    error=_describe(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)

    async def _catch_up(
        self, consumer: Any, end_offsets: dict[Any, int], deadline: float, budget: float
    ) -> None:
        loop = asyncio.get_running_loop()
        pending = dict(end_offsets)
        while True:
            for tp, end in list(pending.items()):
                if await consumer.position(tp) >= end:
                    del pending[tp]
            if not pending:
                return
            if loop.time() >= deadline:
                behind = {f"{tp.topic}/{tp.partition}": end for tp, end in pending.items()}
                raise QuotaStateUnavailable(
                    f"did not read {QUOTA.name} up to its end offsets {behind} within {budget:g}s"
                )
            await self._apply(await consumer.getmany(timeout_ms=200))

    async def _follow(self, consumer: Any) -> None:
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=1000)
            except Exception as exc:  # aiokafka retries broker errors itself; this is the rest
                log.warning("quota consumer failed; retrying", error=_describe(exc))
                await asyncio.sleep(1.0)
                continue
            await self._apply(batch)

    async def _apply(self, batch: dict[Any, list[Any]]) -> None:
        changed = False
        for records in batch.values():
            for record in records:
                changed = self._apply_record(record) or changed
        if changed:
            for service in self.services:
                QUOTA_STATES.labels(service).set(len(self.events))
            async with self.updated:
                self.updated.notify_all()

    def _apply_record(self, record: Any) -> bool:
        """Apply one message; True when it changed the state."""
        if record.value is None:  # a tombstone (compaction's delete): the tenant is gone
            tenant_id = _tenant_key(record.key)
            return tenant_id is not None and self.events.pop(tenant_id, None) is not None
        event = _parse(record)
        if event is None or event.tenant_id is None:
            return False
        current = self.events.get(event.tenant_id)
        if current is not None and _aware(event.occurred_at) < _aware(current.occurred_at):
            return False  # an older state arriving late
        self.events[event.tenant_id] = event
        if self._live:
            lag = (utcnow() - _aware(event.occurred_at)).total_seconds()
            for service in self.services:
                QUOTA_APPLY_LAG.labels(service).observe(max(0.0, lag))
        return True


# One feed per event loop and broker for the guards that share theirs (``QuotaGuard(shared=
# True)``): the all-in-one process runs chat's and ingest's guards, and each feed is a consumer
# the broker answers ten times a second.
_SHARED_FEEDS: dict[tuple[asyncio.AbstractEventLoop, str], QuotaFeed] = {}


async def _join_shared_feed(
    bootstrap_servers: str, service: str, *, start_timeout: float, max_backoff: float
) -> QuotaFeed:
    key = (asyncio.get_running_loop(), bootstrap_servers)
    feed = _SHARED_FEEDS.get(key)
    if feed is None:
        feed = _SHARED_FEEDS[key] = QuotaFeed(
            bootstrap_servers, name="shared", max_backoff=max_backoff
        )
    feed.services.append(service)
    try:
        await feed.start(start_timeout)
    except BaseException:
        await _leave_shared_feed(feed, service)
        raise
    return feed


async def _leave_shared_feed(feed: QuotaFeed, service: str) -> None:
    """The last guard to leave stops the feed."""
    feed.services.remove(service)
    if not feed.services:
        key = (asyncio.get_running_loop(), feed.bootstrap_servers)
        if _SHARED_FEEDS.get(key) is feed:
            del _SHARED_FEEDS[key]
        await feed.stop()


class QuotaGuard:
    """A service's enforcement over the quota state: its own rate windows and recent debits,
    over a feed of its own or (``shared``) the one its process's other guards read."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        service: str,
        start_timeout: float = 30.0,
        max_backoff: float = 5.0,
        metering_allowance: float = 2.0,
        shared: bool = False,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.service = service
        self.start_timeout = start_timeout
        self.max_backoff = max_backoff
        self.shared = shared
        # Until start() joins a shared feed, an empty one of its own (no state: all allowed).
        self._feed = QuotaFeed(bootstrap_servers, name=service, max_backoff=max_backoff)
        self._feed.services.append(service)
        self._started = False
        # The plan's requests per minute, counted per tenant in this replica.
        self._rate = MovingWindow(RATE_WINDOW_SECONDS)
        # Tokens this replica spent that usage may not have metered yet: (when, tokens).
        self._debits: dict[uuid.UUID, list[tuple[datetime, int]]] = {}
        # A state published at T may not include tokens spent shortly before T (still on their
        # way through the outbox, the broker and usage's batch): a debit is dropped only once
        # a state this much newer than it arrives. Near a limit this errs on refusing early.
        self.metering_allowance = timedelta(seconds=metering_allowance)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every tenant's state, then keep following the topic in the background.

        Retries with backoff while the broker is unreachable; raises
        :class:`QuotaStateUnavailable` when it has not caught up within ``start_timeout``.
        """
        if self._started:
            return
        if self.shared:
            self._feed = await _join_shared_feed(
                self.bootstrap_servers,
                self.service,
                start_timeout=self.start_timeout,
                max_backoff=self.max_backoff,
            )
        else:
            await self._feed.start(self.start_timeout)
        self._started = True
        log.info("quota state loaded", service=self.service, tenants=len(self._feed.events))

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.shared:
            await _leave_shared_feed(self._feed, self.service)
        else:
            await self._feed.stop()

    @property
    def ready(self) -> bool:
        return self._started and self._feed.ready

    async def check_ready(self) -> None:
        """A readiness check: ``HealthChecks.add("quota", guard.check_ready)``."""
        if not self.ready:
            raise QuotaStateUnavailable("quota state not loaded")

    # --- queries ------------------------------------------------------------------------------

    def state(self, tenant_id: uuid.UUID) -> QuotaChangedData | None:
        return self._feed.state(tenant_id)

    def check(self, tenant_id: uuid.UUID, *limits: str) -> None:
        """Raise :class:`QuotaExceeded` when any named limit (default: any) is spent now.

        Token limits count this replica's own recent spending (:meth:`debit`) on top of the
        published state, so a burst of requests cannot run far past a limit while usage is
        still metering the first of them."""
        state = self.state(tenant_id)
        if state is None:
            return
        now = utcnow()
        names = limits or tuple(dict.fromkeys([*state.exceeded, *state.limits]))
        debits = self._debits_after_state(tenant_id)
        spent = [
            (wait, name)
            for name in names
            if (wait := _wait(state, name, now, _in_period(debits, state, name))) is not None
        ]
        if not spent:
            return
        # The binding limit is the one that frees up last: retrying earlier would fail again.
        wait, name = max(spent)
        limit = state.limits.get(name)
        resets_at = _aware(limit.resets_at) if limit and limit.resets_at else None
        detail = (
            f"{name} quota spent; resets at {resets_at.isoformat()}"
            if resets_at
            else f"{name} quota spent; free some up or change plan"
        )
        raise QuotaExceeded(
            detail,
            retry_after=wait,
            extra={"limit": name, "resets_at": resets_at.isoformat() if resets_at else None},
        )

    def debit(self, tenant_id: uuid.UUID, tokens: int, *, at: datetime | None = None) -> None:
        """Tokens just spent for the tenant here: they count against its token limits until a
        state computed after them arrives (by then usage has metered them)."""
        if tokens > 0:
            self._debits.setdefault(tenant_id, []).append((_aware(at or utcnow()), tokens))

    def _debits_after_state(self, tenant_id: uuid.UUID) -> list[tuple[datetime, int]]:
        """The tenant's debits the held state may not include (older ones are dropped)."""
        debits = self._debits.get(tenant_id)
        if not debits:
            return []
        event = self._feed.events.get(tenant_id)
        if event is not None:
            covered = _aware(event.occurred_at) - self.metering_allowance
            debits = [(at, n) for at, n in debits if at > covered]
            if debits:
                self._debits[tenant_id] = debits
            else:
                del self._debits[tenant_id]
        return debits

    def check_rate(self, tenant_id: uuid.UUID) -> None:
        """Count one request; raise :class:`RateLimited` past the plan's requests per minute.

        Counted per replica: with N replicas behind the gateway a tenant gets up to N times
        the plan's rate (the gateway's per-tenant limit bounds the whole)."""
        state = self.state(tenant_id)
        per_minute = state.requests_per_minute if state is not None else None
        if not per_minute:
            return
        retry_after = self._rate.hit(tenant_id, per_minute)
        if retry_after is None:
            return
        raise RateLimited(
            f"more than {per_minute} requests a minute on the {state.plan} plan"
            if state is not None
            else None,
            retry_after=max(1.0, retry_after),
            extra={"limit": "requests_per_minute", "requests_per_minute": per_minute},
        )

    def check_fixed(
        self, tenant_id: uuid.UUID, *, model: str | None = None, file_bytes: int | None = None
    ) -> None:
        """The plan's fixed limits: which models it may use, how large a file it may upload."""
        state = self.state(tenant_id)
        if state is None:
            return
        allowed = state.allowed_models
        if model is not None and "*" not in allowed and model not in allowed:
            raise Forbidden(
                f"model {model!r} is not available on the {state.plan} plan",
                code="model_not_allowed",
                extra={"model": model, "allowed_models": list(allowed)},
            )
        limit = state.max_file_bytes
        if file_bytes is not None and limit is not None and file_bytes > limit:
            raise PayloadTooLarge(
                f"file of {file_bytes} bytes exceeds the {state.plan} plan's {limit} bytes",
                code="file_too_large",
                extra={"max_file_bytes": limit},
            )

    # A deadline per call (ASYNC109) is what tests and benchmarks want from this helper.
    async def wait_for(
        self,
        tenant_id: uuid.UUID,
        predicate: Predicate,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> QuotaChangedData | None:
        """Wait until ``predicate(state(tenant_id))`` holds (checked after every applied
        update); returns that state. Raises ``TimeoutError``."""
        updated = self._feed.updated
        async with asyncio.timeout(timeout), updated:
            await updated.wait_for(lambda: predicate(self.state(tenant_id)))
        return self.state(tenant_id)


def _parse(record: Any) -> QuotaChanged | None:
    """The message's event, or None (logged) when it is unreadable or not one we enforce."""
    where = {"partition": record.partition, "offset": record.offset}
    try:
        event = _EVENTS.validate_json(record.value)
    except ValueError as exc:  # pydantic's ValidationError: not JSON, or not an event
        log.warning("skipping a malformed quota message", **where, error=str(exc)[:300])
        return None
    if not isinstance(event, QuotaChanged):
        log.debug(
            "skipping an unknown quota event", **where, type=event.type, version=event.version
        )
        return None
    if event.tenant_id is None:
        log.warning("skipping a quota event without a tenant", **where, event_id=str(event.id))
        return None
    return event


def _tenant_key(key: bytes | None) -> uuid.UUID | None:
    try:
        return uuid.UUID((key or b"").decode())
    except ValueError:  # UnicodeDecodeError is one too
        log.warning("skipping a quota tombstone without a tenant key")
        return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}"


def _aware(moment: datetime) -> datetime:
    # Producers write UTC; a timestamp without an offset is read as UTC, not local time.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _in_period(debits: list[tuple[datetime, int]], state: QuotaChangedData, name: str) -> int:
    """The debits that count against token limit ``name``: those of its current period (a day's
    spending does not count against the next day)."""
    if name not in TOKEN_LIMITS or not debits:
        return 0
    limit = state.limits.get(name)
    if limit is None or limit.resets_at is None:
        return sum(n for _, n in debits)
    ends = _aware(limit.resets_at)
    if name == "daily_tokens":
        starts = ends - timedelta(days=1)
    else:  # monthly: the first of the month the period ends after
        starts = (ends - timedelta(days=1)).replace(
            day=1, hour=0, minute=0, second=0, microsecond=0
        )
    return sum(n for at, n in debits if starts <= at < ends)


def _wait(state: QuotaChangedData, name: str, now: datetime, pending: int = 0) -> float | None:
    """Seconds until limit ``name`` frees up when it is spent now (``pending`` more used than
    the state says), else None."""
    limit = state.limits.get(name)
    spent = name in state.exceeded or (
        limit is not None
        and (
            limit.remaining == 0
            or (limit.limit is not None and pending > 0 and limit.used + pending >= limit.limit)
        )
    )
    if not spent:
        return None
    if limit is None or limit.resets_at is None:
        return NO_RESET_RETRY_AFTER
    wait = (_aware(limit.resets_at) - now).total_seconds()
    return wait if wait > 0 else None  # the period has ended: the reset is on its way
