"""The local embedding model's work, for operators sizing ingest-worker replicas and for the
ingestion benchmark: how much of a worker's CPU the model itself takes."""

from __future__ import annotations

from prometheus_client import Counter

MODEL_BATCHES = Counter(
    "docuchat_embedding_model_batches_total",
    "Batches run through the local embedding model.",
    ["model"],
)
MODEL_TEXTS = Counter(
    "docuchat_embedding_model_texts_total",
    "Texts (chunks and queries) embedded by the local model.",
    ["model"],
)
MODEL_SECONDS = Counter(
    "docuchat_embedding_model_seconds_total",
    "Wall-clock seconds spent in local model runs (runs in parallel add up).",
    ["model"],
)
MODEL_CPU_SECONDS = Counter(
    "docuchat_embedding_model_cpu_seconds_total",
    "CPU seconds of the threads running the local model: beside the process's CPU, the share "
    "the model takes (the rest is parsing, HTTP, Kafka and the database).",
    ["model"],
)
