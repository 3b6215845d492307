"""Managing API keys: shown once, listed without the secret, owners/admins only, per tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from docuchat_auth.models import User
from docuchat_auth.tokens.service import TokenService
from docuchat_common.identity import IDENTITY_HEADER
from tests.auth.conftest import AuthService

KEYS = "/api/v1/api-keys"
LISTED_FIELDS = {
    "id",
    "name",
    "prefix",
    "scopes",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked",
}


async def create_key(auth: AuthService, token: str, **body: Any) -> dict[str, Any]:
    response = await auth.client.post(KEYS, json={"name": "ci", **body}, headers=auth.bearer(token))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def as_key(auth: AuthService, key: str) -> dict[str, str]:
    """The headers the gateway would pass on for a request made with ``key``."""
    response = await auth.client.get("/internal/forward-auth", headers=auth.bearer(key))
    assert response.status_code == 200, response.text
    return {IDENTITY_HEADER: response.headers[IDENTITY_HEADER]}


async def add_member(auth: AuthService, tenant_id: str) -> str:
    """A member of the tenant (there is no members API yet), and their access token."""
    member = User(
        id=uuid.uuid4(),
        tenant_id=uuid.UUID(tenant_id),
        email=f"member-{uuid.uuid4().hex[:8]}@example.com",
        name=None,
        password_hash=None,
        role="member",
    )
    async with auth.runtime.database.transaction() as session:
        session.add(member)
    tokens: TokenService = auth.runtime.state["tokens"]
    return tokens.access_token(member)


async def test_a_new_key_is_shown_once_and_never_listed_with_its_secret(
    auth: AuthService,
) -> None:
    owner = await auth.register("owner@example.com")
    token = owner["access_token"]

    created = await create_key(auth, token, name="  nightly import  ")
    key = created["key"]
    assert key.startswith("dck_")
    assert len(key) == 47
    assert created["name"] == "nightly import"
    assert created["prefix"] == key[:12]
    assert created["scopes"] == ["chat", "read", "write"]  # the default: no admin
    assert created["expires_at"] is None
    assert created["created_at"]

    listed = await auth.client.get(KEYS, headers=auth.bearer(token))
    assert listed.status_code == 200
    body = listed.json()
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert set(item) == LISTED_FIELDS
    assert item["id"] == created["id"]
    assert item["prefix"] == created["prefix"]
    assert item["revoked"] is False
    assert item["last_used_at"] is None
    assert key[12:] not in listed.text


async def test_scopes_and_expiry_are_validated(auth: AuthService) -> None:
    token = (await auth.register("owner@example.com"))["access_token"]
    headers = auth.bearer(token)

    unknown = await auth.client.post(
        KEYS, json={"name": "x", "scopes": ["read", "superuser"]}, headers=headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "validation_error"
    assert unknown.json()["errors"][0]["loc"] == ["body", "scopes", 1]

    empty = await auth.client.post(KEYS, json={"name": "x", "scopes": []}, headers=headers)
    assert empty.status_code == 422

    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = await auth.client.post(KEYS, json={"name": "x", "expires_at": past}, headers=headers)
    assert expired.status_code == 422
    assert expired.json()["errors"][0]["loc"] == ["body", "expires_at"]

    future = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    created = await create_key(
        auth, token, scopes=["admin", "read", "read"], expires_at=future.isoformat()
    )
    assert created["scopes"] == ["admin", "read"]
    assert datetime.fromisoformat(created["expires_at"]) == future


async def test_members_cannot_manage_keys(auth: AuthService) -> None:
    owner = await auth.register("owner@example.com")
    key_id = (await create_key(auth, owner["access_token"]))["id"]
    member = auth.bearer(await add_member(auth, owner["tenant"]["id"]))

    for response in (
        await auth.client.get(KEYS, headers=member),
        await auth.client.post(KEYS, json={"name": "mine"}, headers=member),
        await auth.client.delete(f"{KEYS}/{key_id}", headers=member),
    ):
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "insufficient_role"

    # and nothing was revoked
    listed = await auth.client.get(KEYS, headers=auth.bearer(owner["access_token"]))
    assert listed.json()["items"][0]["revoked"] is False


async def test_a_key_manages_keys_only_with_the_admin_scope(auth: AuthService) -> None:
    token = (await auth.register("owner@example.com"))["access_token"]
    reader = await as_key(auth, (await create_key(auth, token, scopes=["read", "write"]))["key"])
    admin = await as_key(auth, (await create_key(auth, token, scopes=["admin"]))["key"])

    for response in (
        await auth.client.get(KEYS, headers=reader),
        await auth.client.post(
            KEYS, json={"name": "escalate", "scopes": ["admin"]}, headers=reader
        ),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "insufficient_scope"

    made_by_key = await auth.client.post(KEYS, json={"name": "rotated"}, headers=admin)
    assert made_by_key.status_code == 201, made_by_key.text
    listed = await auth.client.get(KEYS, headers=admin)
    assert listed.status_code == 200
    assert {k["name"] for k in listed.json()["items"]} == {"ci", "rotated"}


async def test_tenants_never_see_or_revoke_each_others_keys(auth: AuthService) -> None:
    alice = auth.bearer((await auth.register("alice@example.com", tenant="A"))["access_token"])
    bob_token = (await auth.register("bob@example.com", tenant="B"))["access_token"]
    bobs_key = await create_key(auth, bob_token, name="bob's")
    alices_key = await create_key(auth, alice["Authorization"].split()[1], name="alice's")

    listed = await auth.client.get(KEYS, headers=alice)
    assert [k["id"] for k in listed.json()["items"]] == [alices_key["id"]]

    # Someone else's key answers exactly like a key that does not exist.
    foreign = await auth.client.delete(f"{KEYS}/{bobs_key['id']}", headers=alice)
    missing = await auth.client.delete(f"{KEYS}/{uuid.uuid4()}", headers=alice)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "api_key_not_found"
    assert foreign.json()["detail"] == missing.json()["detail"]

    still_works = await auth.client.get(
        "/internal/forward-auth", headers=auth.bearer(bobs_key["key"])
    )
    assert still_works.status_code == 200


async def test_revoking_is_idempotent_and_shows_in_the_list(auth: AuthService) -> None:
    token = (await auth.register("owner@example.com"))["access_token"]
    key_id = (await create_key(auth, token))["id"]

    for _ in range(2):
        response = await auth.client.delete(f"{KEYS}/{key_id}", headers=auth.bearer(token))
        assert response.status_code == 204
        assert response.content == b""

    [item] = (await auth.client.get(KEYS, headers=auth.bearer(token))).json()["items"]
    assert item["revoked"] is True


async def test_the_list_pages_newest_first_with_a_cursor(auth: AuthService) -> None:
    token = (await auth.register("owner@example.com"))["access_token"]
    headers = auth.bearer(token)
    created = [(await create_key(auth, token, name=f"key {i}"))["id"] for i in range(5)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await auth.client.get(KEYS, params=params, headers=headers)).json()
        assert len(page["items"]) <= 2
        seen += [k["id"] for k in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == created[::-1]

    default = (await auth.client.get(KEYS, headers=headers)).json()
    assert len(default["items"]) == 5

    too_many = await auth.client.get(KEYS, params={"limit": 101}, headers=headers)
    assert too_many.status_code == 422
    forged = await auth.client.get(KEYS, params={"cursor": "not-a-cursor"}, headers=headers)
    assert forged.status_code == 422
    assert forged.json()["code"] == "invalid_cursor"
