from __future__ import annotations

from tests.auth.conftest import AuthService


async def test_register_returns_tokens_that_work(auth: AuthService) -> None:
    body = await auth.register("Owner@Example.COM")
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["user"]["email"] == "owner@example.com"  # normalised
    assert body["user"]["role"] == "owner"
    tenant = body["tenant"]
    assert (tenant["name"], tenant["plan"]) == ("Acme", "free")
    assert tenant["created_at"]
    me = await auth.client.get("/api/v1/users/me", headers=auth.bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["tenant_id"] == body["tenant"]["id"]
