"""Auth through the gateway, as a frontend uses it (both modes, the stack fixture of
test_stack)."""

from __future__ import annotations

import uuid

import httpx

from docuchat.stack import DevStack
from tests.e2e.database import sql
from tests.helpers import eventually

PASSWORD = "correct horse battery staple"


async def test_register_login_refresh_me_logout(gateway: httpx.AsyncClient) -> None:
    email = f"flow-{uuid.uuid4().hex[:8]}@example.com"
    registered = await gateway.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "tenant_name": "Flow"}
    )
    assert registered.status_code == 201

    login = await gateway.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    pair = login.json()
    refreshed = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 200
    new_pair = refreshed.json()
    assert new_pair["refresh_token"] != pair["refresh_token"]

    me = await gateway.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {new_pair['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == email

    assert (
        await gateway.post("/api/v1/auth/logout", json={"refresh_token": new_pair["refresh_token"]})
    ).status_code == 204
    after = await gateway.post(
        "/api/v1/auth/refresh", json={"refresh_token": new_pair["refresh_token"]}
    )
    assert after.status_code == 401


async def test_api_keys_work_through_the_gateway_until_revoked(gateway: httpx.AsyncClient) -> None:
    owner = (
        await gateway.post(
            "/api/v1/auth/register",
            json={
                "email": f"keys-{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "tenant_name": "Keys",
            },
        )
    ).json()
    headers = {"Authorization": f"Bearer {owner['access_token']}"}
    created = await gateway.post(
        "/api/v1/api-keys", json={"name": "ci", "scopes": ["read", "chat"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("dck_")

    with_key = {"Authorization": f"Bearer {key}"}
    tenant = await gateway.get("/api/v1/tenant", headers=with_key)
    assert tenant.status_code == 200
    assert tenant.json()["id"] == owner["tenant"]["id"]

    assert (
        await gateway.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=headers)
    ).status_code == 204

    async def refused() -> bool:
        return (await gateway.get("/api/v1/tenant", headers=with_key)).status_code == 401

    assert await eventually(refused, timeout=5, what="the revoked key to be refused")


async def test_deleting_the_tenant_reaches_usage(
    stack: DevStack, gateway: httpx.AsyncClient
) -> None:
    owner = (
        await gateway.post(
            "/api/v1/auth/register",
            json={
                "email": f"bye-{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "tenant_name": "Bye",
            },
        )
    ).json()
    headers = {"Authorization": f"Bearer {owner['access_token']}"}

    async def plan_status() -> int:
        return (await gateway.get("/api/v1/usage/plan", headers=headers)).status_code

    assert await eventually(lambda: _is(plan_status, 200), what="the subscription")
    assert (await gateway.delete("/api/v1/tenant", headers=headers)).status_code == 204
    # The access token has not expired, but its tenant is gone: the gateway refuses it.
    assert await eventually(lambda: _is(plan_status, 401), what="the gateway to refuse the token")
    refused = await gateway.get("/api/v1/usage/plan", headers=headers)
    assert refused.json()["code"] == "account_removed"

    async def usage_purged() -> bool:
        return not await sql(
            stack,
            "docuchat_usage",
            "SELECT 1 FROM subscriptions WHERE tenant_id = $1",
            uuid.UUID(owner["tenant"]["id"]),
        )

    assert await eventually(usage_purged, what="usage to purge the tenant")


async def _is(probe: object, expected: int) -> bool:
    return await probe() == expected  # type: ignore[operator]


async def test_a_new_tenant_finds_its_default_knowledge_base(gateway: httpx.AsyncClient) -> None:
    owner = (
        await gateway.post(
            "/api/v1/auth/register",
            json={
                "email": f"kb-{uuid.uuid4().hex[:8]}@example.com",
                "password": PASSWORD,
                "tenant_name": "KB",
            },
        )
    ).json()
    headers = {"Authorization": f"Bearer {owner['access_token']}"}

    async def default_kb() -> list[str]:
        body = (await gateway.get("/api/v1/knowledge-bases", headers=headers)).json()
        return [kb["name"] for kb in body.get("items", []) if kb["is_default"]]

    assert await eventually(default_kb, what="the default knowledge base") == ["My documents"]
