"""Password login, refresh-token rotation and reuse detection, logout, brute-force limits."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from docuchat_auth.models import User
from tests.auth.conftest import AuthService

PASSWORD = "correct horse battery staple"


async def login(auth: AuthService, email: str, password: str = PASSWORD) -> httpx.Response:
    return await auth.client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def refresh(auth: AuthService, token: str) -> httpx.Response:
    return await auth.client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def without_request_id(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k != "request_id"}


async def test_login_refresh_logout(auth: AuthService) -> None:
    registered = await auth.register("Ada@Example.com")

    logged_in = await login(auth, "ada@EXAMPLE.com")  # any case: emails are normalised
    assert logged_in.status_code == 200, logged_in.text
    pair = logged_in.json()
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    assert pair["refresh_token"] != registered["refresh_token"]
    # Every sign-in says who it is for, like registration ("tokens as above").
    assert pair["user"] == registered["user"]
    assert {k: pair["tenant"][k] for k in ("id", "name", "plan")} == {
        k: registered["tenant"][k] for k in ("id", "name", "plan")
    }
    async with auth.runtime.database.transaction() as session:
        user = await session.scalar(select(User).where(User.email == "ada@example.com"))
    assert user is not None
    assert user.last_login_at is not None

    refreshed = await refresh(auth, pair["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    new_pair = refreshed.json()
    assert new_pair["refresh_token"] != pair["refresh_token"]
    assert (new_pair["user"]["id"], new_pair["tenant"]["id"]) == (
        registered["user"]["id"],
        registered["tenant"]["id"],
    )
    me = await auth.client.get("/api/v1/users/me", headers=auth.bearer(new_pair["access_token"]))
    assert me.status_code == 200
    assert me.json()["email"] == "ada@example.com"

    logged_out = await auth.client.post(
        "/api/v1/auth/logout", json={"refresh_token": new_pair["refresh_token"]}
    )
    assert logged_out.status_code == 204
    after = await refresh(auth, new_pair["refresh_token"])
    assert after.status_code == 401
    assert after.json()["code"] == "invalid_refresh_token"
    # Logging out ended that login only: the registration's session still refreshes.
    assert (await refresh(auth, registered["refresh_token"])).status_code == 200


async def test_unknown_refresh_tokens_are_refused_and_logging_them_out_is_harmless(
    auth: AuthService,
) -> None:
    refused = await refresh(auth, "not-a-token")
    assert refused.status_code == 401
    assert refused.json()["code"] == "invalid_refresh_token"
    logged_out = await auth.client.post("/api/v1/auth/logout", json={"refresh_token": "nope"})
    assert logged_out.status_code == 204


async def test_reusing_a_rotated_refresh_token_ends_the_whole_family(auth: AuthService) -> None:
    r1 = (await auth.register("reuse@example.com"))["refresh_token"]
    rotated = await refresh(auth, r1)
    assert rotated.status_code == 200
    r2 = rotated.json()["refresh_token"]

    reused = await refresh(auth, r1)
    assert reused.status_code == 401
    assert reused.json()["code"] == "refresh_token_reused"
    # The newest token of the family is revoked too (whoever holds it, thief or user).
    latest = await refresh(auth, r2)
    assert latest.status_code == 401
    assert latest.json()["code"] == "invalid_refresh_token"
    # Another login of the same user is a different family and keeps working.
    other = (await login(auth, "reuse@example.com")).json()["refresh_token"]
    assert (await refresh(auth, other)).status_code == 200


async def test_unknown_email_and_wrong_password_look_the_same(auth: AuthService) -> None:
    await auth.register("known@example.com")
    wrong_password = await login(auth, "known@example.com", "not the password at all")
    unknown_email = await login(auth, "nobody@example.com", "not the password at all")
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.headers["content-type"] == unknown_email.headers["content-type"]
    assert without_request_id(wrong_password.json()) == without_request_id(unknown_email.json())
    assert wrong_password.json()["code"] == "invalid_credentials"


async def test_repeated_wrong_passwords_lock_the_account(auth: AuthService) -> None:
    await auth.register("victim@example.com")
    await auth.register("bystander@example.com", tenant="Other")

    for _ in range(5):
        failed = await login(auth, "victim@example.com", "guess guess guess")
        assert failed.status_code == 401
        assert failed.json()["code"] == "invalid_credentials"

    locked = await login(auth, "victim@example.com", "guess guess guess")
    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"
    assert 0 < int(locked.headers["Retry-After"]) <= auth.settings.lockout_seconds
    # The right password does not get through a lock: it would reveal the right guess.
    right_while_locked = await login(auth, "Victim@example.com")
    assert right_while_locked.status_code == 429

    # Other accounts, from the same client, are unaffected.
    assert (await login(auth, "bystander@example.com")).status_code == 200


async def test_a_successful_login_resets_the_account_count(auth: AuthService) -> None:
    await auth.register("typo@example.com")
    for _ in range(4):
        assert (await login(auth, "typo@example.com", "almost right")).status_code == 401
    assert (await login(auth, "typo@example.com")).status_code == 200
    for _ in range(4):
        assert (await login(auth, "typo@example.com", "almost right")).status_code == 401
    assert (await login(auth, "typo@example.com")).status_code == 200


async def test_one_client_guessing_across_accounts_is_limited(auth: AuthService) -> None:
    auth.settings.max_failures_per_ip = 3  # read per request; the default 50 is slow to reach
    await auth.register("target@example.com")
    for _ in range(3):
        sprayed = await login(auth, f"{uuid.uuid4().hex[:8]}@example.com", "Summer2024!!")
        assert sprayed.status_code == 401

    blocked = await login(auth, "target@example.com")
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "rate_limited"
    assert "Retry-After" in blocked.headers


async def test_parallel_wrong_passwords_cannot_exceed_the_limit(auth: AuthService) -> None:
    import asyncio

    await auth.register("parallel@example.com")
    answers = await asyncio.gather(
        *(
            auth.client.post(
                "/api/v1/auth/login",
                json={"email": "parallel@example.com", "password": f"wrong-{i}"},
            )
            for i in range(12)
        )
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(401) == auth.settings.max_failures_per_account
    assert statuses.count(429) == 12 - auth.settings.max_failures_per_account


async def test_mail_requests_are_limited_per_address_whether_or_not_it_exists(
    auth: AuthService,
) -> None:
    await auth.register("inbox@example.com")
    for email in ("inbox@example.com", "nobody@example.com"):
        answers = [
            (
                await auth.client.post("/api/v1/auth/password/forgot", json={"email": email})
            ).status_code
            for _ in range(auth.settings.max_mails_per_account + 1)
        ]
        assert answers == [202] * auth.settings.max_mails_per_account + [429]
    assert len(auth.mails("inbox@example.com")) == auth.settings.max_mails_per_account
