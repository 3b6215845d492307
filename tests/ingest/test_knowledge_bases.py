"""Knowledge bases: CRUD scoped by tenant, the default one, plan limits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from docuchat_common.events.catalog import (
    QuotaChanged,
    QuotaChangedData,
    TenantCreated,
    TenantCreatedData,
    TenantDeleted,
    TenantDeletedData,
)
from docuchat_ingest.models import outbox
from tests.helpers import eventually
from tests.ingest.conftest import IngestService

KB = "/api/v1/knowledge-bases"


async def _names(ingest: IngestService, tenant: uuid.UUID) -> list[str]:
    body = (await ingest.client.get(KB, headers=ingest.as_user(tenant))).json()
    return [kb["name"] for kb in body["items"]]


async def test_a_new_tenant_gets_a_default_knowledge_base_and_a_deleted_one_loses_all(
    ingest: IngestService,
) -> None:
    tenant = uuid.uuid4()
    await ingest.publish(
        TenantCreated(
            tenant_id=tenant,
            source="auth",
            data=TenantCreatedData(tenant_id=tenant, name="T", owner_user_id=uuid.uuid4()),
        ),
    )
    assert await eventually(lambda: _names(ingest, tenant), what="the default knowledge base") == [
        "My documents"
    ]
    await ingest.client.post(KB, json={"name": "Contracts"}, headers=ingest.as_user(tenant))
    await ingest.publish(
        TenantDeleted(tenant_id=tenant, source="auth", data=TenantDeletedData(tenant_id=tenant))
    )

    async def gone() -> bool:
        return await _names(ingest, tenant) == []

    assert await eventually(gone, what="the tenant's knowledge bases purged")


async def test_crud_with_settings_and_clear_errors(ingest: IngestService) -> None:
    tenant = uuid.uuid4()
    headers = ingest.as_user(tenant)
    created = await ingest.client.post(
        KB,
        json={
            "name": "Research",
            "description": "papers",
            "system_prompt": "Answer briefly.",
            "settings": {"chunk_size": 128, "chunk_overlap": 16, "top_k": 8},
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    kb = created.json()
    assert kb["settings"] == {"chunk_size": 128, "chunk_overlap": 16, "top_k": 8}
    assert kb["is_default"] is False

    duplicate = await ingest.client.post(KB, json={"name": "research"}, headers=headers)
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "knowledge_base_exists"
    bad = await ingest.client.post(
        KB,
        json={"name": "X", "settings": {"chunk_size": 100, "chunk_overlap": 100}},
        headers=headers,
    )
    assert bad.status_code == 422

    patched = await ingest.client.patch(
        f"{KB}/{kb['id']}", json={"system_prompt": None, "name": "Papers"}, headers=headers
    )
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["system_prompt"]) == ("Papers", None)
    assert patched.json()["description"] == "papers"  # untouched fields stay
    # A misspelt field or a null name is refused, not silently ignored; nothing changes.
    for body in ({"nmae": "Typo"}, {"name": None}, {"settings": None}):
        refused = await ingest.client.patch(f"{KB}/{kb['id']}", json=body, headers=headers)
        assert refused.status_code == 422, body
        assert refused.json()["code"] == "validation_error"
    kept = (await ingest.client.get(f"{KB}/{kb['id']}", headers=headers)).json()
    assert (kept["name"], kept["settings"]) == ("Papers", patched.json()["settings"])

    assert (await ingest.client.get(f"{KB}/{kb['id']}", headers=headers)).json()["name"] == "Papers"
    member_delete = await ingest.client.delete(
        f"{KB}/{kb['id']}", headers=ingest.as_user(tenant, role="member")
    )
    assert member_delete.status_code == 403
    assert (await ingest.client.delete(f"{KB}/{kb['id']}", headers=headers)).status_code == 204
    assert (await ingest.client.get(f"{KB}/{kb['id']}", headers=headers)).status_code == 404
    # chat learns of it (and drops the knowledge base's sessions)
    async with ingest.runtime.database.transaction() as session:
        payloads = (
            await session.scalars(
                select(outbox.c.payload).where(outbox.c.event_type == "knowledge_base.deleted")
            )
        ).all()
    [deleted] = [p for p in payloads if p["data"]["knowledge_base_id"] == kb["id"]]
    assert deleted["tenant_id"] == str(tenant)
    assert (deleted["data"]["name"], deleted["data"]["documents"]) == ("Papers", 0)


async def test_another_tenants_knowledge_base_is_404(ingest: IngestService) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    kb = (await ingest.client.post(KB, json={"name": "Secret"}, headers=ingest.as_user(a))).json()
    for response in (
        await ingest.client.get(f"{KB}/{kb['id']}", headers=ingest.as_user(b)),
        await ingest.client.patch(
            f"{KB}/{kb['id']}", json={"name": "Mine"}, headers=ingest.as_user(b)
        ),
        await ingest.client.delete(f"{KB}/{kb['id']}", headers=ingest.as_user(b)),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "knowledge_base_not_found"
    assert await _names(ingest, b) == []


async def test_the_plans_knowledge_base_limit_is_enforced(ingest: IngestService) -> None:
    tenant = uuid.uuid4()
    state = QuotaChangedData(plan="free", limits={}, knowledge_bases=2)
    await ingest.publish(
        QuotaChanged(tenant_id=tenant, source="usage", occurred_at=datetime.now(UTC), data=state)
    )
    guard = ingest.runtime.state["quota"]
    await guard.wait_for(tenant, lambda s: s is not None and s.knowledge_bases == 2, timeout=30)
    headers = ingest.as_user(tenant)
    for name in ("one", "two"):
        assert (
            await ingest.client.post(KB, json={"name": name}, headers=headers)
        ).status_code == 201
    third = await ingest.client.post(KB, json={"name": "three"}, headers=headers)
    assert third.status_code == 429
    assert third.json()["code"] == "quota_exceeded"
    assert third.headers["retry-after"]
