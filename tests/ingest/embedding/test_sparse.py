"""The BM25 sparse encoder: stable term ids, stemming, stopwords, saturated and
length-normalised term frequencies for documents, unit weights for queries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from docuchat_ingest.embedding.sparse import K1, SparseEncoder, term_id


def weights(vector: object) -> dict[int, float]:
    return dict(zip(vector.indices, vector.values, strict=True))  # type: ignore[attr-defined]


def test_term_ids_are_stable_across_processes() -> None:
    here = term_id("protein")
    code = "from docuchat_ingest.embedding.sparse import term_id; print(term_id('protein'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert int(other) == here
    assert here == 0xD1842CD7  # a fixed 32-bit id, never Python's salted hash()
    assert term_id("protein") != term_id("proteins")


def test_words_are_lowercased_stemmed_and_stopwords_dropped() -> None:
    encoder = SparseEncoder()
    assert encoder.terms("The Studies of running cells, and THE cell's study!") == [
        "studi",
        "run",
        "cell",
        "cell",
        "studi",
    ]
    assert encoder.terms("the of and") == []
    assert encoder.terms("ﬁbrosis") == ["fibrosi"]  # NFKC: the ligature is two letters
    assert encoder.terms("x" * 41 + " ok") == ["ok"]


def test_document_values_saturate_and_normalise_by_length() -> None:
    encoder = SparseEncoder(avg_len=4)
    once = weights(encoder.encode_document("cell alpha beta gamma"))[term_id("cell")]
    thrice = weights(encoder.encode_document("cell cell cell gamma"))[term_id("cell")]
    assert once == pytest.approx(1.0)  # tf 1 at the average length
    assert once < thrice < K1 + 1  # more occurrences weigh more, but saturate
    longer = weights(encoder.encode_document("cell " + "filler " * 20))[term_id("cell")]
    assert longer < once  # the same tf in a longer text weighs less
    assert encoder.encode_document("").indices == []
    vector = encoder.encode_document("zeta alpha zeta")
    assert list(vector.indices) == sorted(vector.indices)


def test_queries_weigh_each_distinct_term_once() -> None:
    query = SparseEncoder().encode_query("Cells cell CELL mitochondria?")
    assert weights(query) == {term_id("cell"): 1.0, term_id("mitochondria"): 1.0}
