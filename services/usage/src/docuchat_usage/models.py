"""The usage service's tables. It owns its database; no other service reads it."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from docuchat_common.db import new_metadata
from docuchat_common.events.tables import outbox_table, processed_events_table

metadata = new_metadata()
outbox = outbox_table(metadata)
processed_events = processed_events_table(metadata)
# The claims of the one high-volume consumer (tokens.consumed metering), apart from
# ``processed_events``: one narrow row per event (no consumer or type repeated in every row and
# index entry), and event ids are time-ordered UUIDv7, so claims append at the index's right edge.
metered_events = Table(
    "metered_events",
    metadata,
    Column("event_id", Uuid, nullable=False),
    PrimaryKeyConstraint("event_id"),
)


class Base(DeclarativeBase):
    metadata = metadata


class Plan(Base):
    """A plan's limits, as data: operators edit rows, not code. NULL means unlimited."""

    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(50), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(Integer, default=0)
    daily_tokens: Mapped[int | None] = mapped_column(BigInteger)
    monthly_tokens: Mapped[int | None] = mapped_column(BigInteger)
    documents: Mapped[int | None] = mapped_column(Integer)
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    knowledge_bases: Mapped[int | None] = mapped_column(Integer)
    max_file_bytes: Mapped[int | None] = mapped_column(BigInteger)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    allowed_models: Mapped[list[str]] = mapped_column(ARRAY(String(200)), default=list)


class Subscription(Base):
    __tablename__ = "subscriptions"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    subscribed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class UsageBucket(Base):
    """Tokens per tenant, user and model, per UTC hour, one column per kind: serves the 24h /
    7d / 30d windows and the daily history. ``user_id`` is the nil UUID when no user spent
    them (a system job)."""

    __tablename__ = "usage_buckets"
    # Updated in place batch after batch: room for HOT updates (migration 0005).
    __table_args__ = {"postgresql_with": {"fillfactor": 50}}

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    embedding_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    events: Mapped[int] = mapped_column(Integer, default=0)


class TenantPeriodUsage(Base):
    """Running totals the quotas are checked against, one row per tenant and period
    (``day`` = the UTC date, ``month`` = the first day of the UTC month)."""

    __tablename__ = "tenant_period_usage"
    # Updated in place batch after batch: room for HOT updates (migration 0005).
    __table_args__ = {"postgresql_with": {"fillfactor": 50}}

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(10), primary_key=True)  # day | month
    starts_on: Mapped[date] = mapped_column(Date, primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageDocument(Base):
    """Documents the tenant has indexed (from document.indexed / document.deleted): the
    document and storage quotas count these rows."""

    __tablename__ = "usage_documents"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    document_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class QuotaState(Base):
    """The last quota state published for a tenant (quota.changed is sent when it changes) and
    when it next needs a look without any event (a period reset)."""

    __tablename__ = "quota_states"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSONB)
    next_reset_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
