"""Chunker: token limits, nothing lost, overlap, pages, headings, tables, long sentences."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from docuchat_ingest.chunking import Chunk, Chunker, ChunkInput, chunk_blocks
from docuchat_ingest.embedding import load_tokenizer

_VOCABULARY = (
    "retrieval embedding tenant quota knowledge document passage cosine vector sparse dense "
    "hybrid fusion rerank citation page heading paragraph sentence token wordpiece batch "
    "throughput latency extraordinarily antidisestablishmentarianism pneumonoultramicroscopic"
)
WORDS = _VOCABULARY.split()


def _sentence(rng: random.Random, n: int | None = None) -> str:
    words = [rng.choice(WORDS) for _ in range(n or rng.randint(4, 25))]
    return " ".join(words).capitalize() + rng.choice(".!?")


def _tokens(text: str) -> int:
    return len(load_tokenizer().encode(text).ids)


def _sentences_of(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def _document(seed: int = 1, pages: int = 6) -> list[ChunkInput]:
    rng = random.Random(seed)
    blocks = []
    for page in range(1, pages + 1):
        top = f"Chapter {(page + 1) // 2}"
        for p in range(4):
            path = (top, f"Section {page}.{p // 2}")
            text = " ".join(_sentence(rng) for _ in range(rng.randint(2, 9)))
            blocks.append(ChunkInput(text, page, path))
    return blocks


def _check_limits(chunks: list[Chunk], max_tokens: int) -> None:
    for chunk in chunks:
        assert _tokens(chunk.embedding_text) == chunk.token_count <= max_tokens
        assert _tokens(chunk.text) <= max_tokens


@pytest.mark.parametrize("max_tokens", [64, 128, 200, 256])
def test_no_chunk_exceeds_the_limit(max_tokens: int) -> None:
    chunks = Chunker(max_tokens=max_tokens, overlap_tokens=max_tokens // 5).chunk(_document())
    assert len(chunks) > 3
    _check_limits(chunks, max_tokens)
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_nothing_lost() -> None:
    blocks = _document(seed=7)
    chunks = chunk_blocks(blocks)
    joined = "\n".join(c.text for c in chunks)
    for block in blocks:
        for sentence in _sentences_of(block.text):
            assert sentence in joined
    # and in order: each sentence is found in a chunk of its own section
    for block in blocks:
        texts = [c.text for c in chunks if c.heading_path == block.heading_path]
        for sentence in _sentences_of(block.text):
            assert any(sentence in t for t in texts)


def test_no_mid_sentence_split() -> None:
    blocks = _document(seed=3)
    sentences = {s for b in blocks for s in _sentences_of(b.text)}
    for chunk in Chunker(max_tokens=96, overlap_tokens=20).chunk(blocks):
        for piece in _sentences_of(chunk.text):
            assert piece in sentences


def test_overlap_between_consecutive_chunks_of_a_section() -> None:
    rng = random.Random(5)
    text = " ".join(_sentence(rng, 8) for _ in range(60))
    chunks = Chunker(max_tokens=128, overlap_tokens=30).chunk([ChunkInput(text, 1, ("A",))])
    assert len(chunks) >= 4
    for previous, current in itertools.pairwise(chunks):
        prev, cur = _sentences_of(previous.text), _sentences_of(current.text)
        shared = next(n for n in range(len(cur), 0, -1) if prev[-n:] == cur[:n])
        assert shared >= 1  # the chunk opens with the previous chunk's last sentences
        assert shared < len(prev)
        assert sum(_tokens(x) - 2 for x in cur[:shared]) <= 30


def test_no_overlap_when_disabled() -> None:
    rng = random.Random(5)
    text = " ".join(_sentence(rng, 8) for _ in range(40))
    chunks = Chunker(max_tokens=128, overlap_tokens=0).chunk([ChunkInput(text, 1)])
    sentences = [s for c in chunks for s in _sentences_of(c.text)]
    assert sentences == _sentences_of(text)


def test_page_spans() -> None:
    rng = random.Random(2)
    blocks = [
        ChunkInput(" ".join(_sentence(rng, 10) for _ in range(3)), page, ("Doc",))
        for page in range(1, 11)
    ]
    chunks = Chunker(max_tokens=200, overlap_tokens=0).chunk(blocks)
    for chunk in chunks:
        expected = sorted(
            {b.page for b in blocks for s in _sentences_of(b.text) if s in chunk.text}
        )
        assert chunk.pages == tuple(range(expected[0], expected[-1] + 1))
    assert any(len(c.pages) > 1 for c in chunks)
    assert chunks[0].pages[0] == 1
    assert chunks[-1].pages[-1] == 10


def test_page_span_is_first_to_last() -> None:
    blocks = [ChunkInput("Short one.", 3), ChunkInput("Short two.", 5)]
    (chunk,) = chunk_blocks(blocks)
    assert chunk.pages == (3, 4, 5)
    assert chunk.first_page == 3


def test_headings_respected() -> None:
    rng = random.Random(4)

    def body(tag: str) -> str:
        return f"About {tag} first. " + " ".join(_sentence(rng, 10) for _ in range(5))

    blocks = [
        ChunkInput(body("intro"), 1, ("Intro",)),
        ChunkInput("A short note.", 1, ("Intro", "Note")),  # small: may join Intro
        ChunkInput(body("methods"), 2, ("Methods",)),
        ChunkInput(body("setup"), 2, ("Methods", "Setup")),
        ChunkInput(body("results"), 3, ("Results",)),
    ]
    chunks = Chunker(max_tokens=256, overlap_tokens=40).chunk(blocks)
    tops = [c.heading_path[:1] for c in chunks]
    # a new top-level heading always starts a new chunk: no chunk mixes two top-level sections
    for chunk in chunks:
        owners = {b.heading_path[:1] for b in blocks if b.text[:16] in chunk.text}
        assert len(owners) <= 1
    assert tops[0] == ("Intro",)
    assert ("Results",) in tops
    assert chunks[-1].heading_path == ("Results",)
    assert any(c.heading_path == ("Methods", "Setup") for c in chunks)
    for chunk in chunks:
        prefix = " > ".join(chunk.heading_path)
        assert chunk.embedding_text == f"{prefix}\n{chunk.text}"


def test_small_subsections_merge_under_common_heading() -> None:
    blocks = [
        ChunkInput("Tiny intro.", 1, ("Guide",)),
        ChunkInput("Tiny step one.", 1, ("Guide", "Step 1")),
        ChunkInput("Tiny step two.", 1, ("Guide", "Step 2")),
        ChunkInput("Other part.", 2, ("Appendix",)),
    ]
    chunks = chunk_blocks(blocks)
    assert [c.heading_path for c in chunks] == [("Guide",), ("Appendix",)]
    assert "Tiny step two." in chunks[0].text


def test_heading_blocks_not_duplicated() -> None:
    blocks = [
        ChunkInput("Overview", 1, ("Overview",), kind="heading"),
        ChunkInput("The text under it.", 1, ("Overview",)),
    ]
    (chunk,) = chunk_blocks(blocks)
    assert chunk.text == "The text under it."
    assert chunk.embedding_text == "Overview\nThe text under it."


def test_tables_kept_whole_when_they_fit() -> None:
    rng = random.Random(8)
    table = "\n".join(f"| row {i} | {rng.choice(WORDS)} | {i * 3} |" for i in range(12))
    prose = " ".join(_sentence(rng, 12) for _ in range(8))
    blocks = [
        ChunkInput(prose, 1, ("T",)),
        ChunkInput(table, 1, ("T",), kind="table"),
        ChunkInput(prose, 2, ("T",)),
    ]
    chunks = Chunker(max_tokens=200, overlap_tokens=40).chunk(blocks)
    assert sum(table in c.text for c in chunks) == 1
    _check_limits(chunks, 200)


def test_big_table_split_on_rows() -> None:
    table = "\n".join(f"| row {i} | value {i * 7} | note {i} |" for i in range(120))
    chunks = Chunker(max_tokens=128, overlap_tokens=20).chunk([ChunkInput(table, 4, kind="table")])
    assert len(chunks) > 3
    _check_limits(chunks, 128)
    rows = [row for c in chunks for row in c.text.split("\n")]
    for i in range(120):
        assert f"| row {i} | value {i * 7} | note {i} |" in rows


def test_long_sentence_split_on_words() -> None:
    rng = random.Random(9)
    long_sentence = " ".join(rng.choice(WORDS) for _ in range(700)) + "."
    chunks = Chunker(max_tokens=128, overlap_tokens=20).chunk([ChunkInput(long_sentence, 1)])
    _check_limits(chunks, 128)
    words = [w for c in chunks for w in c.text.split()]
    assert words == long_sentence.split()


def test_giant_word_split_by_wordpieces() -> None:
    blob = "x7q" * 600  # no whitespace at all
    chunks = Chunker(max_tokens=64, overlap_tokens=0).chunk([ChunkInput(blob, 1)])
    _check_limits(chunks, 64)
    assert "".join(c.text for c in chunks) == blob


def test_unicode_and_cjk() -> None:
    text = "Ünïcödé façade naïve. " * 30 + "这是一个测试句子。" * 40
    chunks = Chunker(max_tokens=64, overlap_tokens=10).chunk([ChunkInput(text, 1)])
    _check_limits(chunks, 64)


def test_empty_input() -> None:
    assert chunk_blocks([]) == []
    assert chunk_blocks([ChunkInput("   \n ", 1)]) == []


def test_settings_validated() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        Chunker(max_tokens=300)
    with pytest.raises(ValueError, match="overlap"):
        Chunker(max_tokens=100, overlap_tokens=80)
