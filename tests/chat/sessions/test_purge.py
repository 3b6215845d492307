"""user.deleted, knowledge_base.deleted and tenant.deleted purge the conversations (and for a
tenant its LLM settings); a redelivered event changes nothing more."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from docuchat_chat.models import ChatSession, LLMSettings
from docuchat_common.events.catalog import (
    KnowledgeBaseDeleted,
    KnowledgeBaseDeletedData,
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


async def test_a_deleted_knowledge_base_takes_its_sessions_only(
    chat: ChatService, ingest: HttpService
) -> None:
    tenant, user, other_tenant = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    doomed, kept = await make_kb(ingest, tenant), await make_kb(ingest, tenant)
    gone = await chat.new_session(tenant, user, doomed, title="about the deleted one")
    stays = await chat.new_session(tenant, user, kept, title="about the other one")
    # the same knowledge base id under another tenant is another tenant's business
    foreign = await chat.new_session(other_tenant, user, await make_kb(ingest, other_tenant))

    async def session_ids(owner: uuid.UUID) -> set[str]:
        listed = await chat.client.get("/api/v1/sessions", headers=chat.headers(owner, user))
        return {s["id"] for s in listed.json()["items"]}

    deleted = KnowledgeBaseDeleted(
        tenant_id=tenant,
        source="ingest",
        data=KnowledgeBaseDeletedData(knowledge_base_id=doomed, name="Doomed", documents=3),
    )
    misaddressed = KnowledgeBaseDeleted(
        tenant_id=other_tenant,
        source="ingest",
        data=KnowledgeBaseDeletedData(knowledge_base_id=kept, name="Kept", documents=0),
    )
    await chat.publish(deleted, misaddressed, deleted)  # one delivered twice

    async def purged() -> bool:
        return await session_ids(tenant) == {stays["id"]}

    await eventually(purged, what="the deleted knowledge base's sessions purged")
    assert (
        await chat.client.get(f"/api/v1/sessions/{gone['id']}", headers=chat.headers(tenant, user))
    ).status_code == 404
    assert await session_ids(other_tenant) == {foreign["id"]}
