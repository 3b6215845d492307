"""The chat benchmark's run: the stack pointed at a fake model, the 20,000+ chunk knowledge
base, then three measurements (see bench/chat/__init__.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import multiprocessing.connection
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.retrieval.beir import SCIFACT, load
from bench.retrieval.gateway_log import AccessLog, GatewaySplit
from bench.retrieval.large_kb import open_large_kb
from bench.retrieval.stack import Tenant, running_stack
from docuchat.stack import DevStack

SESSIONS = "/api/v1/sessions"
WARMUP = 20
QUESTIONS_PER_SESSION = 5  # a conversation's length before a stream opens a new session


# --- the fake model, in a process of its own ------------------------------------------------------


def _serve_fake(conn: multiprocessing.connection.Connection) -> None:
    """Runs in the child: the tests' fake OpenAI-compatible server (it streams its fixed, cited
    answer word by word, with usage, at once), until told to stop; then how many chat calls it
    answered."""
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI() as fake:
        conn.send(fake.base_url)
        conn.recv()
        conn.send(len(fake.chat_requests))


@dataclass
class FakeModel:
    base_url: str
    conn: multiprocessing.connection.Connection

    def calls(self) -> int:
        self.conn.send("stop")
        calls: int = self.conn.recv()
        return calls


@contextmanager
def fake_model() -> Iterator[FakeModel]:
    """Apart from the benchmark's client, so serving the model does not share its GIL."""
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve_fake, args=(theirs,), daemon=True
    )
    process.start()
    try:
        yield FakeModel(ours.recv(), ours)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


# --- questions, asks and searches -----------------------------------------------------------------


def scifact_queries(root: Path = SCIFACT) -> list[str]:
    with (root / "queries.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


class Questions:
    """Fresh texts, never the same twice in a run (the query-embedding cache must not hit):
    the SciFact queries, then again with a round number appended."""

    def __init__(self, queries: Sequence[str]) -> None:
        self.queries = list(queries)
        self.used = 0

    def next(self, tag: str = "") -> str:
        text = self.queries[self.used % len(self.queries)]
        rounds = self.used // len(self.queries)
        self.used += 1
        suffix = " ".join(part for part in (f"({rounds})" if rounds else "", tag) if part)
        return f"{text} {suffix}" if suffix else text


@dataclass
class Asked:
    first_token_ms: float | None  # None: no token came
    total_ms: float
    error: str | None
    model_answered: bool  # False: the fixed "not in your documents" reply (no model call)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


@dataclass
class Conversation:
    """One user's stream of questions: a session, renewed every few questions."""

    tenant: Tenant
    kb_id: str
    session: str | None = None
    asked: int = 0

    async def ask(self, question: str) -> Asked:
        client, headers = self.tenant.client, self.tenant.headers
        if self.session is None or self.asked >= QUESTIONS_PER_SESSION:
            created = await client.post(
                SESSIONS, json={"knowledge_base_id": self.kb_id}, headers=headers
            )
            if created.status_code != 201:
                return Asked(None, 0.0, f"session {created.status_code}", False)
            self.session, self.asked = created.json()["id"], 0
        self.asked += 1
        started = time.perf_counter()
        first: float | None = None
        done: dict[str, object] | None = None
        try:
            async with client.stream(
                "POST",
                f"{SESSIONS}/{self.session}/messages",
                json={"content": question, "stream": True},
                headers=headers,
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    code = _problem_code(response)
                    return Asked(None, _ms(started), f"{response.status_code} {code}", False)
                async for event, data in sse_events(response):
                    if event == "token" and first is None:
                        first = _ms(started)
                    elif event == "error":
                        return Asked(
                            first, _ms(started), f"error {json.loads(data)['code']}", False
                        )
                    elif event == "done":
                        done = json.loads(data)
        except httpx.HTTPError as exc:
            return Asked(first, _ms(started), type(exc).__name__, False)
        if done is None:
            return Asked(first, _ms(started), "no done event", False)
        usage = done.get("usage")
        answered = isinstance(usage, dict) and bool(usage.get("completion_tokens"))
        return Asked(first, _ms(started), None, answered)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _problem_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", ""))
    except ValueError:
        return response.text[:40].strip()


async def search(tenant: Tenant, kb_id: str, question: str) -> float:
    """The search chat makes (the knowledge base's own top_k, hybrid), through the gateway."""
    started = time.perf_counter()
    r = await tenant.client.post(
        f"/api/v1/knowledge-bases/{kb_id}/search", json={"query": question}, headers=tenant.headers
    )
    elapsed = _ms(started)
    r.raise_for_status()
    return elapsed


# --- the three measurements -----------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@dataclass
class FirstTokenReport:
    pairs: int
    first_token_ms: list[float]
    search_ms: list[float]
    model_answers: int
    errors: Counter[str]
    chat_gateway: GatewaySplit
    search_gateway: GatewaySplit
    model_first_chunk_ms: list[float]

    def lines(self) -> list[str]:
        chat50, bare50 = pct(self.first_token_ms, 50), pct(self.search_ms, 50)
        chat99, bare99 = pct(self.first_token_ms, 99), pct(self.search_ms, 99)
        chat_gw, search_gw = self.chat_gateway, self.search_gateway
        return [
            f"{self.pairs} questions each side, one at a time, interleaved "
            f"({self.model_answers} answered by the model, errors: {dict(self.errors) or 0})",
            f"chat, first token      p50 {chat50:6.1f} ms   p99 {chat99:6.1f} ms",
            f"search route (bare)    p50 {bare50:6.1f} ms   p99 {bare99:6.1f} ms",
            f"chat adds at p50 {chat50 - bare50:6.1f} ms (goal <= 25 ms), at p99 "
            f"{chat99 - bare99:6.1f} ms",
            "  at the gateway (access log), p50: gateway and forward-auth "
            f"{chat_gw.overhead_p50_ms:.1f} ms for chat, {search_gw.overhead_p50_ms:.1f} ms for "
            f"the search; the search service {search_gw.origin_p50_ms:.1f} ms, chat's whole "
            f"stream {chat_gw.origin_p50_ms:.1f} ms",
            f"  the fake model's own first chunk, called directly: p50 "
            f"{pct(self.model_first_chunk_ms, 50):.1f} ms, p99 "
            f"{pct(self.model_first_chunk_ms, 99):.1f} ms (part of what chat adds)",
        ]


async def model_first_chunk(model: httpx.AsyncClient, question: str) -> float:
    """The fake model's own share: its first streamed chunk, called directly (no chat)."""
    started = time.perf_counter()
    async with model.stream(
        "POST",
        "/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [
                {"role": "system", "content": "Answer from the numbered passages."},
                {"role": "user", "content": f"[1] A passage.\n\nQuestion: {question}"},
            ],
        },
    ) as response:
        response.raise_for_status()
        first: float | None = None
        async for line in response.aiter_lines():  # to the end: the connection is reused
            if first is None and line.startswith("data:") and '"content"' in line:
                first = _ms(started)
    if first is None:
        raise AssertionError("the fake model streamed no content")
    return first


