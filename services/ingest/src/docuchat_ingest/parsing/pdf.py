"""PDF with PyMuPDF: text per page in reading order, columns one after another, tables as rows.

Reading order: text blocks wider than ~55% of the page's text area span all columns and cut the
page into horizontal bands; inside a band the narrow blocks are grouped into columns by merging
overlapping x-ranges, and columns are read left to right, top to bottom. Tables found by
``page.find_tables()`` (ruled tables; only on pages whose ruling lines
cross like a grid, because the search costs ~0.5-1 s per page) become one ``table``
block of ``|``-joined rows, and text blocks inside a table's box are dropped so nothing is
duplicated. Headings: blocks whose font is clearly larger than the document's body size.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from docuchat_ingest.parsing.model import (
    PDF,
    Block,
    BlockKind,
    HeadingTracker,
    Page,
    ParsedDocument,
    ParseError,
    require_text,
)

# PyMuPDF 2 imports its layout analyser (an ONNX model: ~0.6 CPU-s and ~60 MiB per process)
# when present; nothing here uses it (``find_tables(use_layout=False)``), and the parser child's
# memory budget should go to documents. A missing ``pymupdf.layout`` is a case PyMuPDF handles.
sys.modules.setdefault("pymupdf.layout", None)  # type: ignore[arg-type]

import pymupdf as _pymupdf  # noqa: E402

# PyMuPDF ships partial annotations; it is used through Any to keep mypy strict elsewhere.
pymupdf: Any = _pymupdf
pymupdf.TOOLS.mupdf_display_errors(False)
pymupdf.TOOLS.mupdf_display_warnings(False)
pymupdf.no_recommend_layout()

_TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
MAX_XY_BLOCKS = 3_000
MIN_GUTTER = 4.0  # points of whitespace that separate two columns
MIN_GRID_CROSSINGS = 9  # a 2x2 grid of cells has 3x3 crossings


@dataclass
class _TBlock:
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    size: float
    lines: int
    chars: int
    table: bool = False
    raw_lines: tuple[str, ...] = ()
    running: str = ""  # "header" / "footer" for text repeated in the page margins


def _open(data: bytes) -> Any:
    try:
        doc = pymupdf.open(stream=data, filetype="pdf")
    except Exception as exc:  # pymupdf raises many types on broken input
        raise ParseError("corrupt_file", f"cannot open PDF: {exc}") from exc
    if doc.needs_pass and not doc.authenticate(""):
        doc.close()
        raise ParseError("encrypted_document", "the PDF is password-protected")
    return doc


def _text_blocks(page: Any) -> list[_TBlock]:
    out: list[_TBlock] = []
    d = page.get_text("dict", flags=_TEXT_FLAGS)
    for b in d.get("blocks", []):
        if b.get("type") != 0:
            continue
        lines: list[str] = []
        sizes: Counter[float] = Counter()
        for line in b.get("lines", []):
            spans = line.get("spans", [])
            text = "".join(s.get("text", "") for s in spans)
            for s in spans:
                sizes[round(float(s.get("size", 0.0)), 1)] += len(s.get("text", "").strip())
            if text.strip():
                lines.append(text.strip())
        text = _join_lines(lines)
        if not text or _undecodable(text):
            continue
        x0, y0, x1, y1 = b["bbox"]
        size = sizes.most_common(1)[0][0] if sizes else 0.0
        out.append(
            _TBlock(
                x0, y0, x1, y1, text, size, len(lines), sum(sizes.values()), raw_lines=tuple(lines)
            )
        )
    return out


# A font without a Unicode mapping yields U+FFFD for its glyphs: such text is noise to search
# and to the model (a 200-token chunk of it held 6,000 characters), so the block is dropped.
UNDECODABLE_SHARE = 0.3


def _undecodable(text: str) -> bool:
    """Whether so much of the text is U+FFFD (glyphs without a Unicode mapping) that the rest
    is noise."""
    unknown = text.count("\ufffd")
    return unknown > 0 and unknown >= UNDECODABLE_SHARE * (len(text) - text.count(" "))


def _join_lines(lines: list[str]) -> str:
    text = ""
    for line in lines:
        if text.endswith("-") and len(text) > 1 and text[-2].isalpha() and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return text.strip()


def _order(blocks: list[_TBlock]) -> list[_TBlock]:
    """Reading order by recursive XY-cut.

    A region is first split at vertical gutters (whitespace running the full height of the
    region: columns, read left to right), otherwise at horizontal gaps (read top to bottom);
    a region that cannot be cut is read by (y, x). Full-width blocks such as titles prevent a
    vertical cut, so they end up in their own horizontal strip above or below the columns.
    """
    if len(blocks) > MAX_XY_BLOCKS:
        return sorted(blocks, key=lambda b: (b.y0, b.x0))
    out: list[_TBlock] = []
    _xy_cut(blocks, out, 0)
    return out


def _split(blocks: list[_TBlock], axis: int, min_gap: float) -> list[list[_TBlock]]:
    def lo(b: _TBlock) -> float:
        return b.x0 if axis == 0 else b.y0

    def hi(b: _TBlock) -> float:
        return b.x1 if axis == 0 else b.y1

    groups: list[list[_TBlock]] = []
    end = float("-inf")
    for b in sorted(blocks, key=lo):
        if not groups or lo(b) - end >= min_gap:
            groups.append([b])
        else:
            groups[-1].append(b)
        end = max(end, hi(b)) if len(groups[-1]) > 1 else hi(b)
    return groups


def _xy_cut(blocks: list[_TBlock], out: list[_TBlock], depth: int) -> None:
    if len(blocks) <= 1 or depth > 60:
        out.extend(sorted(blocks, key=lambda b: (b.y0, b.x0)))
        return
    columns = _split(blocks, 0, MIN_GUTTER)
    if len(columns) > 1:
        for col in columns:
            _xy_cut(col, out, depth + 1)
        return
    strips = _split(blocks, 1, 0.5)
    if len(strips) > 1:
        for strip in strips:
            _xy_cut(strip, out, depth + 1)
        return
    # No clean cut: blocks spanning most of the region's width (a caption or a page footer
    # running under the columns) act as separators, and what lies between them is cut again.
    left = min(b.x0 for b in blocks)
    width = max(b.x1 for b in blocks) - left
    wide = sorted((b for b in blocks if b.x1 - b.x0 > 0.5 * width), key=lambda b: b.y0)
    rest = [b for b in blocks if b.x1 - b.x0 <= 0.5 * width]
    if not wide or not rest:
        out.extend(sorted(blocks, key=lambda b: (b.y0, b.x0)))
        return
    for sep in wide:
        band = [b for b in rest if (b.y0 + b.y1) / 2 < (sep.y0 + sep.y1) / 2]
        rest = [b for b in rest if (b.y0 + b.y1) / 2 >= (sep.y0 + sep.y1) / 2]
        _xy_cut(band, out, depth + 1)
        out.append(sep)
    _xy_cut(rest, out, depth + 1)


Segment = tuple[float, float, float]  # horizontal (x0, y, x1) or vertical (x, y0, y1)
Rule = tuple[float, float, float]  # (position, start, end): either direction alike


def _ruling_lines(page: Any) -> tuple[list[Segment], list[Segment]] | None:
    """Horizontal (x0, y, x1) and vertical (x, y0, y1) ruling lines of the page."""
    hs: list[Segment] = []
    vs: list[Segment] = []
    for d in page.get_cdrawings():
        for item in d.get("items", ()):
            if item[0] == "l":
                (x0, y0), (x1, y1) = tuple(item[1]), tuple(item[2])
                segs = [(x0, y0, x1, y1)]
            elif item[0] == "re":
                r = pymupdf.Rect(item[1])
                segs = [
                    (r.x0, r.y0, r.x1, r.y0),
                    (r.x0, r.y1, r.x1, r.y1),
                    (r.x0, r.y0, r.x0, r.y1),
                    (r.x1, r.y0, r.x1, r.y1),
                ]
            else:
                continue
            for x0, y0, x1, y1 in segs:
                if abs(y1 - y0) < 3 and abs(x1 - x0) > 3:
                    hs.append((min(x0, x1), (y0 + y1) / 2, max(x0, x1)))
                elif abs(x1 - x0) < 3 and abs(y1 - y0) > 3:
                    vs.append(((x0 + x1) / 2, min(y0, y1), max(y0, y1)))
        if len(hs) * len(vs) > 4_000_000:
            return None  # absurd vector content: not worth a table search
    return hs, vs


def _joined(lines: list[Rule], tol: float) -> list[Rule]:
    """Lines given as (position, start, end), as a table finder sees them: those within ``tol``
    of one position are one line (a rule drawn twice, or as a thin rectangle's two edges), and
    their pieces that touch or nearly do are one piece."""
    joined: list[Rule] = []
    group: list[Rule] = []

    def flush() -> None:
        position = group[0][0]
        for _, start, end in sorted(group, key=lambda line: line[1]):
            if joined and joined[-1][0] == position and start <= joined[-1][2] + tol:
                joined[-1] = (position, joined[-1][1], max(joined[-1][2], end))
            else:
                joined.append((position, start, end))

    for line in sorted(lines):
        if group and line[0] - group[0][0] > tol:
            flush()
            group = []
        group.append(line)
    if group:
        flush()
    return joined


def _cells_along(line: Rule, crossing: list[Rule], tol: float) -> int:
    """How many cells ``line`` borders: the stretches between the lines of ``crossing`` that
    cross it, and a stretch it runs on past the first or the last of them (where a table finder
    closes the table with the line's end)."""
    position, start, end = line
    at = sorted(
        other_position
        for other_position, other_start, other_end in crossing
        if start - tol <= other_position <= end + tol
        and other_start - tol <= position <= other_end + tol
    )
    if not at:
        return 0
    distinct = [at[0]]
    for point in at[1:]:
        if point - distinct[-1] > tol:
            distinct.append(point)
    runs_on = 2 * tol  # more than an overshoot past the last rule
    return len(distinct) - 1 + (distinct[0] - start > runs_on) + (end - distinct[-1] > runs_on)


def _grid_box(page: Any) -> tuple[float, float, float, float] | None:
    """Box around the ruling lines if they cross like a table grid of at least two rows and
    two columns (cheap pre-check: PyMuPDF's table finder costs tens of milliseconds a page, and
    figures, framed boxes and a ruled header row alone cross lines too, where it can only find
    a table the caller drops)."""
    lines = _ruling_lines(page)
    if lines is None:
        return None
    hs, vs = lines
    tol = 3.0
    crossings = 0
    for hx0, hy, hx1 in hs:
        for vx, vy0, vy1 in vs:
            if hx0 - tol <= vx <= hx1 + tol and vy0 - tol <= hy <= vy1 + tol:
                crossings += 1
    if crossings < MIN_GRID_CROSSINGS:
        return None
    rows = _joined([(y, x0, x1) for x0, y, x1 in hs], tol)
    columns = _joined([(x, y0, y1) for x, y0, y1 in vs], tol)
    if (
        max(_cells_along(row, columns, tol) for row in rows) < 2
        or max(_cells_along(column, rows, tol) for column in columns) < 2
    ):
        return None
    return (
        min(*(h[0] for h in hs), *(v[0] for v in vs)) - tol,
        min(*(h[1] for h in hs), *(v[1] for v in vs)) - tol,
        max(*(h[2] for h in hs), *(v[0] for v in vs)) + tol,
        max(*(h[1] for h in hs), *(v[2] for v in vs)) + tol,
    )


def _tables(page: Any) -> list[tuple[tuple[float, float, float, float], str]]:
    try:
        clip = _grid_box(page)
        if clip is None:
            return []
        found = page.find_tables(clip=pymupdf.Rect(clip) & page.rect, use_layout=False)
    except Exception:  # table detection is best effort
        return []
    out = []
    for tab in found.tables:
        try:
            rows = [[" ".join((c or "").split()) for c in row] for row in tab.extract()]
        except Exception:  # noqa: S112 - best effort
            continue
        rows = [r for r in rows if any(r)]
        width = max((len(r) for r in rows), default=0)
        keep = [i for i in range(width) if any(i < len(r) and r[i] for r in rows)]
        if len(rows) < 2 or len(keep) < 2:
            continue
        lines = ["| " + " | ".join(r[i] if i < len(r) else "" for i in keep) + " |" for r in rows]
        out.append((tuple(tab.bbox), "\n".join(lines)))
    return out


def _inside(b: _TBlock, box: tuple[float, float, float, float]) -> bool:
    ix = max(0.0, min(b.x1, box[2]) - max(b.x0, box[0]))
    iy = max(0.0, min(b.y1, box[3]) - max(b.y0, box[1]))
    area = max((b.x1 - b.x0) * (b.y1 - b.y0), 1e-6)
    return ix * iy / area > 0.5


def parse_pdf(data: bytes, *, max_pages: int = 500, tables: bool = True) -> ParsedDocument:
    doc = _open(data)
    try:
        try:
            count = doc.page_count
        except Exception as exc:
            raise ParseError("corrupt_file", f"unreadable page tree: {exc}") from exc
        if count > max_pages:
            raise ParseError("too_many_pages", f"{count} pages (limit {max_pages})")
        if count == 0:
            raise ParseError("corrupt_file", "the PDF has no pages")
        raw_pages: list[list[_TBlock]] = []
        heights: list[float] = []
        body_sizes: Counter[float] = Counter()
        for index in range(count):
            try:
                page = doc.load_page(index)
                heights.append(float(page.rect.height))
                blocks = _text_blocks(page)
                found = _tables(page) if tables and blocks else []
            except Exception:  # a broken page yields no text; other pages still count
                heights.extend([0.0] * (len(raw_pages) + 1 - len(heights)))
                raw_pages.append([])
                continue
            blocks = [b for b in blocks if not any(_inside(b, box) for box, _ in found)]
            for b in blocks:
                body_sizes[b.size] += b.chars
            blocks += [_TBlock(*box, text, 0.0, 0, 0, table=True) for box, text in found]
            raw_pages.append(_order(blocks))
        title = None
        with contextlib.suppress(Exception):
            title = (doc.metadata or {}).get("title") or None
    finally:
        doc.close()
    _mark_running(raw_pages, heights)
    return require_text(_build(raw_pages, body_sizes, title))


_PAGE_NUMBER = re.compile(r"(page\s*)?#(\s*(of|/)\s*#)?|[-\u2013\u2014]\s*#\s*[-\u2013\u2014]")
MARGIN = 0.09  # top/bottom share of the page height where running headers/footers live


def _running_key(b: _TBlock) -> str:
    return re.sub(r"\d+", "#", " ".join(b.text.lower().split()))


def _mark_running(raw_pages: list[list[_TBlock]], heights: list[float]) -> None:
    """Mark page numbers and text repeated in the top/bottom margins as headers/footers."""
    candidates: list[tuple[_TBlock, str, str]] = []
    pages_with: Counter[str] = Counter()
    for blocks, height in zip(raw_pages, heights, strict=True):
        keys: set[str] = set()
        for b in blocks:
            if b.table or height <= 0 or len(b.text) > 250:
                continue
            where = "header" if b.y1 <= MARGIN * height else ""
            where = "footer" if b.y0 >= (1 - MARGIN) * height else where
            if where:
                key = _running_key(b)
                candidates.append((b, where, key))
                keys.add(key)
        pages_with.update(keys)
    threshold = max(2.0, 0.4 * len(raw_pages))
    for b, where, key in candidates:
        if _PAGE_NUMBER.fullmatch(key) or (len(raw_pages) >= 3 and pages_with[key] >= threshold):
            b.running = where


def _build(
    raw_pages: list[list[_TBlock]], body_sizes: Counter[float], title: str | None
) -> ParsedDocument:
    body = body_sizes.most_common(1)[0][0] if body_sizes else 0.0
    heading_sizes = sorted(
        {b.size for items in raw_pages for b in items if _is_heading(b, body)},
        reverse=True,
    )[:6]
    levels = {size: i + 1 for i, size in enumerate(heading_sizes)}
    tracker = HeadingTracker()
    pages: list[Page] = []
    for number, items in enumerate(raw_pages, start=1):
        page = Page(number=number)
        prev: _TBlock | None = None
        for b in items:
            kind: BlockKind = "paragraph"
            level = None
            text = b.text
            if b.table:
                kind = "table"
            elif b.running:
                kind = "header" if b.running == "header" else "footer"
            elif b.size in levels and _is_heading(b, body):
                kind, level = "heading", levels[b.size]
                last = page.blocks[-1] if page.blocks else None
                if (
                    prev is not None
                    and last is not None
                    and last.kind == "heading"
                    and last.level == level
                    and 0 <= b.y0 - prev.y1 < b.size
                ):  # a heading wrapped over two blocks
                    text = f"{last.text} {text}"
                    page.blocks.pop()
                tracker.push(level, text)
            if kind == "paragraph" and _BULLET.match(b.raw_lines[0] if b.raw_lines else ""):
                page.blocks += [
                    Block(item, "list_item", tracker.path, 1) for item in _list_items(b.raw_lines)
                ]
            else:
                page.blocks.append(Block(text, kind, () if b.running else tracker.path, level))
            prev = b
        pages.append(page)
    first_heading = next((b.text for p in pages for b in p.blocks if b.kind == "heading"), None)
    return ParsedDocument(media_type=PDF, pages=pages, title=title or first_heading)


_BULLET = re.compile(
    r"^\s*(?:[\u2022\u25aa\u25cf\u25e6\u2023\u2043\u00b7*]|\d{1,3}[.)])(?:\s+\S|\s*$)"
)


def _list_items(lines: tuple[str, ...]) -> list[str]:
    """Split a block whose lines start with bullets or numbers into one item per marker."""
    items: list[list[str]] = []
    for line in lines:
        if _BULLET.match(line) or not items:
            items.append([line])
        else:
            items[-1].append(line)
    return [_join_lines(item) for item in items]


def _is_heading(b: _TBlock, body: float) -> bool:
    return (
        not b.table
        and not b.running
        and body > 0
        and b.size >= body * 1.15
        and b.lines <= 3
        and 2 <= len(b.text) <= 200
        and any(c.isalpha() for c in b.text)
    )
