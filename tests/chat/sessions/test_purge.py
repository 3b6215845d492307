"""user.deleted and tenant.deleted purge the conversations (and for a tenant its LLM settings);
a redelivered event changes nothing more."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from docuchat_chat.models import ChatSession, LLMSettings
from docuchat_common.events.catalog import (
    TenantDeleted,
    TenantDeletedData,
    UserDeleted,
    UserDeletedData,
)
from tests.chat.conftest import ChatService, HttpService, make_kb
from tests.helpers import eventually


async def sessions_of(chat: ChatService, tenant: uuid.UUID) -> list[uuid.UUID]:
    async with chat.runtime.database.transaction() as db:
        rows = await db.scalars(select(ChatSession.user_id).where(ChatSession.tenant_id == tenant))
        return sorted(rows.all())


async def test_a_deleted_user_and_a_deleted_tenant_lose_their_sessions(
    chat: ChatService, ingest: HttpService
) -> None:
    tenant, leaver, stayer = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    other_tenant = uuid.uuid4()
    kb, other_kb = await make_kb(ingest, tenant), await make_kb(ingest, other_tenant)
    for user in (leaver, stayer):
        await chat.new_session(tenant, user, kb, title="t")
    await chat.new_session(other_tenant, leaver, other_kb, title="elsewhere")
    await chat.client.patch(
        "/api/v1/llm-settings", json={"model": "gpt-4o"}, headers=chat.headers(tenant)
    )

    gone = UserDeleted(tenant_id=tenant, source="auth", data=UserDeletedData(user_id=leaver))
    await chat.publish(gone, gone)  # delivered twice

    async def only_stayer_left() -> bool:
        return await sessions_of(chat, tenant) == [stayer]

    await eventually(only_stayer_left, what="the deleted user's sessions purged")
    assert await sessions_of(chat, other_tenant) == [leaver]  # same id, other tenant

    await chat.publish(
        TenantDeleted(tenant_id=tenant, source="auth", data=TenantDeletedData(tenant_id=tenant))
    )

    async def tenant_purged() -> bool:
        async with chat.runtime.database.transaction() as db:
            settings = await db.scalar(select(func.count()).select_from(LLMSettings))
        return await sessions_of(chat, tenant) == [] and settings == 0

    await eventually(tenant_purged, what="the deleted tenant's sessions and settings purged")
    assert await sessions_of(chat, other_tenant) == [leaver]