async def first_token(
    tenant: Tenant,
    kb_id: str,
    questions: Questions,
    pairs: int,
    access_log: Path,
    model_url: str,
) -> FirstTokenReport:
    """One question at a time: chat's first token against the same question's bare search.
    Both sides get the same SciFact query, tagged differently so neither finds the other's
    query embedding cached; which side goes first alternates. The fake model's own first
    chunk is timed after each pair."""
    model = httpx.AsyncClient(base_url=model_url, timeout=30)
    try:
        return await _first_token(tenant, kb_id, questions, pairs, access_log, model)
    finally:
        await model.aclose()


async def _first_token(
    tenant: Tenant,
    kb_id: str,
    questions: Questions,
    pairs: int,
    access_log: Path,
    model: httpx.AsyncClient,
) -> FirstTokenReport:
    chat = Conversation(tenant, kb_id)
    for _ in range(WARMUP):
        await chat.ask(questions.next("(warm-up)"))
        await search(tenant, kb_id, questions.next("(warm-up)"))
    firsts, searches, answered, errors = [], [], 0, Counter[str]()
    model_ms = []
    log = AccessLog(access_log)
    log.mark()
    for i in range(pairs):
        base = questions.next()
        asked_text, searched_text = f"{base} [a]", f"{base} [b]"
        if i % 2:
            searches.append(await search(tenant, kb_id, searched_text))
            asked = await chat.ask(asked_text)
        else:
            asked = await chat.ask(asked_text)
            searches.append(await search(tenant, kb_id, searched_text))
        model_ms.append(await model_first_chunk(model, base))
        if asked.error is not None or asked.first_token_ms is None:
            errors[asked.error or "no token"] += 1
            continue
        firsts.append(asked.first_token_ms)
        answered += asked.model_answered
    return FirstTokenReport(
        pairs,
        firsts,
        searches,
        answered,
        errors,
        log.split("POST", "/messages"),
        log.split("POST", "/search"),
        model_ms,
    )


