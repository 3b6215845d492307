"""Run every benchmark: ``make bench``."""

import tempfile

from bench import auth, chat, ingest, retrieval, startup, usage, usage_lag, usage_overshoot

if __name__ == "__main__":  # bench.chat's fake model (a spawned process) imports this again
    startup.main()
    auth.main()
    usage.main()
    usage_lag.main()
    usage_overshoot.main()
    ingest.main()
    with tempfile.TemporaryDirectory() as data:
        # chat reuses the 20,000+ chunk knowledge base retrieval's latency part builds
        retrieval.main(["--data-dir", data])
        chat.main(["--data-dir", data])
