"""auth: look one-time secrets up by hash (reset and invitation tokens)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_one_time_secrets_secret_hash", "one_time_secrets", ["secret_hash"])


def downgrade() -> None:
    op.drop_index("ix_one_time_secrets_secret_hash", "one_time_secrets")
