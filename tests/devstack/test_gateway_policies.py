"""Gateway policies on the shared route file: CORS for configured origins, per-IP and
per-tenant rate limits answering 429 with Retry-After, and no way to borrow another tenant's
allowance with a forged header."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message

import pytest

from docuchat.devstack import TraefikGateway, free_port
from docuchat.stack import CORS_REGEX_ENV, DEV_CORS_ORIGIN_REGEX
from tests.devstack.test_processes import (
    DYNAMIC_CONFIG,
    STREAM_PROBE,
    STREAM_RELEASE,
    TENANT_TOKEN_PREFIX,
    Backends,
)

ORIGIN = "https://app.example.com"
TENANT_RATE = 3  # per second, burst the same: a fourth request at once is refused


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TraefikGateway, Backends]]:
    backends = Backends()
    env = {
        **backends.env(),
        "DOCUCHAT_CORS_ORIGINS": f"{ORIGIN}, https://admin.example.com",
        CORS_REGEX_ENV: DEV_CORS_ORIGIN_REGEX,
        "DOCUCHAT_GATEWAY_TENANT_RATE": str(TENANT_RATE),
        "DOCUCHAT_GATEWAY_TENANT_BURST": str(TENANT_RATE),
        "DOCUCHAT_GATEWAY_IP_RATE": "1000",
        "DOCUCHAT_GATEWAY_IP_BURST": "1000",
    }
    gw = TraefikGateway(free_port(), DYNAMIC_CONFIG, env, tmp_path_factory.mktemp("gw"))
    try:
        gw.start()
        yield gw, backends
    finally:
        gw.stop()
        backends.close()


def send(
    gw: TraefikGateway, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(gw.url + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_cors_preflight_is_answered_at_the_gateway_for_configured_origins_only(
    gateway: tuple[TraefikGateway, Backends],
) -> None:
    gw, backends = gateway
    before = len(backends.seen)
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    status, headers, _ = send(gw, "/api/v1/sessions", "OPTIONS", preflight)
    assert status in (200, 204)
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"].lower()
    assert len(backends.seen) == before, "a preflight needs no service (and no credentials)"

    for evil in ("https://evil.example.com", "http://localhost.evil.example.com"):
        status, headers, _ = send(gw, "/api/v1/sessions", "OPTIONS", {**preflight, "Origin": evil})
        assert headers["Access-Control-Allow-Origin"] is None, evil
    # the dev stack's expression: a frontend dev server on any localhost port
    for local in ("http://localhost:5173", "http://127.0.0.1:3000"):
        status, headers, _ = send(gw, "/api/v1/sessions", "OPTIONS", {**preflight, "Origin": local})
        assert headers["Access-Control-Allow-Origin"] == local

    status, headers, body = send(
        gw, "/api/v1/usage", headers={"Origin": ORIGIN, "Authorization": TENANT_TOKEN_PREFIX + "c"}
    )
    assert status == 200, body
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-request-id" in headers["Access-Control-Expose-Headers"].lower()


def test_each_tenant_has_its_own_rate_limit_and_a_forged_tenant_header_borrows_nothing(
    gateway: tuple[TraefikGateway, Backends],
) -> None:
    gw, _ = gateway
    noisy = {"Authorization": TENANT_TOKEN_PREFIX + "noisy"}
    statuses = [send(gw, "/api/v1/usage", headers=noisy)[0] for _ in range(TENANT_RATE * 3)]
    assert statuses[0] == 200
    assert 429 in statuses
    status, headers, _ = send(gw, "/api/v1/usage", headers=noisy)
    assert status == 429
    assert int(headers["Retry-After"]) >= 1

    # Forward-auth names the tenant; the client's own header is dropped first.
    forged = {**noisy, "X-DocuChat-Tenant": "someone-else"}
    assert send(gw, "/api/v1/usage", headers=forged)[0] == 429

    quiet = {"Authorization": TENANT_TOKEN_PREFIX + "quiet"}
    status, _, body = send(gw, "/api/v1/usage", headers=quiet)
    assert status == 200
    assert json.loads(body)["tenant"] == ["quiet"]


def test_the_per_ip_limit_covers_public_routes(tmp_path_factory: pytest.TempPathFactory) -> None:
    backends = Backends()
    env = {**backends.env(), "DOCUCHAT_GATEWAY_IP_RATE": "2", "DOCUCHAT_GATEWAY_IP_BURST": "2"}
    gw = TraefikGateway(free_port(), DYNAMIC_CONFIG, env, tmp_path_factory.mktemp("gw-ip"))
    try:
        gw.start()
        statuses = [send(gw, "/api/v1/plans")[0] for _ in range(8)]
        assert statuses[:2] == [200, 200]
        assert 429 in statuses
        assert send(gw, "/healthz")[0] == 200  # probes are never rate limited
    finally:
        gw.stop()
        backends.close()


def test_server_sent_events_pass_the_gateway_unbuffered(
    gateway: tuple[TraefikGateway, Backends],
) -> None:
    """The first event reaches the client while the service still holds back the second (it
    waits for the client to have seen the first): a buffering gateway would deadlock here."""
    gw, _ = gateway
    STREAM_RELEASE.clear()
    request = urllib.request.Request(
        gw.url + "/api/v1/sessions/123/messages" + STREAM_PROBE,
        data=b"{}",
        method="POST",
        headers={"Authorization": TENANT_TOKEN_PREFIX + "streamer"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        first = [response.readline() for _ in range(3)]
        assert first[:2] == [b"event: token\n", b"data: first\n"]
        assert not STREAM_RELEASE.is_set()
        STREAM_RELEASE.set()
        rest = response.read()
    assert b"data: second" in rest
