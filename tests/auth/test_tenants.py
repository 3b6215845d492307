"""The tenant and its members: roles, the last owner, invitations, isolation."""

from __future__ import annotations

from sqlalchemy import text

from tests.auth.conftest import AuthService
from tests.auth.members import add_member


async def _outbox_types(auth: AuthService) -> list[str]:
    async with auth.runtime.database.transaction() as session:
        rows = await session.execute(text("SELECT event_type FROM outbox ORDER BY seq"))
        return [r[0] for r in rows]


async def test_tenant_can_be_read_by_all_and_renamed_by_admins(auth: AuthService) -> None:
    owner = await auth.register("owner@example.com", tenant="Acme")
    tenant_id = owner["tenant"]["id"]
    _, member = await add_member(auth, tenant_id, "member")

    got = await auth.client.get("/api/v1/tenant", headers=auth.bearer(member))
    assert got.status_code == 200
    assert got.json() | {"created_at": None} == {
        "id": tenant_id,
        "name": "Acme",
        "plan": "free",
        "created_at": None,
    }

    refused = await auth.client.patch(
        "/api/v1/tenant", json={"name": "Evil"}, headers=auth.bearer(member)
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_role"

    renamed = await auth.client.patch(
        "/api/v1/tenant", json={"name": "Acme Research"}, headers=auth.bearer(owner["access_token"])
    )
    assert renamed.json()["name"] == "Acme Research"


async def test_invitations_create_pending_members_and_send_mail(auth: AuthService) -> None:
    owner = await auth.register("boss@example.com")
    headers = auth.bearer(owner["access_token"])
    invited = await auth.client.post(
        "/api/v1/tenant/members",
        json={"email": "New.Hire@Example.com", "role": "admin"},
        headers=headers,
    )
    assert invited.status_code == 201, invited.text
    assert invited.json()["status"] == "invited"
    assert invited.json()["email"] == "new.hire@example.com"
    [mail] = auth.mails("new.hire@example.com")
    assert mail.kind == "invite"
    assert "token=" in mail.text

    again = await auth.client.post(
        "/api/v1/tenant/members", json={"email": "new.hire@example.com"}, headers=headers
    )
    assert again.status_code == 409
    assert "user.created" in await _outbox_types(auth)


async def test_members_cannot_manage_members_and_admins_cannot_make_owners(
    auth: AuthService,
) -> None:
    owner = await auth.register("o@example.com")
    tenant_id = owner["tenant"]["id"]
    member, member_token = await add_member(auth, tenant_id, "member")
    _, admin_token = await add_member(auth, tenant_id, "admin")

    as_member = await auth.client.post(
        "/api/v1/tenant/members", json={"email": "x@example.com"}, headers=auth.bearer(member_token)
    )
    assert as_member.status_code == 403
    owner_by_admin = await auth.client.post(
        "/api/v1/tenant/members",
        json={"email": "y@example.com", "role": "owner"},
        headers=auth.bearer(admin_token),
    )
    assert owner_by_admin.status_code == 403
    promote = await auth.client.patch(
        f"/api/v1/tenant/members/{member.id}",
        json={"role": "admin"},
        headers=auth.bearer(admin_token),
    )
    assert promote.status_code == 200
    assert promote.json()["role"] == "admin"
    demote_owner = await auth.client.patch(
        f"/api/v1/tenant/members/{owner['user']['id']}",
        json={"role": "member"},
        headers=auth.bearer(admin_token),
    )
    assert demote_owner.status_code == 403


async def test_the_last_owner_cannot_leave_or_be_demoted(auth: AuthService) -> None:
    owner = await auth.register("solo@example.com")
    headers = auth.bearer(owner["access_token"])
    me = owner["user"]["id"]
    for response in (
        await auth.client.patch(
            f"/api/v1/tenant/members/{me}", json={"role": "admin"}, headers=headers
        ),
        await auth.client.delete(f"/api/v1/tenant/members/{me}", headers=headers),
        await auth.client.delete("/api/v1/users/me", headers=headers),
    ):
        assert response.status_code == 409
        assert response.json()["code"] == "last_owner"

    second, _ = await add_member(auth, owner["tenant"]["id"], "owner")
    assert (
        await auth.client.patch(
            f"/api/v1/tenant/members/{me}", json={"role": "admin"}, headers=headers
        )
    ).status_code == 200
    assert second.role == "owner"


async def test_removing_a_member_publishes_user_deleted_and_revokes_access(
    auth: AuthService,
) -> None:
    owner = await auth.register("lead@example.com")
    member, member_token = await add_member(auth, owner["tenant"]["id"], "member")
    removed = await auth.client.delete(
        f"/api/v1/tenant/members/{member.id}", headers=auth.bearer(owner["access_token"])
    )
    assert removed.status_code == 204
    assert "user.deleted" in await _outbox_types(auth)
    gone = await auth.client.get("/api/v1/users/me", headers=auth.bearer(member_token))
    assert gone.status_code == 404


async def test_members_list_pages_with_a_cursor(auth: AuthService) -> None:
    owner = await auth.register("pager@example.com")
    for _ in range(3):
        await add_member(auth, owner["tenant"]["id"])
    headers = auth.bearer(owner["access_token"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (
            await auth.client.get("/api/v1/tenant/members", params=params, headers=headers)
        ).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4
    assert len(set(seen)) == 4
    bad = await auth.client.get("/api/v1/tenant/members", params={"limit": 500}, headers=headers)
    assert bad.status_code == 422


async def test_another_tenants_members_are_404(auth: AuthService) -> None:
    a = await auth.register("a@example.com")
    b = await auth.register("b@example.com")
    b_member, _ = await add_member(auth, b["tenant"]["id"])
    headers = auth.bearer(a["access_token"])
    for response in (
        await auth.client.patch(
            f"/api/v1/tenant/members/{b_member.id}", json={"role": "admin"}, headers=headers
        ),
        await auth.client.delete(f"/api/v1/tenant/members/{b_member.id}", headers=headers),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "member_not_found"
    listed = (await auth.client.get("/api/v1/tenant/members", headers=headers)).json()["items"]
    assert [m["email"] for m in listed] == ["a@example.com"]


async def test_deleting_the_tenant_publishes_tenant_deleted_and_removes_its_users(
    auth: AuthService,
) -> None:
    owner = await auth.register("leaving@example.com")
    _, admin_token = await add_member(auth, owner["tenant"]["id"], "admin")
    refused = await auth.client.delete("/api/v1/tenant", headers=auth.bearer(admin_token))
    assert refused.status_code == 403
    deleted = await auth.client.delete("/api/v1/tenant", headers=auth.bearer(owner["access_token"]))
    assert deleted.status_code == 204
    assert "tenant.deleted" in await _outbox_types(auth)
    assert (
        await auth.client.get("/api/v1/users/me", headers=auth.bearer(owner["access_token"]))
    ).status_code == 404
    # The email is free again.
    assert (
        await auth.client.post(
            "/api/v1/auth/register",
            json={
                "email": "leaving@example.com",
                "password": "correct horse battery staple",
                "tenant_name": "Again",
            },
        )
    ).status_code == 201


async def test_a_removed_members_api_keys_stop_working(auth: AuthService) -> None:
    owner = await auth.register("keeper@example.com")
    admin, admin_token = await add_member(auth, owner["tenant"]["id"], "admin")
    created = await auth.client.post(
        "/api/v1/api-keys", json={"name": "mine"}, headers=auth.bearer(admin_token)
    )
    assert created.status_code == 201
    key = created.json()["key"]
    assert (
        await auth.client.get("/internal/forward-auth", headers=auth.bearer(key))
    ).status_code == 200
    await auth.client.delete(
        f"/api/v1/tenant/members/{admin.id}", headers=auth.bearer(owner["access_token"])
    )
    listed = (
        await auth.client.get("/api/v1/api-keys", headers=auth.bearer(owner["access_token"]))
    ).json()["items"]
    assert [k["revoked"] for k in listed] == [True]
