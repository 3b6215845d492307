"""Markdown: blocks split on ATX/Setext headings with heading paths; code fences kept whole."""

from __future__ import annotations

import re

from docuchat_ingest.parsing.model import (
    MARKDOWN,
    Block,
    BlockKind,
    HeadingTracker,
    Page,
    ParsedDocument,
    require_text,
)
from docuchat_ingest.parsing.text import decode_text

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST = re.compile(r"^( *)(?:[-*+]|\d{1,9}[.)])[ \t]+\S")
_TABLE = re.compile(r"^ {0,3}\|")
_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TITLE = re.compile(r"^title:\s*[\"']?(.*?)[\"']?\s*$", re.MULTILINE)


def _front_matter(lines: list[str]) -> tuple[str | None, int]:
    if not lines or lines[0].strip() != "---":
        return None, 0
    for i in range(1, min(len(lines), 200)):
        if lines[i].strip() in ("---", "..."):
            m = _TITLE.search("\n".join(lines[1:i]))
            return (m.group(1) or None) if m else None, i + 1
    return None, 0


class _Builder:
    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.headings = HeadingTracker()
        self.buf: list[str] = []
        self.kind: BlockKind = "paragraph"
        self.level: int | None = None
        self.first_heading: str | None = None

    def flush(self) -> None:
        text = "\n".join(self.buf).strip("\n")
        if text.strip():
            self.blocks.append(Block(text, self.kind, self.headings.path, self.level))
        self.buf, self.kind, self.level = [], "paragraph", None

    def start(self, kind: BlockKind, level: int | None = None) -> None:
        self.flush()
        self.kind, self.level = kind, level

    def heading(self, level: int, title: str) -> None:
        self.flush()
        title = title.strip()
        if not title:
            return
        self.first_heading = self.first_heading or title
        path = self.headings.push(level, title)
        self.blocks.append(Block(title, "heading", path, level))


def parse_markdown(data: bytes) -> ParsedDocument:
    lines = decode_text(data).split("\n")
    title, start = _front_matter(lines)
    b = _Builder()
    fence: str | None = None
    for line in lines[start:]:
        if fence is not None:
            b.buf.append(line)
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
                b.flush()
            continue
        m = _FENCE.match(line)
        if m:
            b.start("paragraph")
            fence = m.group(1)
            b.buf.append(line)
            continue
        if not line.strip():
            b.flush()
            continue
        m = _ATX.match(line)
        if m:
            b.heading(len(m.group(1)), m.group(2) or "")
            continue
        m = _SETEXT.match(line)
        if m and b.buf and b.kind == "paragraph":
            text = " ".join(s.strip() for s in b.buf)
            b.buf = []
            b.heading(1 if m.group(1)[0] == "=" else 2, text)
            continue
        if _BREAK.match(line):  # thematic break: ends the block, carries no text
            b.flush()
            continue
        m = _LIST.match(line)
        if m:
            b.start("list_item", len(m.group(1)) // 2 + 1)
            b.buf.append(line.strip())
            continue
        if _TABLE.match(line):
            if b.kind != "table":
                b.start("table")
            b.buf.append(line.strip())
            continue
        if b.kind == "table":
            b.start("paragraph")
        b.buf.append(line)
    b.flush()
    doc = ParsedDocument(
        media_type=MARKDOWN,
        pages=[Page(number=1, blocks=b.blocks)],
        title=title or b.first_heading,
    )
    return require_text(doc)