@dataclass
class LoadReport:
    streams: int
    seconds: float
    completed: int = 0
    model_answers: int = 0
    first_token_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        return [
            f"{self.streams} concurrent streams for {self.seconds:.0f} s: "
            f"{self.completed} answers, {self.completed / self.seconds:.1f} answers/s "
            f"({self.model_answers} by the model), errors: {sum(self.errors.values())}"
            + (f" {dict(self.errors)}" if self.errors else ""),
            f"  first token under load  p50 {pct(self.first_token_ms, 50):6.1f} ms   "
            f"p99 {pct(self.first_token_ms, 99):6.1f} ms",
        ]


async def sustained(
    tenant: Tenant, kb_id: str, questions: Questions, streams: int, seconds: float
) -> LoadReport:
    """``streams`` users each asking their next question as soon as an answer is done, for
    ``seconds``; questions still in flight at the end complete and count."""
    report = LoadReport(streams, seconds)
    deadline = time.perf_counter() + seconds

    async def user() -> None:
        chat = Conversation(tenant, kb_id)
        while time.perf_counter() < deadline:
            asked = await chat.ask(questions.next())
            if asked.error is not None:
                report.errors[asked.error] += 1
                await asyncio.sleep(0.1)  # a failing user does not spin
                continue
            report.completed += 1
            report.model_answers += asked.model_answered
            if asked.first_token_ms is not None:
                report.first_token_ms.append(asked.first_token_ms)

    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(streams)))
    report.seconds = time.perf_counter() - started
    return report


# --- the run --------------------------------------------------------------------------------------


async def run(stack: DevStack, model_url: str, args: argparse.Namespace) -> list[str]:
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=120, limits=limits) as client:
        large = await open_large_kb(client, stack.data_dir, load(SCIFACT).corpus)
        how = (
            "reused"
            if large.built_in_seconds is None
            else f"built in {large.built_in_seconds:.0f} s"
        )
        lines = [f"knowledge base: {large.chunks} chunks in {large.documents} documents ({how})"]
        print(lines[0], flush=True)
        questions = Questions(scifact_queries())
        timed = await first_token(
            large.tenant,
            large.id,
            questions,
            args.pairs,
            stack.logs_dir / "access.log",
            model_url,
        )
        lines += ["", "== time to first token vs the bare search ==", *timed.lines()]
        print("\n".join(lines[-8:]), flush=True)
        for streams, seconds, title in (
            (args.streams, args.seconds, "sustained answers"),
            (args.soak_streams, args.soak_seconds, "held streams"),
        ):
            load_report = await sustained(large.tenant, large.id, questions, streams, seconds)
            lines += ["", f"== {title} ==", *load_report.lines()]
            print("\n".join(lines[-3:]), flush=True)
        lines.append(f"\n{questions.used} distinct questions asked")
        return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chat")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the stack's data here; the 20,000+ chunk knowledge base of an earlier run "
        "(this one's or bench.retrieval's) is reused",
    )
    parser.add_argument("--pairs", type=int, default=300, help="questions timed one at a time")
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--soak-streams", type=int, default=100)
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.data_dir:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    with fake_model() as fake:
        env = {
            "DOCUCHAT_CHAT_LLM_PROVIDER": "openai",
            "DOCUCHAT_CHAT_LLM_BASE_URL": fake.base_url,
            "DOCUCHAT_CHAT_LLM_API_KEY": "sk-bench",
            "DOCUCHAT_CHAT_LLM_MODEL": "gpt-4o-mini",
        }
        # 100 users of one tenant starting at once open 100 sessions and ask 100 questions
        # within a second: over the gateway's per-tenant burst (200) and, since every user here
        # calls from 127.0.0.1, over its per-IP burst (100). Those stop one tenant's or one
        # address's flood; this is a load test of neither. The gateway reads them from its
        # environment.
        os.environ.setdefault("DOCUCHAT_GATEWAY_TENANT_BURST", "2000")
        os.environ.setdefault("DOCUCHAT_GATEWAY_IP_BURST", "2000")
        with running_stack(args.data_dir, env) as stack:
            lines = asyncio.run(run(stack, fake.base_url, args))
        calls = fake.calls()
    summary = f"the fake model answered {calls} calls ({args.pairs} of them called directly)"
    print("\n".join([*lines, summary]), flush=True)
