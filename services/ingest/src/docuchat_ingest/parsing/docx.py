"""DOCX: a small, hardened WordprocessingML reader.

python-docx is not used for the body because it rejects Strict OOXML, drops text boxes and
exposes no footnotes; this reader walks the XML parts directly. Safety: every part is parsed
by the standard library's expat (no external entities, no network) and any part carrying a DTD
(``<!DOCTYPE``/``<!ENTITY``, the vehicle of XXE and billion-laughs payloads) is refused as
``corrupt_file`` before parsing. ZIP limits (entries, total size, compression ratio) are checked
from the central directory and enforced again while reading each part.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from docuchat_ingest.parsing.model import (
    DOCX,
    Block,
    BlockKind,
    HeadingTracker,
    Page,
    ParsedDocument,
    ParseError,
    require_text,
)

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_STRICT = (
    (b"http://purl.oclc.org/ooxml/wordprocessingml/main", W[1:-1].encode()),
    (b"http://purl.oclc.org/ooxml/officeDocument/relationships", R_NS.encode()),
)
MAX_ENTRIES = 5_000
MAX_TOTAL_BYTES = 200 * 1024 * 1024
MAX_PART_BYTES = 64 * 1024 * 1024
MAX_RATIO = 200
_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)
_DTD = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class _Package:
    def __init__(self, data: bytes) -> None:
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
            raise ParseError("corrupt_file", f"unreadable ZIP archive: {exc}") from exc
        if len(infos) > MAX_ENTRIES:
            raise ParseError("corrupt_file", f"too many ZIP entries ({len(infos)})")
        if sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
            raise ParseError("corrupt_file", "the archive expands beyond the size limit")
        self.infos = {i.filename: i for i in infos}

    def has(self, name: str) -> bool:
        return name in self.infos

    def read(self, name: str) -> bytes:
        info = self.infos[name]
        if info.file_size > MAX_PART_BYTES or (
            info.file_size > 1_000_000 and info.file_size > MAX_RATIO * max(info.compress_size, 1)
        ):
            raise ParseError("corrupt_file", f"part {name} exceeds the size/ratio limit")
        try:
            with self.zf.open(info) as fh:
                raw = fh.read(MAX_PART_BYTES + 1)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            raise ParseError("corrupt_file", f"cannot read part {name}: {exc}") from exc
        if len(raw) > MAX_PART_BYTES:
            raise ParseError("corrupt_file", f"part {name} exceeds the size limit")
        return raw

    def xml(self, name: str) -> ET.Element:
        raw = self.read(name)
        if _DTD.search(raw):
            raise ParseError("corrupt_file", f"part {name} declares a DTD (refused)")
        for strict, transitional in _STRICT:
            raw = raw.replace(strict, transitional)
        try:
            return ET.fromstring(raw)  # noqa: S314 - DTDs are refused above; expat never fetches
        except ET.ParseError as exc:
            raise ParseError("corrupt_file", f"malformed XML in {name}: {exc}") from exc

    def rels(self, part: str) -> dict[str, tuple[str, str]]:
        """rId -> (type suffix, package path) of internal relationships of ``part``."""
        folder, base = posixpath.split(part)
        rels_name = posixpath.join(folder, "_rels", base + ".rels")
        if not self.has(rels_name):
            return {}
        out: dict[str, tuple[str, str]] = {}
        for rel in self.xml(rels_name).iter(f"{PKG_REL}Relationship"):
            if rel.get("TargetMode") == "External":
                continue  # never fetched
            target = rel.get("Target", "")
            path = (
                target.lstrip("/")
                if target.startswith("/")
                else posixpath.normpath(posixpath.join(folder, target))
            )
            out[rel.get("Id", "")] = (rel.get("Type", "").rsplit("/", 1)[-1], path)
        return out


@dataclass
class _Style:
    name: str = ""
    based_on: str | None = None
    outline: int | None = None
    numbered: bool = False


def _styles(pkg: _Package, rels: dict[str, tuple[str, str]]) -> dict[str, _Style]:
    part = next((p for t, p in rels.values() if t == "styles"), "word/styles.xml")
    if not pkg.has(part):
        return {}
    styles: dict[str, _Style] = {}
    for st in pkg.xml(part).iter(f"{W}style"):
        s = _Style()
        name = st.find(f"{W}name")
        s.name = (name.get(f"{W}val", "") if name is not None else "").strip()
        based = st.find(f"{W}basedOn")
        s.based_on = based.get(f"{W}val") if based is not None else None
        ppr = st.find(f"{W}pPr")
        if ppr is not None:
            ol = ppr.find(f"{W}outlineLvl")
            if ol is not None and (ol.get(f"{W}val") or "").isdigit():
                s.outline = int(ol.get(f"{W}val", "9"))
            s.numbered = ppr.find(f"{W}numPr") is not None
        styles[st.get(f"{W}styleId", "")] = s
    return styles


@dataclass
class _Walker:
    styles: dict[str, _Style]
    headings: HeadingTracker = field(default_factory=HeadingTracker)
    pages: list[list[Block]] = field(default_factory=lambda: [[]])
    note_pages: dict[str, int] = field(default_factory=dict)
    title: str | None = None

    def emit(self, text: str, kind: BlockKind, level: int | None = None) -> None:
        text = text.strip()
        if not text:
            return
        if kind == "heading":
            path = self.headings.push(level or 1, text)
            self.pages[-1].append(Block(text, kind, path, level))
        else:
            self.pages[-1].append(Block(text, kind, self.headings.path, level))

    def page_break(self) -> None:
        if self.pages[-1]:
            self.pages.append([])

    # -- body --------------------------------------------------------------------------
    def container(self, el: ET.Element) -> None:
        for child in el:
            tag = child.tag
            if tag == f"{W}p":
                self.paragraph(child)
            elif tag == f"{W}tbl":
                self.emit(_table_text(child), "table")
            elif tag in (f"{W}sdt", f"{W}customXml", f"{W}ins", f"{W}smartTag"):
                inner = child.find(f"{W}sdtContent") if tag == f"{W}sdt" else child
                if inner is not None:
                    self.container(inner)

    def paragraph(self, p: ET.Element) -> None:
        ppr = p.find(f"{W}pPr")
        if ppr is not None and ppr.find(f"{W}pageBreakBefore") is not None:
            self.page_break()
        parts: list[str] = []
        boxes: list[ET.Element] = []
        notes: list[str] = []
        breaks_after = _collect(p, parts, boxes, notes)
        text = "".join(parts)
        kind, level = self._classify(ppr, text)
        if kind == "heading" and self.title is None and level == 0:
            self.title = text.strip() or None
        self.emit(text, kind, max(level or 0, 1) if kind == "heading" else level)
        page = len(self.pages)
        for n in notes:
            self.note_pages.setdefault(n, page)
        for box in boxes:
            self.container(box)
        if breaks_after:
            self.page_break()

    def _classify(  # noqa: PLR0911 - one early return per style rule
        self, ppr: ET.Element | None, text: str
    ) -> tuple[BlockKind, int | None]:
        style_id = None
        outline: int | None = None
        numbered = False
        ilvl = 0
        if ppr is not None:
            ps = ppr.find(f"{W}pStyle")
            style_id = ps.get(f"{W}val") if ps is not None else None
            ol = ppr.find(f"{W}outlineLvl")
            if ol is not None and (ol.get(f"{W}val") or "").isdigit():
                outline = int(ol.get(f"{W}val", "9"))
            num = ppr.find(f"{W}numPr")
            if num is not None:
                num_id = num.find(f"{W}numId")
                numbered = num_id is None or num_id.get(f"{W}val") != "0"
                lvl = num.find(f"{W}ilvl")
                val = lvl.get(f"{W}val", "0") if lvl is not None else "0"
                ilvl = int(val) if val.isdigit() else 0
        seen = 0
        sid = style_id
        while sid is not None and sid in self.styles and seen < 10:
            st = self.styles[sid]
            name = st.name.lower()
            if name == "title":
                return "heading", 0
            m = _HEADING_STYLE.match(name)
            if m:
                return "heading", int(m.group(1))
            if outline is None and st.outline is not None:
                outline = st.outline
            numbered = numbered or st.numbered
            sid, seen = st.based_on, seen + 1
        if style_id is not None and style_id.lower() == "title" and not self.styles:
            return "heading", 0
        if style_id is not None and not self.styles:
            m = _HEADING_STYLE.match(style_id.replace("Heading", "heading "))
            if m:
                return "heading", int(m.group(1))
        if outline is not None and outline < 9 and len(text) < 300:
            return "heading", outline + 1
        if numbered:
            return "list_item", ilvl + 1
        return "paragraph", None


def _collect(el: ET.Element, parts: list[str], boxes: list[ET.Element], notes: list[str]) -> bool:
    """Append the run text under ``el``; return True if a page break was seen."""
    page_break = False
    for child in el:
        tag = child.tag
        if tag == f"{W}t":
            parts.append(child.text or "")
        elif tag in (f"{W}tab", f"{W}ptab"):
            parts.append("\t")
        elif tag in (f"{W}br", f"{W}cr"):
            if child.get(f"{W}type") == "page":
                page_break = True
            else:
                parts.append("\n")
        elif tag == f"{W}noBreakHyphen":
            parts.append("-")
        elif tag == f"{W}txbxContent":
            boxes.append(child)
        elif tag in (f"{W}footnoteReference", f"{W}endnoteReference"):
            note_id = child.get(f"{W}id", "")
            kind = "f" if tag == f"{W}footnoteReference" else "e"
            notes.append(kind + note_id)
            parts.append(f"[{note_id}]")
        elif tag in (f"{MC}Fallback", f"{W}del", f"{W}moveFrom", f"{W}pPr", f"{W}rPr"):
            continue
        elif tag in (f"{W}p", f"{W}tbl"):
            boxes.append(child)  # block content nested in a run-level container
        else:
            page_break = _collect(child, parts, boxes, notes) or page_break
    return page_break


def _paragraphs(el: ET.Element) -> Iterator[ET.Element]:
    for child in el:
        if child.tag == f"{W}p":
            yield child
        elif child.tag != f"{MC}Fallback":
            yield from _paragraphs(child)


def _plain(el: ET.Element, sep: str = " ") -> str:
    """Text of the paragraphs inside a container (cell, note, header part)."""
    texts = []
    for p in _paragraphs(el):
        parts: list[str] = []
        _collect(p, parts, [], [])
        texts.append("".join(parts).strip())
    return sep.join(t for t in texts if t)


def _table_text(tbl: ET.Element) -> str:
    rows = []
    for tr in tbl.iter(f"{W}tr"):
        cells = [_plain(tc).replace("\n", " ") for tc in tr.findall(f"{W}tc")]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _notes(pkg: _Package, part: str, prefix: str, kind_tag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for note in pkg.xml(part).iter(f"{W}{kind_tag}"):
        if note.get(f"{W}type") in ("separator", "continuationSeparator", "continuationNotice"):
            continue
        text = _plain(note)
        if text:
            out[prefix + note.get(f"{W}id", "")] = text
    return out


def _core_title(pkg: _Package) -> str | None:
    if not pkg.has("docProps/core.xml"):
        return None
    try:
        root = pkg.xml("docProps/core.xml")
    except ParseError:
        return None
    el = root.find("{http://purl.org/dc/elements/1.1/}title")
    return (el.text or "").strip() or None if el is not None else None


def _main_part(pkg: _Package) -> str:
    for type_suffix, path in pkg.rels("").values():
        if type_suffix == "officeDocument" and pkg.has(path):
            return path
    if pkg.has("word/document.xml"):
        return "word/document.xml"
    raise ParseError("corrupt_file", "no main document part in the package")


def parse_docx(data: bytes) -> ParsedDocument:
    pkg = _Package(data)
    main = _main_part(pkg)
    rels = pkg.rels(main)
    walker = _Walker(styles=_styles(pkg, rels))
    root = pkg.xml(main)
    body = root.find(f"{W}body")
    if body is None:
        raise ParseError("corrupt_file", "the document has no body")
    walker.container(body)
    pages = walker.pages
    if len(pages) > 1 and not pages[-1]:
        pages.pop()
    # headers and footers (repeated on every page: kept once, on page 1)
    seen: set[str] = set()
    headers: list[Block] = []
    footers: list[Block] = []
    notes: dict[str, str] = {}
    for type_suffix, path in sorted(rels.values()):
        if not pkg.has(path):
            continue
        if type_suffix in ("header", "footer"):
            text = _plain(pkg.xml(path), sep="\n")
            if text and text not in seen:
                seen.add(text)
                kind: BlockKind = "header" if type_suffix == "header" else "footer"
                (headers if kind == "header" else footers).append(Block(text, kind))
        elif type_suffix == "footnotes":
            notes.update(_notes(pkg, path, "f", "footnote"))
        elif type_suffix == "endnotes":
            notes.update(_notes(pkg, path, "e", "endnote"))
    pages[0][:0] = headers
    pages[0].extend(footers)
    for key, text in notes.items():
        page = min(walker.note_pages.get(key, len(pages)), len(pages))
        pages[page - 1].append(Block(f"[{key[1:]}] {text}", "footnote"))
    title = _core_title(pkg) or walker.title
    if title is None:
        title = next((b.text for p in pages for b in p if b.kind == "heading"), None)
    doc = ParsedDocument(
        media_type=DOCX,
        pages=[Page(number=i + 1, blocks=blocks) for i, blocks in enumerate(pages)],
        title=title,
    )
    return require_text(doc)
