"""usage: room on every page of the counter tables for their updates

Metering updates the same bucket and period rows batch after batch. With full pages each update
writes its new row version elsewhere and adds index entries for it; with half of each page kept
free, PostgreSQL writes it beside the old one (a HOT update: no index entry) and prunes the old
one in passing. Pages written from now on keep the room.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTER_TABLES = ("usage_buckets", "tenant_period_usage")


def upgrade() -> None:
    for table in COUNTER_TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")


def downgrade() -> None:
    for table in COUNTER_TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
