"""Chat at 20,000+ indexed chunks, through the gateway, with a fake OpenAI-compatible model that
answers at once (the tests' fake server, in a process of its own): everything chat adds to the
search it makes (quota check, session and settings reads, storing the question, the prompt,
the model call, streaming) shows as the difference between its time to first token and the
bare search route, measured on the same questions, one at a time and interleaved, in one run.
Then sustained answers/s at 32 concurrent streams, and 100 streams held for 60 s, counting
errors. Questions are SciFact queries, each text sent once (the query-embedding cache never
hits); the knowledge base is bench/retrieval/large_kb.py's (reused from ``--data-dir``).

    .venv/bin/python -m bench.chat --data-dir /tmp/bench-kb

Measured 2026-11-24 on 2 shared cores (all-in-one stack, 20,206 chunks: 69 corpus documents
and 1,478 SciFact records in 64-wordpiece chunks), one run (the three others that day in
brackets):
- first token, 300 questions one at a time: chat p50 78.9 ms, p99 160.2 ms; the bare search
  route p50 46.4 ms, p99 80.8 ms: chat adds 32.5 ms at p50 (26.4, 35.4, 35.4), goal <= 25 ms;
  79.4 ms at p99. The gateway's own share is the same for both (5.1 / 5.0 ms, Traefik's access
  log); the fake model's first chunk, called directly, is 3.3 ms of it.
- 32 concurrent streams: 10.0 answers/s (7.4, 10.5, 10.9), first token p50 2.1 s: the
  questions queue for the CPU; no errors.
- 100 concurrent streams for 60 s: 692 answers (10.6/s; 583, 776, 862 in the others), 0 errors.
  Before chat's connections to ingest expired idle ones at 2 s, each phase under load lost
  one question to a ReadError (a connection reused as uvicorn closed it: 5 s on both sides).
All questions were answered by the model (every one found passages above the relevance
threshold).

Later that night, on a quiet machine, after the platform fixes listed in bench/retrieval/run.py
and with the bench tenant on a plan without a request rate (enterprise's 3,000 a minute cut the
100-stream phase short once answers doubled) and the gateway's per-tenant burst raised for 100
users starting at once: chat p50 39.8 ms, p99 62.3 ms; bare search p50 25.6 ms, p99 39.1 ms:
chat adds 14.2 ms at p50 (two runs before it: 12.5, 16.2 ms), 23.2 ms at p99. 32 streams:
21.2 answers/s, 0 errors. 100 streams for 63 s: 1,217 answers (19.3/s), 0 errors.
"""

from bench.chat.run import main

__all__ = ["main"]
