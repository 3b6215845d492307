"""Passwordless login with a 6-digit code sent by email."""

from __future__ import annotations

import asyncio
import re

import httpx

from docuchat_auth.throttling import Limit, Throttler
from tests.auth.conftest import AuthService


async def request_code(auth: AuthService, email: str) -> httpx.Response:
    return await auth.client.post("/api/v1/auth/email-code", json={"email": email})


async def verify(auth: AuthService, email: str, code: str) -> httpx.Response:
    return await auth.client.post(
        "/api/v1/auth/email-code/verify", json={"email": email, "code": code}
    )


def latest_code(auth: AuthService, email: str) -> str:
    mails = auth.mails(email)
    assert mails, f"no mail to {email}"
    assert mails[-1].kind == "email_code"
    found = re.search(r"\b(\d{6})\b", mails[-1].text)
    assert found, mails[-1].text
    return found.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_a_code_from_the_mail_signs_in_once(auth: AuthService) -> None:
    await auth.register("coder@example.com")
    requested = await request_code(auth, "Coder@Example.com")
    assert requested.status_code == 202
    code = latest_code(auth, "coder@example.com")
    assert code not in auth.mails("coder@example.com")[-1].subject  # subjects reach the logs

    signed_in = await verify(auth, "coder@example.com", f" {code} ")  # pasted with spaces
    assert signed_in.status_code == 200, signed_in.text
    tokens = signed_in.json()
    assert tokens["token_type"] == "bearer"
    assert (tokens["user"]["email"], tokens["tenant"]["plan"]) == ("coder@example.com", "free")
    me = await auth.client.get("/api/v1/users/me", headers=auth.bearer(tokens["access_token"]))
    assert me.json()["email"] == "coder@example.com"
    refreshed = await auth.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200

    reused = await verify(auth, "coder@example.com", code)
    assert reused.status_code == 401
    assert reused.json()["code"] == "invalid_code"


async def test_an_unknown_email_gets_the_same_answer_and_no_mail(auth: AuthService) -> None:
    await auth.register("someone@example.com")
    known = await request_code(auth, "someone@example.com")
    unknown = await request_code(auth, "nobody@example.com")
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert auth.mails("nobody@example.com") == []
    assert len(auth.mails()) == 1

    guessed = await verify(auth, "nobody@example.com", "123456")
    assert guessed.status_code == 401
    assert guessed.json()["code"] == "invalid_code"


async def test_a_new_code_replaces_the_previous_one(auth: AuthService) -> None:
    await auth.register("twice@example.com")
    await request_code(auth, "twice@example.com")
    first = latest_code(auth, "twice@example.com")
    await request_code(auth, "twice@example.com")
    second = latest_code(auth, "twice@example.com")

    if first != second:  # one time in a million they are equal
        assert (await verify(auth, "twice@example.com", first)).status_code == 401
    assert (await verify(auth, "twice@example.com", second)).status_code == 200


async def test_an_expired_code_is_refused(auth: AuthService) -> None:
    await auth.register("late@example.com")
    auth.settings.email_code_ttl_seconds = 0  # read per request: the code expires at once
    await request_code(auth, "late@example.com")
    late = await verify(auth, "late@example.com", latest_code(auth, "late@example.com"))
    assert late.status_code == 401
    assert late.json()["code"] == "invalid_code"


async def test_five_wrong_guesses_kill_the_code_and_lock_the_account(auth: AuthService) -> None:
    await auth.register("guessed@example.com")
    await request_code(auth, "guessed@example.com")
    code = latest_code(auth, "guessed@example.com")

    for _ in range(5):
        failed = await verify(auth, "guessed@example.com", wrong(code))
        assert failed.status_code == 401
        assert failed.json()["code"] == "invalid_code"
    locked = await verify(auth, "guessed@example.com", code)
    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"
    assert int(locked.headers["Retry-After"]) > 0

    # Once the lockout is over, the code itself is still dead: it allowed five attempts.
    throttler: Throttler = auth.runtime.state["throttler"]
    await throttler.succeed(Limit("code:account:guessed@example.com", 5))
    dead = await verify(auth, "guessed@example.com", code)
    assert dead.status_code == 401
    assert dead.json()["code"] == "invalid_code"
    # A fresh code works.
    await request_code(auth, "guessed@example.com")
    fresh = await verify(auth, "guessed@example.com", latest_code(auth, "guessed@example.com"))
    assert fresh.status_code == 200


async def test_guessing_across_fresh_codes_is_limited_too(auth: AuthService) -> None:
    await auth.register("spray@example.com")
    for _ in range(5):
        await request_code(auth, "spray@example.com")
        code = latest_code(auth, "spray@example.com")
        assert (await verify(auth, "spray@example.com", wrong(code))).status_code == 401

    await request_code(auth, "spray@example.com")
    locked = await verify(auth, "spray@example.com", latest_code(auth, "spray@example.com"))
    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"


async def test_parallel_guesses_cannot_exceed_the_attempts_of_a_code(auth: AuthService) -> None:
    await auth.register("burst@example.com")
    await request_code(auth, "burst@example.com")
    code = latest_code(auth, "burst@example.com")

    # Sent at once, the guesses all pass the throttler's check before any failure is counted;
    # the code's own attempt count still stops them at five.
    guesses = [verify(auth, "burst@example.com", wrong(code)) for _ in range(8)]
    answers = await asyncio.gather(*guesses)
    assert {a.status_code for a in answers} <= {401, 429}

    throttler: Throttler = auth.runtime.state["throttler"]
    await throttler.succeed(Limit("code:account:burst@example.com", 5))
    dead = await verify(auth, "burst@example.com", code)
    assert dead.status_code == 401
