"""Token-aware chunking for the embedding model (MiniLM: 256 wordpieces, special tokens included).

Blocks (paragraphs, list items, tables, ...) are cut into units: sentences (split after . ! ?
followed by whitespace, and at newlines), whole tables when they fit, table rows otherwise, and
word-boundary pieces of sentences longer than a chunk. Units are packed greedily into chunks of
at most ``max_tokens`` wordpieces counted on ``Chunk.embedding_text`` (heading path + text,
[CLS]/[SEP] included), so the embedder never truncates. A chunk closed because it is full hands
its last sentences (at most ``overlap_tokens``) to the next one. A change of heading path closes
the chunk, except that a chunk still smaller than ``min_tokens`` may take in the next section
under the same top-level heading (its heading path is then the common prefix); a new top-level
heading always starts a new chunk, and overlap never crosses sections.

Counting relies on BERT wordpiece counts being additive over whitespace-separated pieces (the
pre-tokenizer splits on whitespace first); a final pass recounts every chunk with the tokenizer
and splits any chunk that would still exceed the limit, so ``token_count`` is exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tokenizers import Tokenizer

from docuchat_ingest.embedding.model_files import MAX_SEQ_LENGTH, count_tokens, load_tokenizer

SPECIAL_TOKENS = 2  # [CLS] ... [SEP]
HEADING_SEPARATOR = " > "
BLOCK_SEPARATOR = "\n\n"
TABLE_KINDS = frozenset({"table"})

# Whitespace after sentence-final punctuation (optionally closed by a quote or bracket), or any
# whitespace run containing a newline.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]\u2019\u201d])\s+|[^\S\n]*\n\s*")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class ChunkInput:
    """One parsed block. ``kind`` is free-form ("paragraph", "list", "table", "heading", ...);
    only "table" is treated specially, and a "heading" block that repeats the last element of
    its own heading path is skipped (the path already carries it)."""

    text: str
    page: int
    heading_path: tuple[str, ...] = ()
    kind: str = "paragraph"


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str  # the original text, as shown to users and cited
    pages: tuple[int, ...]  # every page from the first to the last the chunk touches
    heading_path: tuple[str, ...]
    token_count: int  # wordpieces of embedding_text, [CLS]/[SEP] included
    embedding_text: str  # heading path + text: what gets embedded

    @property
    def first_page(self) -> int:
        return self.pages[0]


@dataclass(slots=True)
class _Unit:
    text: str
    tokens: int  # without special tokens
    page: int
    sep: str  # joins this unit to the previous one in the same chunk
    section: int  # index of the run of consecutive blocks sharing a heading path
    path: tuple[str, ...]
    table: bool = False


@dataclass(slots=True)
class _Open:
    units: list[_Unit] = field(default_factory=list)
    tokens: int = 0
    path: tuple[str, ...] = ()

    def add(self, unit: _Unit) -> None:
        self.units.append(unit)
        self.tokens += unit.tokens


class Chunker:
    """Turns parsed blocks into :class:`Chunk` s. Stateless apart from caches; thread-safe."""

    def __init__(
        self,
        *,
        max_tokens: int = 200,
        overlap_tokens: int = 40,
        min_tokens: int | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        if not 32 <= max_tokens <= MAX_SEQ_LENGTH:
            raise ValueError(f"max_tokens must be in 32..{MAX_SEQ_LENGTH}")
        if not 0 <= overlap_tokens <= max_tokens // 2:
            raise ValueError("overlap_tokens must be in 0..max_tokens/2")
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.min_tokens = max_tokens // 4 if min_tokens is None else min_tokens
        self.tokenizer = tokenizer or load_tokenizer()
        self._prefixes: dict[tuple[str, ...], tuple[str, int]] = {}

    # -- counting -------------------------------------------------------------------------------

    def count(self, texts: Sequence[str], *, special_tokens: bool = False) -> list[int]:
        return count_tokens(texts, special_tokens=special_tokens, tokenizer=self.tokenizer)

    def _prefix(self, path: tuple[str, ...]) -> tuple[str, int]:
        """The heading prefix for embedding_text and its token count (a long path is shortened
        to its last heading, then dropped, so it never takes more than a quarter of a chunk)."""
        cached = self._prefixes.get(path)
        if cached is not None:
            return cached
        result = ("", 0)
        cap = self.max_tokens // 4
        for raw in (HEADING_SEPARATOR.join(path), path[-1] if path else ""):
            candidate = " ".join(raw.split())
            if not candidate:
                break
            # the newline after the prefix is whitespace: it adds no token
            tokens = self.count([candidate])[0]
            if tokens <= cap:
                result = (candidate + "\n", tokens)
                break
        self._prefixes[path] = result
        return result

    def budget(self, path: tuple[str, ...]) -> int:
        """Wordpieces of chunk text available under this heading path."""
        return self.max_tokens - SPECIAL_TOKENS - self._prefix(path)[1]

    # -- units ----------------------------------------------------------------------------------

    def _units(self, blocks: Iterable[ChunkInput]) -> list[_Unit]:
        raw: list[_Unit] = []
        section = -1
        previous: tuple[str, ...] | None = None
        for block in blocks:
            text = block.text.strip()
            path = tuple(block.heading_path)
            if not text:
                continue
            if (
                block.kind == "heading"
                and path
                and " ".join(text.split()) == " ".join(path[-1].split())
            ):
                continue
            if path != previous:
                section += 1
                previous = path
            table = block.kind in TABLE_KINDS
            if table:
                raw.append(_Unit(text, 0, block.page, BLOCK_SEPARATOR, section, path, table=True))
                continue
            first = True
            for piece, sep in _sentences(text):
                raw.append(
                    _Unit(piece, 0, block.page, BLOCK_SEPARATOR if first else sep, section, path)
                )
                first = False
        for unit, tokens in zip(raw, self.count([u.text for u in raw]), strict=True):
            unit.tokens = tokens
        units: list[_Unit] = []
        for unit in raw:
            limit = self.budget(unit.path)
            if unit.tokens <= limit:
                units.append(unit)
            elif unit.table:  # too big to keep whole: one unit per row (rows split further)
                rows = [row for row in unit.text.split("\n") if row.strip()]
                row_units = [
                    _Unit(row, n, unit.page, unit.sep if i == 0 else "\n", unit.section, unit.path)
                    for i, (row, n) in enumerate(zip(rows, self.count(rows), strict=True))
                ]
                for row_unit in row_units:
                    units.extend(self._fit(row_unit, limit))
            else:
                units.extend(self._fit(unit, limit))
        return units

    def _fit(self, unit: _Unit, limit: int) -> list[_Unit]:
        """``unit`` itself if it fits, else pieces cut at word boundaries (and, for a single
        word longer than a chunk, at wordpiece boundaries)."""
        if unit.tokens <= limit:
            return [unit]
        pieces: list[tuple[str, int]] = []
        words = [m.group() for m in _WORD.finditer(unit.text)]
        current: list[str] = []
        current_tokens = 0
        for word, tokens in zip(words, self.count(words), strict=True):
            if tokens > limit:
                if current:
                    pieces.append((" ".join(current), current_tokens))
                    current, current_tokens = [], 0
                pieces.extend(self._hard_split(word, limit))
                continue
            if current_tokens + tokens > limit:
                pieces.append((" ".join(current), current_tokens))
                current, current_tokens = [], 0
            current.append(word)
            current_tokens += tokens
        if current:
            pieces.append((" ".join(current), current_tokens))
        return [
            _Unit(text, tokens, unit.page, unit.sep if i == 0 else " ", unit.section, unit.path)
            for i, (text, tokens) in enumerate(pieces)
        ]

    def _hard_split(self, word: str, limit: int) -> list[tuple[str, int]]:
        encoding = self.tokenizer.encode(word, add_special_tokens=False)
        offsets = encoding.offsets
        step = max(1, limit - 8)  # a continuation piece may take a few more wordpieces alone
        out: list[tuple[str, int]] = []
        start = 0
        while start < len(offsets):
            end = min(start + step, len(offsets))
            while True:
                text = word[offsets[start][0] : offsets[end - 1][1]]
                tokens = self.count([text])[0]
                if tokens <= limit or end - start == 1:
                    break
                end = start + max(1, (end - start) * 3 // 4)
            out.append((text, tokens))
            start = end
        return out

    # -- packing --------------------------------------------------------------------------------

    def chunk(self, blocks: Iterable[ChunkInput]) -> list[Chunk]:
        units = self._units(blocks)
        groups: list[tuple[list[_Unit], tuple[str, ...]]] = []
        open_ = _Open()
        for unit in units:
            if not open_.units:
                open_.path = unit.path
                open_.add(unit)
                continue
            last = open_.units[-1]
            if unit.section != last.section:
                common = _common_prefix(open_.path, unit.path)
                if (
                    open_.tokens < self.min_tokens
                    and open_.path[:1] == unit.path[:1]
                    and open_.tokens + unit.tokens <= self.budget(common)
                ):
                    open_.path = common
                    open_.add(unit)
                    continue
                groups.append((open_.units, open_.path))
                open_ = _Open(path=unit.path)
                open_.add(unit)
                continue
            if open_.tokens + unit.tokens <= self.budget(open_.path):
                open_.add(unit)
                continue
            groups.append((open_.units, open_.path))
            carried = self._overlap(open_.units, unit, self.budget(unit.path))
            open_ = _Open(path=unit.path)
            for carried_unit in carried:
                open_.add(carried_unit)
            open_.add(unit)
        if open_.units:
            groups.append((open_.units, open_.path))
        return self._finish(groups)

    def _overlap(self, previous: list[_Unit], unit: _Unit, limit: int) -> list[_Unit]:
        """The last units of ``previous`` (fewer than all of it, no tables, same section as
        ``unit``) totalling at most ``overlap_tokens`` and leaving room for ``unit``."""
        room = min(self.overlap_tokens, limit - unit.tokens)
        carried: list[_Unit] = []
        total = 0
        for candidate in reversed(previous[1:]):
            if candidate.table or candidate.section != unit.section:
                break
            if total + candidate.tokens > room:
                break
            carried.append(candidate)
            total += candidate.tokens
        carried.reverse()
        return carried

    def _finish(self, groups: list[tuple[list[_Unit], tuple[str, ...]]]) -> list[Chunk]:
        drafts = [self._draft(units, path) for units, path in groups]
        counts = self.count([d[1] for d in drafts], special_tokens=True)
        chunks: list[Chunk] = []
        for (units, path), draft, tokens in zip(groups, drafts, counts, strict=True):
            if tokens <= self.max_tokens:
                chunks.append(Chunk(0, draft[0], draft[2], draft[3], tokens, draft[1]))
            else:  # pragma: no cover - only if wordpiece counts were not additive
                chunks.extend(self._repair(units, path))
        return [
            Chunk(i, c.text, c.pages, c.heading_path, c.token_count, c.embedding_text)
            for i, c in enumerate(chunks)
        ]

    def _repair(self, units: list[_Unit], path: tuple[str, ...]) -> list[Chunk]:
        """Chunks of ``units`` that really fit: halve until they do, in reading order."""
        text, embedding_text, pages, path = self._draft(units, path)
        tokens = self.count([embedding_text], special_tokens=True)[0]
        if tokens <= self.max_tokens:
            return [Chunk(0, text, pages, path, tokens, embedding_text)]
        if len(units) > 1:
            middle = len(units) // 2
            return self._repair(units[:middle], path) + self._repair(units[middle:], path)
        unit = units[0]
        pieces = self._hard_split(unit.text, max(1, self.budget(path) - 8))
        if len(pieces) == 1:  # cannot cut further: drop the heading prefix as a last resort
            return [Chunk(0, text, pages, path, self.count([text], special_tokens=True)[0], text)]
        return [
            chunk
            for piece, n in pieces
            for chunk in self._repair(
                [_Unit(piece, n, unit.page, " ", unit.section, unit.path)], path
            )
        ]

    def _draft(
        self, units: list[_Unit], path: tuple[str, ...]
    ) -> tuple[str, str, tuple[int, ...], tuple[str, ...]]:
        parts = [units[0].text]
        for unit in units[1:]:
            parts.append(unit.sep)
            parts.append(unit.text)
        text = "".join(parts)
        pages = [u.page for u in units]
        span = tuple(range(min(pages), max(pages) + 1))
        return text, self._prefix(path)[0] + text, span, path


def _sentences(text: str) -> list[tuple[str, str]]:
    """(sentence, separator before it) pairs; the separator is "\\n" when the boundary
    contained a newline, else " "."""
    out: list[tuple[str, str]] = []
    start = 0
    sep = " "
    for match in _BOUNDARY.finditer(text):
        piece = text[start : match.start()].strip()
        if piece:
            out.append((piece, sep))
        sep = "\n" if "\n" in match.group() else " "
        start = match.end()
    piece = text[start:].strip()
    if piece:
        out.append((piece, sep))
    return out


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


def chunk_blocks(
    blocks: Iterable[ChunkInput], *, max_tokens: int = 200, overlap_tokens: int = 40
) -> list[Chunk]:
    """Convenience wrapper: one :class:`Chunker` call with the shared tokenizer."""
    return Chunker(max_tokens=max_tokens, overlap_tokens=overlap_tokens).chunk(blocks)
