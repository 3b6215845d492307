"""The ingest service's wiring from its settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from docuchat_ingest.app import build_embedder
from docuchat_ingest.embedding.minilm import MiniLMEmbedder
from docuchat_ingest.settings import IngestSettings


def test_the_local_model_takes_its_batch_size_and_runs_from_the_settings() -> None:
    embedder = build_embedder(IngestSettings(embedding_batch_size=5, embedding_parallel_runs=1))

    assert isinstance(embedder, MiniLMEmbedder)
    assert (embedder.batch_size, embedder.parallel_runs) == (5, 1)


def test_unset_the_local_model_runs_small_batches() -> None:
    embedder = build_embedder(IngestSettings(embedding_parallel_runs=1))

    assert isinstance(embedder, MiniLMEmbedder)
    assert embedder.batch_size == 2


def test_a_batch_of_no_texts_is_refused() -> None:
    with pytest.raises(ValidationError, match="embedding_batch_size"):
        IngestSettings(embedding_batch_size=0)
