"""usage: tokens.consumed claims in their own narrow table

Metering claims one row per event; in ``processed_events`` each row and index entry repeated the
consumer and event type. Existing claims move over, so nothing is metered twice.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metered_events",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_metered_events"),
    )
    op.execute(
        "INSERT INTO metered_events (event_id) "
        "SELECT event_id FROM processed_events WHERE consumer = 'usage.tokens'"
    )
    op.execute("DELETE FROM processed_events WHERE consumer = 'usage.tokens'")


def downgrade() -> None:
    op.execute(
        "INSERT INTO processed_events (consumer, event_id, event_type) "
        "SELECT 'usage.tokens', event_id, 'tokens.consumed' FROM metered_events"
    )
    op.drop_table("metered_events")
