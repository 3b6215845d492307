"""A tenant owner for the benchmarks that drive the product through the gateway."""

from __future__ import annotations

import asyncio
import uuid

import httpx


async def register_owner(client: httpx.AsyncClient, tenant_name: str) -> tuple[dict[str, str], str]:
    """Register a new tenant's owner; returns their auth headers and the tenant's default
    knowledge base (created by ingest when tenant.created reaches it)."""
    owner = (
        await client.post(
            "/api/v1/auth/register",
            json={
                "email": f"bench-{uuid.uuid4().hex[:6]}@example.com",
                "password": "correct horse battery staple",
                "tenant_name": tenant_name,
            },
        )
    ).json()
    headers = {"Authorization": f"Bearer {owner['access_token']}"}
    while True:
        items = (await client.get("/api/v1/knowledge-bases", headers=headers)).json()
        kb = next((k["id"] for k in items.get("items", []) if k["is_default"]), None)
        if kb is not None:
            return headers, kb
        await asyncio.sleep(0.2)  # poll interval while the event crosses the broker
