"""The ``extractive`` provider: answers with the retrieved passages' most relevant sentences.

No model runs. The answer is the best sentence of each of the first ``max_passages`` passages
(the passages arrive best first; a passage after the first is used only when some of its words
are in the question), each followed by its ``[n]`` marker so citations work as with a model.
The question is the last user message, minus any passage text a prompt template put in it.

Usage is counted with tiktoken (``reported=False``) and marked ``metered=False``: nothing was
spent at a provider, so chat stores the counts but meters 0 tokens for this provider kind.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Sequence

from .port import Completion, LLMRequest, Passage, Usage
from .tokens import TokenCounter

__all__ = ["NO_PASSAGES_ANSWER", "ExtractiveProvider", "extract_answer"]

NO_PASSAGES_ANSWER = "The documents do not contain an answer to this question."
EXTRACTIVE_MODEL = "extractive"

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n\s*\n|\n(?=\s*[-•*\d])")
_WORD = re.compile(r"\w+", re.UNICODE)
_MARKER = re.compile(r"\s*\[\d+\]")
_PIECE = re.compile(r"\s*\S+\s*")
# Words that say nothing about which sentence answers the question.
_STOPWORD_LIST = """
    a an and are as at be been but by can could did do does for from had has have how i if
    in into is it its may me my no not of on or our shall should so than that the their them
    then there these they this those to was we were what when where which who whom whose why
    will with would you your about after before over under between also any all each other
    some such only own same very just more most much many please tell explain describe
    according document documents
"""
_STOPWORDS = frozenset(_STOPWORD_LIST.split())


def _terms(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS}


def _sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


def _score(sentence: str, question: set[str]) -> float:
    words = _terms(sentence)
    if not words:
        return 0.0
    return len(words & question) / math.sqrt(len(words))  # favour dense matches over long lists


def extract_answer(question: str, passages: Sequence[Passage], *, max_passages: int = 3) -> str:
    """The extractive answer to ``question`` from ``passages`` (best first)."""
    for passage in passages:  # a template may have pasted the passages into the question
        question = question.replace(passage.text, " ")
    terms = _terms(_MARKER.sub(" ", question))
    picked: list[str] = []
    for index, passage in enumerate(passages[:max_passages]):
        sentences = _sentences(passage.text)
        if not sentences:
            continue
        # max() keeps the first of equal scores: the passage's opening sentence by default.
        best = max(sentences, key=lambda s: _score(s, terms))
        if index > 0 and _score(best, terms) == 0:
            continue
        picked.append(f"{_MARKER.sub('', best).strip()} [{passage.number}]")
    return " ".join(picked) if picked else NO_PASSAGES_ANSWER


class ExtractiveProvider:
    """:class:`~docuchat_chat.llm.port.LLMProvider` that needs no model."""

    def __init__(self, token_counter: TokenCounter, *, max_passages: int = 3) -> None:
        self._counter = token_counter
        self.max_passages = max_passages

    @property
    def model(self) -> str:
        return EXTRACTIVE_MODEL

    def _answer(self, request: LLMRequest) -> tuple[str, Usage]:
        question = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        text = extract_answer(question, request.passages, max_passages=self.max_passages)
        counted = self._counter.usage(request.messages, text, EXTRACTIVE_MODEL)
        return text, Usage(
            counted.prompt_tokens, counted.completion_tokens, reported=False, metered=False
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | Usage]:
        text, usage = self._answer(request)
        for piece in _PIECE.findall(text):
            yield piece
            await asyncio.sleep(0)  # let a disconnect cancel us between words, like a model
        yield usage

    async def complete(self, request: LLMRequest) -> Completion:
        text, usage = self._answer(request)
        return Completion(text, usage, "stop")
