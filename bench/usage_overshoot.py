"""Quota overshoot: 20 concurrent chats of one tenant running into its daily token limit,
through the gateway, with an OpenAI-compatible fake model that streams its answer over ~1 s.

Usage learns of tokens only after an answer is stored (tokens.consumed, through the outbox),
and chat learns of the spent quota from quota.changed: answers already in flight when the limit
is crossed, and those admitted during the enforcement lag, still complete. The figure reported
is the overshoot (tokens metered past the limit) against that bound: the tokens of the 20
requests in flight.

    .venv/bin/python -m bench.usage_overshoot
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.owner import register_owner
from docuchat.devstack import free_port
from docuchat.stack import DevStack, StackConfig
from tests.fakes.openai_server import FakeOpenAI

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "docs"
DOCUMENT = CORPUS / "txt" / "utf8" / "pypdf-crazyones.txt"
QUESTION = "What do the crazy ones do, according to the text?"
CONCURRENCY = 20
ANSWER_WORDS = 80
TOKEN_DELAY = 0.012  # seconds between streamed words: ~1 s an answer
LIMIT_IN_ANSWERS = 60  # the daily limit leaves room for about this many answers


def answer(_messages: Any) -> str:
    words = " ".join(f"word{i}" for i in range(ANSWER_WORDS - 2))
    return f"The crazy ones push the human race forward [1]. {words}"


async def run(stack: DevStack) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=120) as client:
        headers, kb = await register_owner(client, "Overshoot")
        uploaded = await client.post(
            f"/api/v1/knowledge-bases/{kb}/documents",
            files={"file": (DOCUMENT.name, DOCUMENT.read_bytes(), "text/plain")},
            headers=headers,
        )
        doc = uploaded.json()["id"]
        while True:
            got = await client.get(f"/api/v1/documents/{doc}", headers=headers)
            if got.json()["status"] == "indexed":
                break
            await asyncio.sleep(0.3)

        async def new_chat() -> str:
            created = await client.post(
                "/api/v1/sessions", json={"knowledge_base_id": kb}, headers=headers
            )
            return f"/api/v1/sessions/{created.json()['id']}/messages"

        first = await client.post(await new_chat(), json={"content": QUESTION}, headers=headers)
        assert first.status_code == 201, first.text
        per_answer = first.json()["usage"]["total_tokens"]

        async def used() -> int:
            report = (await client.get("/api/v1/usage", headers=headers)).json()
            return int(report["limits"]["daily_tokens"]["used"])

        async def settled() -> int:
            last, same = -1, 0
            while same < 4:  # unchanged for ~2 s: every event metered
                now = await used()
                same = same + 1 if now == last else 0
                last = now
                await asyncio.sleep(0.5)
            return last

        # The plan is data: give "pro" a limit this many answers away and no request rate,
        # then move the tenant onto it (the new limits are published at once).
        base = await settled()
        limit = base + LIMIT_IN_ANSWERS * per_answer
        conn = await asyncpg.connect(stack.postgres.url("docuchat_usage"))
        try:
            await conn.execute(
                "UPDATE plans SET daily_tokens = $1, monthly_tokens = NULL, "
                "requests_per_minute = NULL WHERE id = 'pro'",
                limit,
            )
        finally:
            await conn.close()
        upgraded = await client.put("/api/v1/usage/plan", json={"plan": "pro"}, headers=headers)
        assert upgraded.status_code == 200, upgraded.text
        await asyncio.sleep(1.0)  # the new plan's state reaches chat (measured lag: ~0.2 s)

        accepted: list[tuple[float, float, int]] = []  # (sent, answered, tokens)
        refused_at: list[float] = []

        async def chatter() -> None:
            ask_url = await new_chat()
            while True:
                sent = time.perf_counter()
                r = await client.post(ask_url, json={"content": QUESTION}, headers=headers)
                if r.status_code == 429:
                    refused_at.append(time.perf_counter())
                    return
                assert r.status_code == 201, r.text
                accepted.append((sent, time.perf_counter(), r.json()["usage"]["total_tokens"]))

        started = time.perf_counter()
        await asyncio.gather(*(chatter() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        final = await settled()
    # When the limit was crossed (answers in the order they were stored), how many questions
    # were let in after that moment, and the tokens of those in flight then (the bound).
    total, crossed_at = 0, float("inf")
    for _sent, answered, spent in sorted(accepted, key=lambda a: a[1]):
        total += spent
        if total > limit - base:
            crossed_at = answered
            break
    after = sum(1 for sent, _, _ in accepted if sent > crossed_at)
    in_flight = [t for sent, answered, t in accepted if sent <= crossed_at < answered]
    tokens = [t for _, _, t in accepted]
    return {
        "admitted_after": after,
        "in_flight": len(in_flight),
        "per_answer": statistics.mean(tokens),
        "limit": limit - base,
        "spent": final - base,
        "overshoot": final - limit,
        "answers": len(accepted),
        "elapsed": elapsed,
        "bound": sum(in_flight) + (total - (limit - base)),
    }


def main() -> None:
    with FakeOpenAI() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.reply = answer
        fake.token_delay = TOKEN_DELAY
        stack = DevStack(
            StackConfig(
                data_dir=Path(tmp),
                gateway_port=free_port(),
                postgres_port=None,
                kafka_port=None,
                base_service_port=0,
                extra_env={
                    "DOCUCHAT_CHAT_LLM_PROVIDER": "openai",
                    "DOCUCHAT_CHAT_LLM_BASE_URL": fake.base_url,
                    "DOCUCHAT_CHAT_LLM_API_KEY": "sk-bench",
                    "DOCUCHAT_CHAT_LLM_MODEL": "gpt-4o-mini",
                },
            )
        )
        stack.start()
        try:
            r = asyncio.run(run(stack))
        finally:
            stack.stop()
    print(f"{CONCURRENCY} concurrent chats, ~{r['per_answer']:.0f} tokens an answer")
    print(f"daily limit (from the start)  {r['limit']:8.0f} tokens")
    print(f"metered in the end            {r['spent']:8.0f} tokens ({r['answers']} answers)")
    print(
        f"overshoot                     {r['overshoot']:8.0f} tokens"
        f" = {r['overshoot'] / r['per_answer']:.1f} answers"
    )
    print(f"questions admitted after the limit was crossed: {r['admitted_after']}")
    print(
        f"bound: the crossing answer's excess + the {r['in_flight']:.0f} answers in flight"
        f" then = {r['bound']:.0f} tokens; overshoot / bound = {r['overshoot'] / r['bound']:.2f}"
    )


if __name__ == "__main__":
    main()
