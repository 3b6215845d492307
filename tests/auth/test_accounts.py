"""The caller's own account: profile, password change, deletion."""

from __future__ import annotations

from sqlalchemy import select

from docuchat_auth.models import RefreshToken
from tests.auth.conftest import AuthService
from tests.auth.members import add_member


async def test_profile_can_be_read_and_renamed(auth: AuthService) -> None:
    owner = await auth.register("me@example.com")
    headers = auth.bearer(owner["access_token"])
    patched = await auth.client.patch("/api/v1/users/me", json={"name": "Ada"}, headers=headers)
    assert patched.status_code == 200
    me = (await auth.client.get("/api/v1/users/me", headers=headers)).json()
    assert me == {
        "id": owner["user"]["id"],
        "email": "me@example.com",
        "name": "Ada",
        "role": "owner",
        "tenant_id": owner["tenant"]["id"],
    }


async def test_password_change_checks_the_current_one_and_ends_other_sessions(
    auth: AuthService,
) -> None:
    first = await auth.register("pw@example.com")
    # A second session of the same user (another device).
    async with auth.runtime.database.transaction() as session:
        from docuchat_auth.models import User
        from docuchat_auth.tokens.repository import RefreshTokenRepository

        user = await session.get(User, __import__("uuid").UUID(first["user"]["id"]))
        assert user is not None
        other = await auth.runtime.state["tokens"].issue_pair(user, RefreshTokenRepository(session))
    headers = auth.bearer(first["access_token"])

    wrong = await auth.client.post(
        "/api/v1/users/me/password",
        json={"current_password": "nope", "new_password": "another long passphrase"},
        headers=headers,
    )
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "wrong_password"
    weak = await auth.client.post(
        "/api/v1/users/me/password",
        json={"current_password": "correct horse battery staple", "new_password": "short"},
        headers=headers,
    )
    assert weak.status_code == 422
    assert weak.json()["code"] == "weak_password"

    changed = await auth.client.post(
        "/api/v1/users/me/password",
        json={
            "current_password": "correct horse battery staple",
            "new_password": "another long passphrase",
        },
        headers=headers,
    )
    assert changed.status_code == 204
    async with auth.runtime.database.transaction() as session:
        tokens = {t.token_hash: t for t in (await session.scalars(select(RefreshToken))).all()}
    from docuchat_auth.tokens.service import hash_refresh_token

    assert (
        tokens[hash_refresh_token(first["refresh_token"])].revoked_at is None
    )  # this session stays
    assert tokens[hash_refresh_token(other.refresh_token)].revoked_at is not None  # the other ends


async def test_a_member_can_delete_their_account(auth: AuthService) -> None:
    owner = await auth.register("team@example.com")
    _, token = await add_member(auth, owner["tenant"]["id"])
    assert (
        await auth.client.delete("/api/v1/users/me", headers=auth.bearer(token))
    ).status_code == 204
    assert (
        await auth.client.get("/api/v1/users/me", headers=auth.bearer(token))
    ).status_code == 404
