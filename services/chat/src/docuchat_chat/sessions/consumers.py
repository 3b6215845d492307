"""Thin consumers: a deleted user's, tenant's or knowledge base's conversations go with
them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from docuchat_chat.sessions.repository import SessionRepository
from docuchat_chat.sessions.service import SessionService
from docuchat_common.events.catalog import KnowledgeBaseDeleted, TenantDeleted, UserDeleted
from docuchat_common.events.topics import KNOWLEDGE_BASES, TENANTS, USERS
from docuchat_common.service import ServiceRuntime


def register(runtime: ServiceRuntime) -> None:
    async def on_tenant_deleted(event: Any, session: AsyncSession) -> None:
        """A deleted tenant's chat sessions, messages, feedback and LLM settings go."""
        if isinstance(event, TenantDeleted):
            await SessionService(SessionRepository(session)).forget_tenant(event.data.tenant_id)

    async def on_user_deleted(event: Any, session: AsyncSession) -> None:
        """A deleted user's chat sessions (with their messages) and feedback go."""
        if isinstance(event, UserDeleted):
            await SessionService(SessionRepository(session)).forget_user(
                event.data.user_id, event.tenant_id
            )

    async def on_knowledge_base_deleted(event: Any, session: AsyncSession) -> None:
        """Sessions about a deleted knowledge base (with their messages) go: nothing is left
        to ask them, and their citations point at deleted documents."""
        if isinstance(event, KnowledgeBaseDeleted) and event.tenant_id is not None:
            await SessionService(SessionRepository(session)).forget_knowledge_base(
                event.data.knowledge_base_id, event.tenant_id
            )

    # Purges: nothing waits on them within the second (the gateway refuses a deleted tenant's
    # or user's tokens at once, and a deleted knowledge base's sessions have nothing to ask).
    runtime.consumers.subscribe(
        TENANTS, [TenantDeleted], group="chat.tenants", handler=on_tenant_deleted, background=True
    )
    runtime.consumers.subscribe(
        KNOWLEDGE_BASES,
        [KnowledgeBaseDeleted],
        group="chat.knowledge-bases",
        handler=on_knowledge_base_deleted,
        background=True,
    )
    runtime.consumers.subscribe(
        USERS, [UserDeleted], group="chat.users", handler=on_user_deleted, background=True
    )
