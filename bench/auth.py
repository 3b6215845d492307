"""What authentication through the gateway costs, measured in one run on the embedded stack.

Requests/s and p50/p99 latency of an authenticated trivial route (``GET /api/v1/users/me``):
through the gateway (Traefik forward-auth to auth, then the route) and directly on the auth
service's port with the same access token; also through the gateway with an API key. Goal:
gateway ≥ 50% of direct. Then login throughput (argon2id) if ``POST /api/v1/auth/login`` exists.

    .venv/bin/python -m bench.auth [--requests 2000] [--concurrency 16] [--logins 100]

Loopback only; the load generator shares the machine's cores with the stack it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from docuchat.devstack import free_port
from docuchat.stack import DevStack, StackConfig

PASSWORD = "correct horse battery staple"
WARMUP_REQUESTS = 200


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000


async def load(
    client: httpx.AsyncClient,
    name: str,
    method: str,
    url: str,
    *,
    total: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    json: dict[str, Any] | None = None,
) -> Result:
    """``total`` requests from ``concurrency`` workers, each waiting for its previous answer."""
    result = Result(name, total, 0.0)
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await client.request(method, url, headers=headers, json=json)
            result.latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                result.errors += 1
                result.first_error = result.first_error or f"{response.status_code} {response.text}"

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


async def argon2_parameters(stack: DevStack, email: str) -> str:
    """The parameters of the stored hash itself: what the service really uses."""
    conn = await asyncpg.connect(stack.postgres.url("docuchat_auth"))
    try:
        stored: str = await conn.fetchval("SELECT password_hash FROM users WHERE email = $1", email)
    finally:
        await conn.close()
    variant, _version, params = stored.split("$")[1:4]
    return f"{variant} {params}"


def print_table(results: list[Result]) -> None:
    print(f"{'scenario':<30}{'requests':>9}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for r in results:
        print(
            f"{r.name:<30}{r.requests:>9}{r.errors:>8}{r.rps:>9.0f}"
            f"{r.percentile_ms(50):>9.1f}{r.percentile_ms(99):>9.1f}"
        )
    for r in results:
        if r.first_error:
            print(f"  {r.name}: first error: {r.first_error[:200]}")


async def measure(stack: DevStack, args: argparse.Namespace) -> None:
    gateway, direct = stack.gateway_url, stack.service_url("auth")
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        registered = await client.post(
            f"{gateway}/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "tenant_name": "Bench"},
        )
        registered.raise_for_status()
        token = registered.json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        created = await client.post(
            f"{gateway}/api/v1/api-keys", json={"name": "bench", "scopes": ["read"]}, headers=bearer
        )
        created.raise_for_status()
        key_bearer = {"Authorization": f"Bearer {created.json()['key']}"}

        me = "/api/v1/users/me"
        scenarios = [
            ("gateway, access token", f"{gateway}{me}", bearer),
            ("direct, access token", f"{direct}{me}", bearer),
            ("gateway, API key", f"{gateway}{me}", key_bearer),
        ]
        for name, url, headers in scenarios:  # connections, caches, JIT-less warm paths
            await load(
                client,
                name,
                "GET",
                url,
                total=WARMUP_REQUESTS,
                concurrency=args.concurrency,
                headers=headers,
            )
        results = [
            await load(
                client,
                name,
                "GET",
                url,
                total=args.requests,
                concurrency=args.concurrency,
                headers=headers,
            )
            for name, url, headers in scenarios
        ]
        print(
            f"\nGET {me}: {args.requests} requests per scenario, concurrency {args.concurrency}, "
            f"after {WARMUP_REQUESTS} warm-up requests"
        )
        print_table(results)
        by_name = {r.name: r for r in results}
        direct_rps = by_name["direct, access token"].rps
        for name in ("gateway, access token", "gateway, API key"):
            ratio = by_name[name].rps / direct_rps
            verdict = "meets" if ratio >= 0.5 else "MISSES"
            print(f"{name} ÷ direct: {ratio:.0%} ({verdict} the ≥ 50% goal)")

        login_url = f"{gateway}/api/v1/auth/login"
        probe = await client.post(login_url, json={"email": email, "password": PASSWORD})
        print(f"\nPOST /api/v1/auth/login, password hash: {await argon2_parameters(stack, email)}")
        if probe.status_code in (404, 405):
            print(f"skipped: the route answers {probe.status_code} (login is not there yet)")
            return
        login = await load(
            client,
            "gateway, login",
            "POST",
            login_url,
            total=args.logins,
            concurrency=args.login_concurrency,
            json={"email": email, "password": PASSWORD},
        )
        print(f"{args.logins} logins, concurrency {args.login_concurrency}")
        print_table([login])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--login-concurrency", type=int, default=4)
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig(
            data_dir=Path(tmp),
            gateway_port=free_port(),
            postgres_port=None,
            kafka_port=None,
            base_service_port=0,
        )
        started = time.perf_counter()
        with DevStack(config) as stack:
            print(f"stack ready in {time.perf_counter() - started:.1f} s (all-in-one)")
            asyncio.run(measure(stack, args))


if __name__ == "__main__":
    main()
