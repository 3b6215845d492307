"""Integration events: the envelope, the typed catalog, the outbox, the relay and consumers."""
