"""The whole product behind the gateway, all-in-one and split into one process per target.

The same scenario runs in both modes: health through the gateway, register (auth) →
tenant.created crosses the broker → usage subscribes the tenant, with the caller's request id
as correlation id and its trace continued by the consumer.
"""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path

import httpx

from docuchat.stack import SERVICES, DevStack
from tests.helpers import eventually


def _register_body() -> dict[str, str]:
    return {
        "email": f"owner-{uuid.uuid4().hex[:8]}@example.com",
        "password": "correct horse battery staple",
        "tenant_name": "Acme Research",
    }


async def test_health_through_the_gateway(stack: DevStack, gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/healthz")).status_code == 200
    for service in SERVICES:
        response = await gateway.get(f"/{service}/readyz")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["service"] == service
        assert body["checks"]["database"]["status"] == "up"
        assert body["checks"]["broker"]["status"] == "up"
    # The ingest process that serves search owns the vector store, and says whether it is up.
    search = await httpx.AsyncClient().get(f"{stack.search_url}/readyz")
    assert search.json()["checks"]["vector_store"]["status"] == "up", search.text


async def test_an_unknown_path_is_a_problem_404_and_reaches_nothing_unrouted(
    gateway: httpx.AsyncClient,
) -> None:
    for method, path in [
        ("GET", "/api/v1/nothing-here"),
        ("POST", "/api/v2/knowledge-bases"),
        ("GET", "/metrics"),
        ("GET", "/internal/forward-auth"),
        ("GET", "/gateway/not-found"),
    ]:
        response = await gateway.request(method, path, headers={"X-Request-Id": "trace-me-1"})
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), path
        assert response.headers["x-request-id"] == "trace-me-1"
        problem = response.json()
        assert (problem["code"], problem["instance"]) == ("not_found", path)


async def test_metrics_are_served_by_each_service_but_not_through_the_gateway(
    stack: DevStack, gateway: httpx.AsyncClient
) -> None:
    assert (await gateway.get("/metrics")).status_code == 404
    await gateway.get("/api/v1/plans")
    text = await _usage_metrics(stack)
    assert (
        'docuchat_http_requests_total{method="GET",route="/api/v1/plans",service="usage",status="200"}'
        in text
    )
    assert "docuchat_http_request_duration_seconds_bucket" in text


async def test_tenant_created_crosses_the_broker_with_correlation_and_trace(
    stack: DevStack, gateway: httpx.AsyncClient
) -> None:
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    trace_id = secrets.token_hex(16)
    response = await gateway.post(
        "/api/v1/auth/register",
        json=_register_body(),
        headers={
            "X-Request-Id": request_id,
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == request_id
    registered = response.json()
    token = registered["access_token"]
    tenant_id = registered["tenant"]["id"]
    assert registered["user"]["role"] == "owner"

    async def subscribed() -> dict[str, object] | None:
        r = await gateway.get("/api/v1/usage/plan", headers={"Authorization": f"Bearer {token}"})
        return r.json() if r.status_code == 200 else None

    plan = await eventually(subscribed, what="usage to subscribe the new tenant")
    assert plan["tenant_id"] == tenant_id
    assert plan["plan"]["id"] == "free"  # type: ignore[index]

    # The usage consumer's log line carries the caller's request id and continues its trace.
    log_file = stack.logs_dir / ("usage.log" if stack.config.split else "all.log")
    handled = [
        line
        for line in _json_lines(log_file)
        if line.get("event") == "event handled"
        and line.get("event_type") == "tenant.created"
        and line.get("tenant_id") == tenant_id
        and line.get("group") == "usage.tenants"
    ]
    assert len(handled) == 1, handled
    assert handled[0]["correlation_id"] == request_id
    assert handled[0]["trace_id"] == trace_id

    # Consumers are metered: messages by outcome, handling time, lag per partition.
    metrics = await _usage_metrics(stack)
    assert (
        'docuchat_consumer_messages_total{group="usage.tenants",outcome="ok",service="usage",topic="docuchat.tenants"}'
        in metrics
    )
    assert "docuchat_consumer_handle_seconds_count" in metrics

    async def lag_reported() -> bool:
        return 'docuchat_consumer_lag_messages{group="usage.tenants"' in await _usage_metrics(stack)

    assert await eventually(lag_reported, timeout=15, what="the consumer lag gauge")


async def test_identity_is_verified_and_client_identity_headers_are_ignored(
    gateway: httpx.AsyncClient,
) -> None:
    alice = (await gateway.post("/api/v1/auth/register", json=_register_body())).json()
    bob = (await gateway.post("/api/v1/auth/register", json=_register_body())).json()

    missing = await gateway.get("/api/v1/users/me")
    assert missing.status_code == 401
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["code"] == "unauthorized"
    assert missing.json()["instance"] == "/api/v1/users/me"

    forged = await gateway.get("/api/v1/users/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code == 401
    assert forged.json()["code"] == "invalid_token"

    # Bob's valid token, plus a client-sent identity header claiming to be Alice: the gateway
    # replaces it with the identity auth verified.
    me = await gateway.get(
        "/api/v1/users/me",
        headers={
            "Authorization": f"Bearer {bob['access_token']}",
            "X-DocuChat-Identity": alice["access_token"],
        },
    )
    assert me.status_code == 200
    assert me.json()["id"] == bob["user"]["id"]

    # A public route with a spoofed identity header gets no identity from it.
    spoof = await gateway.get(
        "/api/v1/usage/plan", headers={"X-DocuChat-Identity": alice["access_token"]}
    )
    assert spoof.status_code == 401


async def test_errors_are_problem_json_with_stable_codes(gateway: httpx.AsyncClient) -> None:
    weak = await gateway.post(
        "/api/v1/auth/register",
        json={"email": "x@example.com", "password": "short", "tenant_name": "T"},
    )
    assert weak.status_code == 422
    assert weak.json()["code"] == "weak_password"

    invalid = await gateway.post("/api/v1/auth/register", json={"email": "nope"})
    assert invalid.status_code == 422
    problem = invalid.json()
    assert problem["code"] == "validation_error"
    assert {e["loc"][-1] for e in problem["errors"]} >= {"password", "tenant_name"}
    assert "x-request-id" in invalid.headers

    body = _register_body()
    assert (await gateway.post("/api/v1/auth/register", json=body)).status_code == 201
    again = await gateway.post(
        "/api/v1/auth/register", json={**body, "email": body["email"].upper()}
    )
    assert again.status_code == 409
    assert again.json()["code"] == "email_taken"


async def _usage_metrics(stack: DevStack) -> str:
    """The usage service's /metrics, read directly (the gateway does not expose it)."""
    async with httpx.AsyncClient() as direct:
        return (await direct.get(f"{stack.service_url('usage')}/metrics")).text


def _json_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines
