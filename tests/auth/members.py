"""Test helper: a user of a given role in an existing tenant, with an access token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from docuchat_auth.accounts.passwords import hash_password
from docuchat_auth.models import User
from docuchat_auth.tokens.service import TokenService
from tests.auth.conftest import AuthService

PASSWORD = "correct horse battery staple"


async def add_member(auth: AuthService, tenant_id: str, role: str = "member") -> tuple[User, str]:
    user = User(
        id=uuid.uuid4(),
        tenant_id=uuid.UUID(tenant_id),
        email=f"{role}-{uuid.uuid4().hex[:8]}@example.com",
        name=None,
        password_hash=await hash_password(PASSWORD),
        role=role,
        created_at=datetime.now(UTC),
    )
    async with auth.runtime.database.transaction() as session:
        session.add(user)
    tokens: TokenService = auth.runtime.state["tokens"]
    return user, tokens.access_token(user)
