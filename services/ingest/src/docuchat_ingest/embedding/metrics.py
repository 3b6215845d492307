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
MODEL_TOKENS = Counter(
    "docuchat_embedding_model_tokens_total",
    "Wordpieces of the texts embedded by the local model ([CLS]/[SEP] included).",
    ["model"],
)
MODEL_INPUT_TOKENS = Counter(
    "docuchat_embedding_model_input_tokens_total",
    "Positions fed to the local model: texts' wordpieces plus the padding that makes a batch "
    "rectangular. Its excess over docuchat_embedding_model_tokens_total is CPU spent on padding.",
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
