"""BM25-style sparse vectors for the vector store's ``bm25`` side.

Text → words (Unicode ``\\w+`` runs, lowercased, NFKC-folded) → English stopwords dropped →
Snowball (Porter 2) stems → term ids. A term id is the first four bytes of the stem's BLAKE2b
digest: stable across processes and releases (Python's ``hash()`` is salted per process), so
documents indexed yesterday and a query encoded today agree. Collisions at 2^32 are negligible
for a knowledge base's vocabulary.

Document values are BM25's saturated, length-normalised term frequency
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))``; the collection's IDF modifier
multiplies in the IDF (over the searched knowledge base) at query time. Queries carry weight 1
per distinct term, so a hit's score is exactly BM25's sum over the query terms.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

import Stemmer  # type: ignore[import-not-found]

from docuchat_ingest.vectorstore.port import SparseVector

K1 = 1.2
B = 0.75
# Average document length in counted terms (after stopwords). A 200-wordpiece chunk holds about
# 150 words, some 90 of them not stopwords; a fixed figure keeps each point's vector
# independent of the rest of the collection (no re-encoding when the average drifts).
AVG_LEN = 90.0
# Longer "words" are hashes, base64 or noise, not terms anyone searches for.
MAX_WORD_CHARS = 40

_WORD = re.compile(r"\w+", re.UNICODE)

# English stopwords (the NLTK list less negations and words that carry meaning in questions
# about documents such as "before" / "after" / "against").
_STOPWORD_TEXT = """
    a about above again all am an and any are as at be because been being below between
    both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me
    more most my myself of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this
    those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves s t d ll m o re ve y"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def term_id(term: str) -> int:
    """The stable id of a (stemmed) term: 32 bits of its BLAKE2b digest."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little")


class SparseEncoder:
    """Turns text into BM25 sparse vectors; one instance is safe to share (no mutable state
    besides the stemmer's own cache, which PyStemmer guards)."""

    def __init__(
        self,
        *,
        language: str = "english",
        k1: float = K1,
        b: float = B,
        avg_len: float = AVG_LEN,
        stopwords: frozenset[str] = STOPWORDS,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.avg_len = avg_len
        self.stopwords = stopwords
        self._stemmer = Stemmer.Stemmer(language)

    def terms(self, text: str) -> list[str]:
        """The stemmed terms of ``text``, in order, stopwords and over-long words dropped."""
        words = [
            w
            for w in _WORD.findall(unicodedata.normalize("NFKC", text).lower())
            if w not in self.stopwords and len(w) <= MAX_WORD_CHARS
        ]
        stems: list[str] = self._stemmer.stemWords(words)
        return stems

    def encode_document(self, text: str) -> SparseVector:
        """A stored point's vector: BM25 term-frequency weights (IDF comes from the store)."""
        terms = self.terms(text)
        if not terms:
            return SparseVector(indices=[], values=[])
        norm = self.k1 * (1 - self.b + self.b * len(terms) / self.avg_len)
        weights: dict[int, float] = {}
        for term, tf in Counter(terms).items():
            index = term_id(term)
            weights[index] = weights.get(index, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        return _sorted(weights)

    def encode_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        return [self.encode_document(t) for t in texts]

    def encode_query(self, text: str) -> SparseVector:
        """A query's vector: weight 1 per distinct term (repeating a word does not boost it)."""
        return _sorted(dict.fromkeys((term_id(t) for t in self.terms(text)), 1.0))


def _sorted(weights: dict[int, float]) -> SparseVector:
    ordered = sorted(weights.items())
    return SparseVector(indices=[i for i, _ in ordered], values=[v for _, v in ordered])
