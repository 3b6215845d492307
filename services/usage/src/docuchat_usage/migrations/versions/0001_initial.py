"""usage: event tables, plans (seeded), subscriptions

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from docuchat_common.events.tables import create_event_tables, drop_event_tables

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MB = 1024 * 1024

# The starting catalog. Operators change limits with SQL (or a later admin API), not code.
PLANS = [
    {
        "id": "free",
        "name": "Free",
        "description": "To try DocuChat on a few documents.",
        "position": 0,
        "daily_tokens": 50_000,
        "monthly_tokens": 500_000,
        "documents": 50,
        "storage_bytes": 200 * MB,
        "knowledge_bases": 3,
        "max_file_bytes": 10 * MB,
        "requests_per_minute": 30,
        "allowed_models": ["*"],
    },
    {
        "id": "pro",
        "name": "Pro",
        "description": "For a team's working library.",
        "position": 1,
        "daily_tokens": 1_000_000,
        "monthly_tokens": 20_000_000,
        "documents": 5_000,
        "storage_bytes": 10_000 * MB,
        "knowledge_bases": 50,
        "max_file_bytes": 25 * MB,
        "requests_per_minute": 300,
        "allowed_models": ["*"],
    },
    {
        "id": "enterprise",
        "name": "Enterprise",
        "description": "No token or document limits.",
        "position": 2,
        "daily_tokens": None,
        "monthly_tokens": None,
        "documents": None,
        "storage_bytes": None,
        "knowledge_bases": None,
        "max_file_bytes": 100 * MB,
        "requests_per_minute": 3_000,
        "allowed_models": ["*"],
    },
]


def upgrade() -> None:
    create_event_tables(op.get_bind())
    plans = op.create_table(
        "plans",
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("daily_tokens", sa.BigInteger()),
        sa.Column("monthly_tokens", sa.BigInteger()),
        sa.Column("documents", sa.Integer()),
        sa.Column("storage_bytes", sa.BigInteger()),
        sa.Column("knowledge_bases", sa.Integer()),
        sa.Column("max_file_bytes", sa.BigInteger()),
        sa.Column("requests_per_minute", sa.Integer()),
        sa.Column(
            "allowed_models",
            postgresql.ARRAY(sa.String(200)),
            nullable=False,
            server_default="{}",
        ),
    )
    op.bulk_insert(plans, PLANS)
    op.create_table(
        "subscriptions",
        sa.Column("tenant_id", sa.Uuid(), primary_key=True),
        sa.Column("plan_id", sa.String(50), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column(
            "subscribed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.drop_table("plans")
    drop_event_tables(op.get_bind())
