"""Transactional outbox: events are rows written with the state change, published after commit.

The relay publishes rows in insertion order and marks them published. Only one relay per
database publishes at a time (a transaction-level advisory lock), so per-tenant order holds
with any number of replicas. It wakes on ``NOTIFY`` from the insert trigger (every replica's
relay hears every insert, so one that holds the lock publishes what another wrote), with a slow
poll as the fallback (a faster one while it cannot listen), and backs off while the broker is
unreachable: nothing is lost, delivery resumes when it returns (at least once; consumers dedupe
by event id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from faststream.kafka import KafkaBroker
from sqlalchemy import Table, insert, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_common.context import KAFKA_CORRELATION_HEADER
from docuchat_common.db import Database
from docuchat_common.events.envelope import Event
from docuchat_common.events.tables import OUTBOX_CHANNEL
from docuchat_common.events.topics import Topic, ensure_topics
from docuchat_common.logging import get_logger
from docuchat_common.metrics import OUTBOX_PENDING, OUTBOX_PUBLISH_ERRORS, OUTBOX_PUBLISHED
from docuchat_common.tasks import stop_task, wait_event
from docuchat_common.telemetry import attach_trace_headers, current_trace_headers, detach

log = get_logger(__name__)
# The relay's connection is named "<this>-<service>" in pg_stat_activity.
RELAY_APPLICATION_NAME = "docuchat-outbox-relay"


@dataclass(frozen=True)
class RelayStatements:
    """The relay's SQL, as plain statements for its own asyncpg connection. The table name is
    the service's outbox ``Table``'s, never input (hence the S608 waivers)."""

    claim: str
    unclaim: str
    pending: str

    @classmethod
    def for_table(cls, table: str) -> RelayStatements:
        return cls(
            claim=f"""
UPDATE {table} SET published_at = now(), attempts = attempts + 1
WHERE id IN (
    SELECT id FROM {table}
    WHERE published_at IS NULL AND pg_try_advisory_xact_lock($1)
    ORDER BY seq LIMIT $2
)
RETURNING id, seq, topic, key, payload, headers""",  # noqa: S608
            unclaim=f"UPDATE {table} SET published_at = NULL, attempts = attempts - 1"  # noqa: S608
            " WHERE id = ANY($1::uuid[])",
            pending=f"SELECT count(*) FROM {table} WHERE published_at IS NULL",  # noqa: S608
        )


class Outbox:
    """Writes events into the service's outbox table inside the caller's transaction."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def add(self, session: AsyncSession, *events: Event[Any]) -> None:
        if not events:
            return
        trace_headers = current_trace_headers()
        await session.execute(
            insert(self.table),
            [
                {
                    "id": event.id,
                    "topic": event.topic.name,
                    "key": event.key,
                    "event_type": event.type,
                    "payload": event.to_json_dict(),
                    "headers": {
                        **trace_headers,
                        **(
                            {KAFKA_CORRELATION_HEADER: event.correlation_id}
                            if event.correlation_id
                            else {}
                        ),
                    },
                }
                for event in events
            ],
        )


