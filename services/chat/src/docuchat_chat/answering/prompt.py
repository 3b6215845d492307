"""The prompt for a grounded answer, and the citations an answer makes.

System: the knowledge base's own prompt (or a default that asks for [n] citations), then the
numbered passages. Before the question: the most recent turns that fit a token budget.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from docuchat_chat.answering.retrieval import Hit
from docuchat_chat.llm.port import ChatMessage, Passage
from docuchat_chat.llm.tokens import TokenCounter

DEFAULT_SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages below, taken from the "
    "user's documents. Cite the passages you use with their numbers in square brackets, like "
    "[1] or [2][3], right after the statement they support. If the passages do not contain the "
    "answer, say that the documents do not contain it. Do not invent facts."
)

NOT_IN_DOCUMENTS = (
    "I could not find this in your documents: none of them contains a passage relevant "
    "enough to answer it. Try rephrasing the question, or add a document that covers it."
)

# [1], [2, 3], [1][2]: numbers inside square brackets, comma-separated.
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


@dataclass(frozen=True)
class NumberedPassage:
    number: int
    hit: Hit

    def label(self) -> str:
        where = self.hit.filename
        if self.hit.page is not None:
            where += f", page {self.hit.page}"
        return f"[{self.number}] ({where})\n{self.hit.text.strip()}"

    def citation(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "document_id": str(self.hit.document_id),
            "filename": self.hit.filename,
            "page": self.hit.page,
            "page_end": self.hit.page_end,
            "chunk_id": self.hit.chunk_id,
            "text": self.hit.text,
        }


def relevant(hits: Sequence[Hit], threshold: float) -> list[NumberedPassage]:
    """Hits similar enough to the question to be evidence, numbered from 1 in the order the
    search ranked them."""
    kept = [h for h in hits if (h.similarity if h.similarity is not None else h.score) >= threshold]
    return [NumberedPassage(i, hit) for i, hit in enumerate(kept, start=1)]


def build_messages(
    *,
    system_prompt: str | None,
    passages: Sequence[NumberedPassage],
    history: Sequence[ChatMessage],
    question: str,
    counter: TokenCounter,
    model: str,
    history_budget: int,
) -> list[ChatMessage]:
    context = "\n\n".join(p.label() for p in passages)
    instructions = (system_prompt or "").strip() or DEFAULT_SYSTEM_PROMPT
    system = f"{instructions}\n\nContext passages:\n\n{context}"
    return [
        ChatMessage("system", system),
        *trim_history(history, counter=counter, model=model, budget=history_budget),
        ChatMessage("user", question),
    ]


def trim_history(
    history: Sequence[ChatMessage], *, counter: TokenCounter, model: str, budget: int
) -> list[ChatMessage]:
    """The newest turns whose tokens fit ``budget``, in their original order."""
    kept: list[ChatMessage] = []
    spent = 0
    for message in reversed(history):
        cost = counter.count_text(message.content, model)
        if spent + cost > budget:
            break
        kept.append(message)
        spent += cost
    kept.reverse()
    # Never start on an answer whose question was trimmed away.
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return kept


def llm_passages(passages: Sequence[NumberedPassage]) -> list[Passage]:
    return [Passage(p.number, p.hit.text) for p in passages]


def cited(answer: str, passages: Sequence[NumberedPassage]) -> list[dict[str, Any]]:
    """The passages the answer cites with [n] markers, in order of number. An answer with no
    marker at all cites the passages it copies a run of ``QUOTE_WORDS`` words from: small
    models quote the passage word for word and leave out the marker they were asked for."""
    numbers = {int(n) for group in _MARKER.findall(answer) for n in group.split(",") if n.strip()}
    if not numbers:
        runs = _word_runs(answer)
        numbers = {p.number for p in passages if runs & _word_runs(p.hit.text)}
    return [p.citation() for p in passages if p.number in numbers]


# Long enough that no two texts share one by chance, short enough for a quoted clause.
QUOTE_WORDS = 12
_WORD = re.compile(r"\w+")


def _word_runs(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + QUOTE_WORDS]) for i in range(len(words) - QUOTE_WORDS + 1)}
