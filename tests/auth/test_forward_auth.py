"""The gateway's forward-auth: access tokens and API keys in, a verified internal identity out."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx

from docuchat_auth.app import build_runtime
from docuchat_common.identity import IDENTITY_HEADER, INTERNAL_AUDIENCE, Identity
from tests.auth.conftest import AuthService
from tests.auth.members import add_member
from tests.auth.test_api_keys import KEYS, create_key
from tests.helpers import eventually

FORWARD_AUTH = "/internal/forward-auth"
# The bound for a revocation to reach every replica.
REVOCATION_BOUND_SECONDS = 5.0


async def forward(
    client: httpx.AsyncClient, credential: str | None, **headers: str
) -> httpx.Response:
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    return await client.get(FORWARD_AUTH, headers=headers)


async def forwarded_identity(auth: AuthService, response: httpx.Response) -> Identity:
    assert response.status_code == 200, response.text
    return await auth.runtime.token_verifier.identity(
        response.headers[IDENTITY_HEADER], audience=INTERNAL_AUDIENCE
    )


def assert_invalid_key(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "invalid_api_key"
    assert IDENTITY_HEADER not in response.headers


async def until_refused(client: httpx.AsyncClient, key: str, *, what: str) -> httpx.Response:
    """Poll forward-auth with ``key`` until it is refused, within the revocation bound."""

    async def refused() -> httpx.Response | None:
        answer = await forward(client, key)
        return answer if answer.status_code != 200 else None

    answer = await eventually(refused, timeout=REVOCATION_BOUND_SECONDS, what=what)
    assert answer is not None
    return answer


@asynccontextmanager
async def another_replica(auth: AuthService) -> AsyncIterator[httpx.AsyncClient]:
    """A second auth API replica on the same database and keys, with its own key cache (HTTP
    only: consumers and the relay have nothing to do with API keys)."""
    settings = auth.settings.model_copy(update={"consume_events": False, "relay_enabled": False})
    app = build_runtime(settings).create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://auth-2") as client:
            yield client


async def test_an_api_key_becomes_a_verified_identity_and_records_its_last_use(
    auth: AuthService,
) -> None:
    owner = await auth.register("owner@example.com")
    token = owner["access_token"]
    created = await create_key(auth, token, scopes=["read", "chat"])

    identity = await forwarded_identity(auth, await forward(auth.client, created["key"]))
    assert identity.via == "api_key"
    assert identity.tenant_id == uuid.UUID(owner["tenant"]["id"])
    assert identity.user_id == uuid.UUID(owner["user"]["id"])  # acts as its creator
    assert identity.scopes == {"read", "chat"}
    assert identity.role == "member"  # no admin scope, no admin role

    # The identity the gateway passes on is accepted by the services' routes.
    me = await auth.client.get(
        "/api/v1/users/me", headers={IDENTITY_HEADER: identity.raw_token or ""}
    )
    assert me.status_code == 200
    assert me.json()["email"] == "owner@example.com"

    [listed] = (await auth.client.get(KEYS, headers=auth.bearer(token))).json()["items"]
    first_use = listed["last_used_at"]
    assert first_use is not None
    assert datetime.fromisoformat(first_use) > datetime.now(UTC) - timedelta(minutes=1)

    # Used again within the minute: no new write.
    assert (await forward(auth.client, created["key"])).status_code == 200
    [listed] = (await auth.client.get(KEYS, headers=auth.bearer(token))).json()["items"]
    assert listed["last_used_at"] == first_use


async def test_an_admin_scoped_key_carries_the_admin_role(auth: AuthService) -> None:
    token = (await auth.register("owner@example.com"))["access_token"]
    key = (await create_key(auth, token, scopes=["admin"]))["key"]
    identity = await forwarded_identity(auth, await forward(auth.client, key))
    assert identity.role == "admin"
    assert identity.scopes == {"admin"}


async def test_access_tokens_still_pass_and_missing_credentials_do_not(
    auth: AuthService,
) -> None:
    owner = await auth.register("owner@example.com")
    identity = await forwarded_identity(auth, await forward(auth.client, owner["access_token"]))
    assert identity.via == "access_token"
    assert identity.role == "owner"

    missing = await forward(auth.client, None, **{"X-Forwarded-Uri": "/api/v1/users/me"})
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthorized"
    assert missing.json()["instance"] == "/api/v1/users/me"


async def test_one_caller_gets_one_internal_token_for_a_while_and_keys_differ(
    auth: AuthService,
) -> None:
    """Forward-auth runs on every request: the signed identity is reused for half its life
    instead of signed again, and never shared between different identities."""
    token = (await auth.register("owner@example.com"))["access_token"]
    reader = (await create_key(auth, token, scopes=["read"]))["key"]
    chatter = (await create_key(auth, token, scopes=["chat"]))["key"]

    first, again = [(await forward(auth.client, reader)).headers[IDENTITY_HEADER] for _ in "ab"]
    other = await forwarded_identity(auth, await forward(auth.client, chatter))

    assert first == again
    assert (await forwarded_identity(auth, await forward(auth.client, reader))).scopes == {"read"}
    assert other.scopes == {"chat"} and other.raw_token != first


async def test_unknown_and_malformed_keys_are_refused(auth: AuthService) -> None:
    await auth.register("owner@example.com")
    for key in ("dck_" + "A" * 43, "dck_short", "dck_" + "!" * 43):
        assert_invalid_key(await forward(auth.client, key))


async def test_a_revoked_key_is_refused_within_five_seconds(auth: AuthService) -> None:
    token = (await auth.register("owner@example.com"))["access_token"]
    created = await create_key(auth, token)
    assert (await forward(auth.client, created["key"])).status_code == 200  # now cached

    revoked_at = time.monotonic()
    response = await auth.client.delete(f"{KEYS}/{created['id']}", headers=auth.bearer(token))
    assert response.status_code == 204

    answer = await until_refused(auth.client, created["key"], what="key refused")
    assert time.monotonic() - revoked_at < REVOCATION_BOUND_SECONDS
    assert_invalid_key(answer)


async def test_a_revocation_on_one_replica_reaches_the_others_within_five_seconds(
    auth: AuthService,
) -> None:
    token = (await auth.register("owner@example.com"))["access_token"]
    created = await create_key(auth, token)
    async with another_replica(auth) as replica:
        assert (await forward(replica, created["key"])).status_code == 200  # cached there

        revoked_at = time.monotonic()
        response = await auth.client.delete(f"{KEYS}/{created['id']}", headers=auth.bearer(token))
        assert response.status_code == 204

        answer = await until_refused(
            replica, created["key"], what="the other replica to refuse the key"
        )
        assert time.monotonic() - revoked_at < REVOCATION_BOUND_SECONDS
        assert_invalid_key(answer)


async def test_an_expired_key_is_refused(auth: AuthService) -> None:
    token = (await auth.register("owner@example.com"))["access_token"]
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    created = await create_key(auth, token, expires_at=expires_at.isoformat())
    assert (await forward(auth.client, created["key"])).status_code == 200  # cached

    answer = await until_refused(auth.client, created["key"], what="key expired")
    # Refused from its expiry on, even though it was cached as valid.
    assert datetime.now(UTC) >= expires_at
    assert_invalid_key(answer)


async def test_a_cors_preflight_passes_without_credentials_or_identity(
    auth: AuthService,
) -> None:
    preflight = await forward(
        auth.client,
        None,
        **{"X-Forwarded-Method": "OPTIONS", "X-Forwarded-Uri": "/api/v1/api-keys"},
    )
    assert preflight.status_code == 200
    assert IDENTITY_HEADER not in preflight.headers

    # Only the preflight: any other method still needs credentials.
    get = await forward(auth.client, None, **{"X-Forwarded-Method": "GET"})
    assert get.status_code == 401


async def test_a_browsers_stream_may_carry_its_access_token_in_the_url(auth: AuthService) -> None:
    owner = await auth.register("streamer@example.com")
    token = owner["access_token"]
    key = (await create_key(auth, token, scopes=["read"]))["key"]
    streams = [
        f"/api/v1/sessions/{uuid.uuid4()}/ws",
        f"/api/v1/documents/{uuid.uuid4()}/events",
    ]

    async def from_url(uri: str, method: str = "GET") -> httpx.Response:
        return await forward(
            auth.client, None, **{"X-Forwarded-Method": method, "X-Forwarded-Uri": uri}
        )

    for stream in streams:
        identity = await forwarded_identity(auth, await from_url(f"{stream}?access_token={token}"))
        assert identity.user_id == uuid.UUID(owner["user"]["id"])
        # A bad token in the URL is refused like a bad header.
        bad = await from_url(f"{stream}?access_token=garbage")
        assert (bad.status_code, bad.json()["code"]) == (401, "invalid_token")
        # An API key lives until revoked: never in a URL, where logs and histories keep it.
        in_url = await from_url(f"{stream}?access_token={key}")
        assert (in_url.status_code, in_url.json()["code"]) == (401, "invalid_credentials_location")
        assert in_url.json()["instance"] == stream  # the query (and its key) is not echoed
    # Any other route, or another method, needs the header.
    for uri, method in [
        (f"/api/v1/documents/{uuid.uuid4()}?access_token={token}", "GET"),
        (f"{streams[0]}/extra?access_token={token}", "GET"),
        (f"/api/v1/sessions/{uuid.uuid4()}/messages?access_token={token}", "POST"),
        (f"{streams[1]}?access_token={token}", "DELETE"),
    ]:
        refused = await from_url(uri, method)
        assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized"), uri


def assert_account_removed(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "account_removed"
    assert IDENTITY_HEADER not in response.headers


async def test_a_removed_members_access_token_stops_passing_on_every_replica(
    auth: AuthService,
) -> None:
    owner = await auth.register("owner@example.com")
    member, member_token = await add_member(auth, owner["tenant"]["id"])
    async with another_replica(auth) as replica:
        # Both replicas have let the member's token through (and remember the member).
        assert (await forward(auth.client, member_token)).status_code == 200
        assert (await forward(replica, member_token)).status_code == 200

        removed = await auth.client.delete(
            f"/api/v1/tenant/members/{member.id}", headers=auth.bearer(owner["access_token"])
        )
        assert removed.status_code == 204, removed.text

        assert_account_removed(await until_refused(auth.client, member_token, what="removal"))
        assert_account_removed(await until_refused(replica, member_token, what="removal"))
    # The owner's own token is untouched.
    assert (await forward(auth.client, owner["access_token"])).status_code == 200


async def test_a_deleted_tenants_access_tokens_stop_passing(auth: AuthService) -> None:
    owner = await auth.register("owner@example.com")
    _, member_token = await add_member(auth, owner["tenant"]["id"])
    other = await auth.register("other@example.com")
    assert (await forward(auth.client, member_token)).status_code == 200

    deleted = await auth.client.delete("/api/v1/tenant", headers=auth.bearer(owner["access_token"]))
    assert deleted.status_code == 204, deleted.text

    for token in (owner["access_token"], member_token):
        assert_account_removed(await until_refused(auth.client, token, what="tenant deletion"))
    # Another tenant's user goes on as before.
    assert (await forward(auth.client, other["access_token"])).status_code == 200
