"""auth: plans on tenants, login times, API keys, one-time secrets, throttles

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = True, server_default: Any = None) -> sa.Column[Any]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=server_default
    )


def upgrade() -> None:
    op.add_column(
        "tenants", sa.Column("plan", sa.String(50), nullable=False, server_default="free")
    )
    op.add_column("users", _ts("last_login_at"))
    op.add_column("users", _ts("password_changed_at"))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", postgresql.ARRAY(sa.String(20)), nullable=False),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("expires_at"),
        _ts("last_used_at"),
        _ts("revoked_at"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "one_time_secrets",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("secret_hash", sa.String(200), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _ts("created_at", nullable=False, server_default=sa.func.now()),
        _ts("expires_at", nullable=False),
        _ts("used_at"),
    )
    op.create_index("ix_one_time_secrets_subject", "one_time_secrets", ["subject"])
    op.create_index("ix_one_time_secrets_user_id", "one_time_secrets", ["user_id"])
    op.create_table(
        "throttles",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        _ts("window_started_at", nullable=False),
        _ts("locked_until"),
    )


def downgrade() -> None:
    op.drop_table("throttles")
    op.drop_table("one_time_secrets")
    op.drop_table("api_keys")
    op.drop_column("users", "password_changed_at")
    op.drop_column("users", "last_login_at")
    op.drop_column("tenants", "plan")
