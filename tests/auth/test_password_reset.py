"""Forgotten passwords: an emailed single-use link; invitations complete through the same route."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from docuchat_auth.models import OneTimeSecret, User
from docuchat_auth.sessions.service import hash_one_time_token
from tests.auth.conftest import AuthService

OLD = "correct horse battery staple"
NEW = "a brand new passphrase"


async def forgot(auth: AuthService, email: str) -> httpx.Response:
    return await auth.client.post("/api/v1/auth/password/forgot", json={"email": email})


async def reset(auth: AuthService, token: str, password: str = NEW) -> httpx.Response:
    return await auth.client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": password}
    )


async def login(auth: AuthService, email: str, password: str) -> httpx.Response:
    return await auth.client.post("/api/v1/auth/login", json={"email": email, "password": password})


def token_from_link(auth: AuthService, email: str) -> str:
    mails = auth.mails(email)
    assert mails, f"no mail to {email}"
    assert mails[-1].kind == "password_reset"
    link = re.escape(f"{auth.settings.public_url}/reset-password?token=")
    found = re.search(link + r"([A-Za-z0-9_-]+)", mails[-1].text)
    assert found, mails[-1].text
    return found.group(1)


async def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(
    auth: AuthService,
) -> None:
    registered = await auth.register("forgetful@example.com", password=OLD)
    # Someone (maybe the user) locked the account guessing passwords.
    for _ in range(5):
        await login(auth, "forgetful@example.com", "what was it again")
    assert (await login(auth, "forgetful@example.com", OLD)).status_code == 429

    requested = await forgot(auth, "Forgetful@example.com")
    assert requested.status_code == 202
    token = token_from_link(auth, "forgetful@example.com")
    # The raw token is in the text too, for API clients without a web front end.
    assert auth.mails("forgetful@example.com")[-1].text.count(token) == 2

    assert (await reset(auth, token)).status_code == 204

    # The new password works at once: proving the mailbox lifted the lockout.
    assert (await login(auth, "forgetful@example.com", NEW)).status_code == 200
    old = await login(auth, "forgetful@example.com", OLD)
    assert old.status_code == 401
    assert old.json()["code"] == "invalid_credentials"
    # The sessions that existed before the reset are over.
    stale = await auth.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    )
    assert stale.status_code == 401
    assert stale.json()["code"] == "invalid_refresh_token"

    again = await reset(auth, token, "yet another passphrase")
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_reset_token"
    assert (await login(auth, "forgetful@example.com", NEW)).status_code == 200


async def test_a_weak_password_is_refused_and_the_link_still_works(auth: AuthService) -> None:
    await auth.register("weak@example.com", password=OLD)
    await forgot(auth, "weak@example.com")
    token = token_from_link(auth, "weak@example.com")

    weak = await reset(auth, token, "short")
    assert weak.status_code == 422
    assert weak.json()["code"] == "weak_password"
    assert (await login(auth, "weak@example.com", OLD)).status_code == 200

    assert (await reset(auth, token)).status_code == 204


async def test_unknown_email_gets_the_same_answer_and_no_mail(auth: AuthService) -> None:
    await auth.register("real@example.com")
    known = await forgot(auth, "real@example.com")
    unknown = await forgot(auth, "ghost@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert auth.mails("ghost@example.com") == []

    bogus = await reset(auth, "made-up-token")
    assert bogus.status_code == 400
    assert bogus.json()["code"] == "invalid_reset_token"


async def test_only_the_newest_link_works_and_links_expire(auth: AuthService) -> None:
    await auth.register("links@example.com")
    await forgot(auth, "links@example.com")
    first = token_from_link(auth, "links@example.com")
    await forgot(auth, "links@example.com")
    second = token_from_link(auth, "links@example.com")
    assert (await reset(auth, first)).json()["code"] == "invalid_reset_token"

    auth.settings.password_reset_ttl_seconds = 0  # read per request: the link expires at once
    await forgot(auth, "links@example.com")
    expired = token_from_link(auth, "links@example.com")
    assert (await reset(auth, expired)).json()["code"] == "invalid_reset_token"
    assert (await reset(auth, second)).json()["code"] == "invalid_reset_token"  # replaced


async def test_an_invitation_token_sets_the_first_password(auth: AuthService) -> None:
    owner = await auth.register("boss@example.com")
    # What the invite flow stores: a passwordless member and a hashed invite token.
    token = secrets.token_urlsafe(32)
    async with auth.runtime.database.transaction() as session:
        member = User(
            id=uuid.uuid4(),
            tenant_id=uuid.UUID(owner["tenant"]["id"]),
            email="newbie@example.com",
            name=None,
            password_hash=None,
            role="member",
        )
        session.add(member)
        await session.flush()
        session.add(
            OneTimeSecret(
                id=uuid.uuid4(),
                purpose="invite",
                subject="newbie@example.com",
                user_id=member.id,
                secret_hash=hash_one_time_token(token),
                expires_at=datetime.now(UTC) + timedelta(days=7),
            )
        )
    # Until then nobody can sign in with a password, not even an empty guess.
    assert (await login(auth, "newbie@example.com", "anything at all")).status_code == 401

    assert (await reset(auth, token)).status_code == 204
    signed_in = await login(auth, "newbie@example.com", NEW)
    assert signed_in.status_code == 200
    me = await auth.client.get(
        "/api/v1/users/me", headers=auth.bearer(signed_in.json()["access_token"])
    )
    assert me.json()["tenant_id"] == owner["tenant"]["id"]
    assert (await reset(auth, token)).json()["code"] == "invalid_reset_token"
