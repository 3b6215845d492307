"""The outbox and processed-events tables, added to each service's own metadata.

Every service keeps them in its own database, beside the state they protect: the outbox row is
written in the same transaction as the state change, the processed-event row in the same
transaction as the consumer's effect.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

OUTBOX_CHANNEL = "docuchat_outbox"


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", Uuid, primary_key=True, comment="The event id"),
        Column("seq", Integer, server_default=text("nextval('outbox_seq')"), nullable=False),
        Column("topic", String(200), nullable=False),
        Column("key", LargeBinary, nullable=True),
        Column("event_type", String(100), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("published_at", DateTime(timezone=True), nullable=True),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Index(
            "ix_outbox_unpublished",
            "seq",
            postgresql_where=text("published_at IS NULL"),
        ),
    )


def processed_events_table(metadata: MetaData) -> Table:
    return Table(
        "processed_events",
        metadata,
        Column("consumer", String(200), nullable=False),
        Column("event_id", Uuid, nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id"),
    )


# Alembic: run in the service's first migration (after creating the tables).
OUTBOX_SEQUENCE_SQL = "CREATE SEQUENCE IF NOT EXISTS outbox_seq"
OUTBOX_NOTIFY_SQL = (
    f"""
CREATE OR REPLACE FUNCTION docuchat_outbox_notify() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('{OUTBOX_CHANNEL}', '');
  RETURN NULL;
END;
$$ LANGUAGE plpgsql
""",
    """
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
FOR EACH STATEMENT EXECUTE FUNCTION docuchat_outbox_notify()
""",
)


def create_event_tables(bind: Connection) -> None:
    """For a service's first migration: the outbox (with its sequence and NOTIFY trigger) and
    the processed-events table, exactly as the runtime declares them."""
    bind.execute(text(OUTBOX_SEQUENCE_SQL))
    metadata = MetaData()
    outbox_table(metadata)
    processed_events_table(metadata)
    metadata.create_all(bind)
    for statement in OUTBOX_NOTIFY_SQL:
        bind.execute(text(statement))


def drop_event_tables(bind: Connection) -> None:
    bind.execute(text("DROP TABLE IF EXISTS outbox, processed_events"))
    bind.execute(text("DROP FUNCTION IF EXISTS docuchat_outbox_notify()"))
    bind.execute(text("DROP SEQUENCE IF EXISTS outbox_seq"))
