"""Which passages an answer cites: its [n] markers, or, with none, the passages it quotes."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from docuchat_chat.answering.prompt import NumberedPassage, cited
from docuchat_chat.answering.retrieval import Hit

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"


def passage(number: int, text: str) -> NumberedPassage:
    hit = Hit(
        document_id=uuid.uuid4(),
        filename="doc.pdf",
        page=number,
        chunk_id=f"c{number}",
        text=text,
        score=1.0,
    )
    return NumberedPassage(number, hit)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def corpus_paragraphs() -> list[str]:
    """Real prose: paragraphs of a corpus Markdown file, long enough to quote from."""
    md = next(
        p for p in sorted((CORPUS / "docs" / "md").rglob("*.md")) if p.stat().st_size > 20_000
    )
    paragraphs = [p.strip() for p in md.read_text(errors="replace").split("\n\n")]
    return [p for p in paragraphs if len(p.split()) >= 40 and not p.startswith(("#", "|", "`"))]


def test_markers_decide_when_there_are_any() -> None:
    first, second = (passage(n, text) for n, text in enumerate(corpus_paragraphs()[:2], start=1))
    copied = " ".join(words(second.hit.text)[:20])
    answer = f"As the first passage puts it [1]: {copied}"
    assert [c["number"] for c in cited(answer, [first, second])] == [1]


def test_an_answer_without_markers_cites_the_passages_it_quotes() -> None:
    first, second, third = (
        passage(n, text) for n, text in enumerate(corpus_paragraphs()[:3], start=1)
    )
    # a small model's answer: a sentence of its own, then the passage's words, unmarked
    answer = "The documents explain it. " + " ".join(words(third.hit.text)[3:19]) + "."
    assert [c["number"] for c in cited(answer, [first, second, third])] == [3]


def test_a_few_shared_words_are_not_a_quote() -> None:
    first, second = (passage(n, text) for n, text in enumerate(corpus_paragraphs()[:2], start=1))
    # eleven words in a row from a passage: short of a quote
    answer = " ".join(words(first.hit.text)[:11]) + " ... and so on, in my own words."
    assert cited(answer, [first, second]) == []
    assert cited("I could not find the answer in the provided documents.", [first]) == []
