"""Run every benchmark: ``make bench``."""

from bench import auth, ingest, retrieval, startup, usage, usage_lag, usage_overshoot

if __name__ == "__main__":
    startup.main()
    auth.main()
    usage.main()
    usage_lag.main()
    usage_overshoot.main()
    ingest.main()
    retrieval.main([])
