"""Texts and the model shared by the embedding tests."""

from __future__ import annotations

import pytest

from docuchat_ingest.embedding.minilm import MiniLMEmbedder

# Five callers' texts, as documents indexed side by side ask for them.
DOCUMENTS = [
    ["The mitochondria is the powerhouse of the cell.", "ATP synthase turns a rotor."],
    ["Tax form 1040-NR is for nonresident aliens."],
    ["A short one."],
    [f"Sentence number {i} about rivers, bridges and tolls." for i in range(7)],
    ["Kafka partitions keep per-key order.", "Consumers commit offsets."],
]


@pytest.fixture(scope="module")
def model() -> MiniLMEmbedder:
    """The model in batches of 8, calls run one after another (a reference for shared runs)."""
    return MiniLMEmbedder(batch_size=8)
