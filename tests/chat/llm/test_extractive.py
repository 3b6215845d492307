"""The extractive provider answers with the passages' best sentences, cited, without a model."""

from __future__ import annotations

import re

from docuchat_chat.llm.extractive import NO_PASSAGES_ANSWER, extract_answer
from docuchat_chat.llm.port import ChatMessage, LLMProvider, LLMRequest, Passage, Usage
from docuchat_chat.llm.registry import ProviderRegistry
from docuchat_chat.llm.tokens import TokenCounter
from tests.chat.llm.conftest import MakeRegistry

PASSAGES = (
    Passage(
        1,
        "The device ships with a charger and a cable. The warranty covers manufacturing defects "
        "for two years from the date of purchase. Batteries are covered for one year.",
    ),
    Passage(
        2,
        "Returns are accepted within 30 days. To claim the warranty, contact support with the "
        "proof of purchase.",
    ),
    Passage(3, "The company was founded in 1998 in Lyon and employs 200 people."),
    Passage(4, "The warranty does not cover water damage."),
)
QUESTION = "How long does the warranty last after purchase?"


def request(question: str = QUESTION, passages: tuple[Passage, ...] = PASSAGES) -> LLMRequest:
    return LLMRequest(
        messages=(
            ChatMessage("system", "Answer from the numbered passages."),
            ChatMessage("user", question),
        ),
        passages=passages,
    )


def extractive(make_registry: MakeRegistry) -> LLMProvider:
    registry: ProviderRegistry = make_registry(llm_provider="extractive")
    return registry.provider()


def test_the_answer_is_the_best_sentence_of_each_relevant_passage_with_its_marker() -> None:
    answer = extract_answer(QUESTION, PASSAGES)

    assert answer == (
        "The warranty covers manufacturing defects for two years from the date of purchase. [1] "
        "To claim the warranty, contact support with the proof of purchase. [2]"
    )
    # Passage 3 shares no word with the question; passage 4 is past the first three.
    assert re.findall(r"\[(\d+)\]", answer) == ["1", "2"]


def test_the_first_passage_answers_even_without_shared_words() -> None:
    answer = extract_answer("Who?", PASSAGES[2:3])

    assert answer == "The company was founded in 1998 in Lyon and employs 200 people. [3]"


def test_passages_pasted_into_the_question_do_not_count_as_question_words() -> None:
    templated = "\n".join(f"[{p.number}] {p.text}" for p in PASSAGES) + "\n\n" + QUESTION

    assert extract_answer(templated, PASSAGES) == extract_answer(QUESTION, PASSAGES)


def test_markers_inside_passages_do_not_duplicate_citations() -> None:
    answer = extract_answer("warranty years", (Passage(2, "The warranty lasts two years [7]."),))

    assert answer == "The warranty lasts two years. [2]"


def test_no_passages_gives_the_not_in_documents_answer() -> None:
    assert extract_answer(QUESTION, ()) == NO_PASSAGES_ANSWER


async def test_it_streams_word_by_word_and_meters_nothing(
    make_registry: MakeRegistry, token_counter: TokenCounter
) -> None:
    provider = extractive(make_registry)

    items = [item async for item in provider.stream(request())]
    completion = await provider.complete(request())

    *words, usage = items
    assert all(isinstance(w, str) and len(w.split()) == 1 for w in words)
    text = "".join(str(w) for w in words)
    assert text == completion.text == extract_answer(QUESTION, PASSAGES)
    assert isinstance(usage, Usage)
    assert usage == completion.usage
    assert usage.completion_tokens == token_counter.count_text(text, provider.model)
    assert usage.prompt_tokens == token_counter.count_messages(request().messages, provider.model)
    assert not usage.reported
    assert not usage.metered
    assert provider.model == "extractive"
