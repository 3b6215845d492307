"""Chat at 20,000+ indexed chunks, through the gateway, with a fake OpenAI-compatible model that
answers at once (the tests' fake server, in a process of its own): everything chat adds to the
search it makes (quota check, session and settings reads, storing the question, the prompt,
the model call, streaming) shows as the difference between its time to first token and the
bare search route, measured on the same questions, one at a time and interleaved, in one run.
Then sustained answers/s at 32 concurrent streams, and 100 streams held for 60 s, counting
errors. Questions are SciFact queries, each text sent once (the query-embedding cache never
hits); the knowledge base is bench/retrieval/large_kb.py's (reused from ``--data-dir``).

    .venv/bin/python -m bench.chat --data-dir /tmp/bench-kb
"""

from bench.chat.run import main

__all__ = ["main"]
