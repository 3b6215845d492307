"""usage: one hourly bucket row per (tenant, hour, user, model), the three kinds as columns

Metering upserts one row per distinct key in a batch; with the kind in the key a chat event
(prompt + completion) cost two rows. Existing buckets are folded into the new shape.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.rename_table("usage_buckets", "usage_buckets_by_kind")
    op.execute(
        "ALTER TABLE usage_buckets_by_kind "
        "RENAME CONSTRAINT pk_usage_buckets TO pk_usage_buckets_by_kind"
    )
    op.create_table(
        "usage_buckets",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("embedding_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("events", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tenant_id", "hour", "user_id", "model"),
    )
    op.execute(
        """
        INSERT INTO usage_buckets (
            tenant_id, hour, user_id, model,
            prompt_tokens, completion_tokens, embedding_tokens, events
        )
        SELECT tenant_id, hour, user_id, model,
            coalesce(sum(tokens) FILTER (WHERE kind = 'prompt'), 0),
            coalesce(sum(tokens) FILTER (WHERE kind = 'completion'), 0),
            coalesce(sum(tokens) FILTER (WHERE kind = 'embedding'), 0),
            max(events)
        FROM usage_buckets_by_kind
        GROUP BY tenant_id, hour, user_id, model
        """
    )
    op.drop_table("usage_buckets_by_kind")


def downgrade() -> None:
    op.rename_table("usage_buckets", "usage_buckets_wide")
    op.execute(
        "ALTER TABLE usage_buckets_wide RENAME CONSTRAINT pk_usage_buckets TO pk_usage_buckets_wide"
    )
    op.create_table(
        "usage_buckets",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("events", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tenant_id", "hour", "user_id", "model", "kind"),
    )
    op.execute(
        """
        INSERT INTO usage_buckets (tenant_id, hour, user_id, model, kind, tokens, events)
        SELECT tenant_id, hour, user_id, model, kind, tokens, events
        FROM usage_buckets_wide,
        LATERAL (VALUES ('prompt', prompt_tokens), ('completion', completion_tokens),
                        ('embedding', embedding_tokens)) AS kinds (kind, tokens)
        WHERE tokens > 0
        """
    )
    op.drop_table("usage_buckets_wide")