class OutboxRelay:
    def __init__(
        self,
        *,
        service: str,
        database: Database,
        table: Table,
        broker: KafkaBroker,
        bootstrap_servers: str,
        topics: list[Topic],
        batch_size: int = 200,
        poll_interval: float = 1.0,
        listening_poll_interval: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.service = service
        self.database = database
        self.table = table
        self.broker = broker
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.batch_size = batch_size
        # How long it waits for a NOTIFY before looking anyway: while it listens the look is a
        # safety net only (every look is a transaction, for each service's relay, idle or not).
        self.poll_interval = poll_interval
        self.listening_poll_interval = listening_poll_interval
        self.max_backoff = max_backoff
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None  # asyncpg's, see _connect
        self._listening = False
        self._statements = RelayStatements.for_table(table.name)
        # The advisory lock key: one relay per database at a time.
        self._lock_key = 0x0D0C0C4A7

    def wake(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        try:
            await self._connect()
        except Exception as exc:  # the relay's loop connects again, with backoff
            log.warning("outbox relay cannot connect yet", error=str(exc))
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        await self._disconnect()

    @property
    def listening(self) -> bool:
        return self._listening and self._connection is not None and not self._connection.is_closed()

    async def _connect(self) -> None:
        """The relay's own connection: it LISTENs there, so an insert anywhere (any process)
        wakes it, and runs its statements there as plain asyncpg (not an ORM session from the
        pool: the relay looks after nearly every commit that writes an event, and an ORM
        session costs several times the statement itself)."""
        import asyncpg

        await self._disconnect()
        url = make_url(self.database.url).set(drivername="postgresql")
        connection = await asyncpg.connect(
            url.render_as_string(hide_password=False),
            # Operators (and tests) tell it apart in pg_stat_activity.
            server_settings={"application_name": f"{RELAY_APPLICATION_NAME}-{self.service}"},
        )
        try:
            await connection.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            # A lost connection hears nothing more: look now, and connect again.
            connection.add_termination_listener(lambda *_: self._wakeup.set())
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        try:
            await connection.add_listener(OUTBOX_CHANNEL, lambda *_: self._wakeup.set())
            self._listening = True
        except Exception as exc:  # e.g. a transaction-mode pooler: polling still delivers
            log.warning("outbox listen failed; polling only", error=str(exc))

    async def _open_connection(self) -> Any:
        """The relay's connection; connected again if it was lost (the database is back)."""
        if self._connection is None or self._connection.is_closed():
            await self._connect()
        return self._connection

    async def _disconnect(self) -> None:
        connection, self._connection, self._listening = self._connection, None, False
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def _run(self) -> None:
        backoff = 0.1
        topics_ready = False
        while True:
            try:
                if not topics_ready:
                    await ensure_topics(self.bootstrap_servers, self.topics)
                    topics_ready = True
                # Cleared before the look, not after: a NOTIFY for a row committed while this
                # batch is published must wake the next look, not wait for a poll.
                self._wakeup.clear()
                published = await self.publish_pending()
                backoff = 0.1
                if published >= self.batch_size:
                    continue  # more waiting: don't sleep
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                OUTBOX_PUBLISH_ERRORS.labels(self.service).inc()
                log.warning("outbox relay failed; will retry", error=str(exc), backoff=backoff)
                # A restarted in-memory broker has lost its topics: create them again.
                topics_ready = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            await wait_event(
                self._wakeup,
                self.listening_poll_interval if self.listening else self.poll_interval,
            )

    async def replay(self) -> None:
        """Publish everything again: the broker lost what it had (an in-memory broker restarted).
        Consumers dedupe by event id, so only events they never saw take effect."""
        # On the pool, not the relay's connection: the watchdog calls this while the relay may
        # be mid-batch there, and an asyncpg connection runs one operation at a time.
        async with self.database.transaction() as session:
            result = await session.execute(
                update(self.table)
                .where(self.table.c.published_at.is_not(None))
                .values(published_at=None)
            )
        log.warning("outbox replay after broker restart", events=getattr(result, "rowcount", None))
        self.wake()

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        connection = await self._open_connection()
        async with connection.transaction():
            # The rows are marked published as they are read (one statement, not a read and a
            # write); those the broker then refuses are unmarked before the commit. The lock is
            # taken by the query itself: a relay that does not get it reads no rows. Re-taking
            # it per row within the transaction is free.
            rows = sorted(
                await connection.fetch(self._statements.claim, self._lock_key, self.batch_size),
                key=lambda row: row["seq"],
            )
            if not rows:
                OUTBOX_PENDING.labels(self.service).set(0)
                return 0
            # All rows are handed to the producer at once, then confirmed in order: one round
            # trip per batch rather than per event (a period reset publishes one state per
            # tenant). The producer keeps each partition's order.
            sent: list[asyncio.Future[Any]] = []
            error: BaseException | None = None
            for row in rows:
                try:
                    sent.append(
                        await self._publish(
                            row["topic"], row["key"], row["payload"], row["headers"]
                        )
                    )
                except Exception as exc:
                    error = exc  # the rows before it may still be confirmed
                    break
            confirmed = await asyncio.gather(*sent, return_exceptions=True)
            done = 0
            for outcome in confirmed:
                if isinstance(outcome, BaseException):
                    error = outcome
                    break
                done += 1
            # Rows already sent stay marked even when a later one failed: no re-send storm.
            if done < len(rows):
                await connection.execute(
                    self._statements.unclaim, [row["id"] for row in rows[done:]]
                )
            # A part batch was all there was (what was written since woke us again already).
            pending = (
                await connection.fetchval(self._statements.pending)
                if len(rows) == self.batch_size
                else len(rows) - done
            )
        OUTBOX_PUBLISHED.labels(self.service).inc(done)
        OUTBOX_PENDING.labels(self.service).set(pending or 0)
        if error is not None:
            raise error
        return done

    async def _publish(
        self, topic: str, key: bytes | None, payload: dict[str, Any], headers: dict[str, str]
    ) -> asyncio.Future[Any]:
        """Hand one event to the producer; the future resolves once the broker has it."""
        # Continue the trace of the request that wrote the row.
        token = attach_trace_headers(headers)
        try:
            return await self.broker.publish(
                payload,
                topic=topic,
                key=key,
                headers={k: v for k, v in headers.items() if k != KAFKA_CORRELATION_HEADER},
                correlation_id=headers.get(KAFKA_CORRELATION_HEADER),
                no_confirm=True,
            )
        finally:
            detach(token)
