"""Result types and errors of document parsing (pure data, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BlockKind = Literal["heading", "paragraph", "list_item", "table", "header", "footer", "footnote"]

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
SUPPORTED_MEDIA_TYPES = (PDF, DOCX, TEXT, MARKDOWN)

ErrorCode = Literal[
    "encrypted_document",
    "no_extractable_text",
    "corrupt_file",
    "unsupported_media_type",
    "too_many_pages",
    # Set by the parser sandbox: the document overran its time or memory budget.
    "parse_timeout",
    "resource_limit",
]


class ParseError(Exception):
    """A document that cannot be parsed; ``code`` is stable and safe to show to users."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: ErrorCode = code
        self.message = message

    def __reduce__(self) -> tuple[type[ParseError], tuple[ErrorCode, str]]:
        # Parsing runs in a child process: the error must cross back intact.
        return (type(self), (self.code, self.message))


@dataclass(frozen=True, slots=True)
class Block:
    text: str
    kind: BlockKind = "paragraph"
    heading_path: tuple[str, ...] = ()
    level: int | None = None


@dataclass(slots=True)
class Page:
    number: int  # 1-based
    blocks: list[Block] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(b.text for b in self.blocks)


@dataclass(slots=True)
class ParsedDocument:
    media_type: str
    pages: list[Page]
    title: str | None = None

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def text(self) -> str:
        return "\n\n".join(p.text for p in self.pages if p.blocks)

    def blocks(self) -> list[Block]:
        return [b for p in self.pages for b in p.blocks]


class HeadingTracker:
    """Keeps the current heading path while blocks are emitted in reading order."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(t for _, t in self._stack)

    def push(self, level: int, title: str) -> tuple[str, ...]:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))
        return self.path


def require_text(doc: ParsedDocument) -> ParsedDocument:
    if not any(b.text.strip() for p in doc.pages for b in p.blocks):
        raise ParseError("no_extractable_text", "the document contains no extractable text")
    return doc
