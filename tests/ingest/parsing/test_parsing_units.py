"""Synthetic inputs: type detection, limits, hostile packages, Markdown and text details."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import pymupdf as _pymupdf
import pytest

from docuchat_ingest.parsing import (
    DOCX,
    MARKDOWN,
    PDF,
    TEXT,
    ParseError,
    detect_media_type,
    parse_document,
)
from docuchat_ingest.parsing import pdf as pdf_parsing

pymupdf: Any = _pymupdf  # partially annotated library
W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
    "</Relationships>"
)


def _docx(body: str, extra: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("_rels/.rels", RELS)
        zf.writestr(
            "word/document.xml",
            f'<?xml version="1.0"?><w:document xmlns:w="{W_NS}"><w:body>{body}</w:body>'
            "</w:document>",
        )
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return buf.getvalue()


def _p(text: str, style: str | None = None) -> str:
    ppr = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{ppr}<w:r><w:t>{text}</w:t></w:r></w:p>"


def _pdf(pages: int, text: str = "hello world") -> bytes:
    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page()
        page.insert_text((72, 72), f"{text} {i + 1}")
    data: bytes = doc.tobytes()
    doc.close()
    return data


def _code(data: bytes, filename: str, media_type: str = "") -> str:
    with pytest.raises(ParseError) as err:
        parse_document(data, filename=filename, media_type=media_type)
    return err.value.code


def test_detect_media_type() -> None:
    assert detect_media_type(_pdf(1), "a.PDF") == PDF
    assert detect_media_type(_docx(_p("x")), "a.docx") == DOCX
    assert detect_media_type(b"hello", "a.txt") == TEXT
    assert detect_media_type(b"# hi", "a.md") == MARKDOWN
    assert detect_media_type(b"# hi", "a.markdown") == MARKDOWN


def test_type_mismatches_have_stable_codes() -> None:
    assert _code(_docx(_p("x")), "a.pdf") == "unsupported_media_type"  # a ZIP named .pdf
    assert _code(_pdf(1), "a.docx") == "unsupported_media_type"
    assert _code(_pdf(1), "a.txt") == "unsupported_media_type"
    assert _code(b"just text", "a.pdf") == "corrupt_file"  # claims PDF, is not one
    assert _code(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "a.docx") == (
        "encrypted_document"
    )
    assert _code(b"hello", "a.exe") == "unsupported_media_type"
    assert _code(b"\x00\x01\x02\x03binary\xff\xfe\x00\x00\x07", "a.txt") == (
        "unsupported_media_type"
    )
    assert _code(b"", "a.txt") == "no_extractable_text"
    assert _code(b"", "a.pdf") == "no_extractable_text"
    assert _code(b"PK\x03\x04broken", "a.docx") == "corrupt_file"
    xlsx = io.BytesIO()
    with zipfile.ZipFile(xlsx, "w") as zf:
        zf.writestr("xl/workbook.xml", "<workbook/>")
    assert _code(xlsx.getvalue(), "a.docx") == "unsupported_media_type"


def test_declared_media_type_must_agree() -> None:
    pdf = _pdf(1)
    assert parse_document(pdf, filename="a.pdf", media_type="application/octet-stream").text
    assert parse_document(pdf, filename="a.pdf", media_type="application/pdf").text
    assert parse_document(b"# x", filename="a.md", media_type="text/plain; charset=utf-8").text
    assert _code(pdf, "a.pdf", media_type=DOCX) == "unsupported_media_type"


def test_pdf_limits_and_encryption() -> None:
    assert parse_document(_pdf(3), filename="a.pdf").page_count == 3
    with pytest.raises(ParseError) as err:
        parse_document(_pdf(3), filename="a.pdf", max_pages=2)
    assert err.value.code == "too_many_pages"

    doc = pymupdf.open(stream=_pdf(1), filetype="pdf")
    secret = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    assert _code(secret, "a.pdf") == "encrypted_document"
    open_pdf = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner")
    assert "hello world 1" in parse_document(open_pdf, filename="a.pdf").text

    truncated = _pdf(2)[:200]
    assert _code(truncated, "a.pdf") in {"corrupt_file", "no_extractable_text"}
    blank = pymupdf.open()
    blank.new_page()
    assert _code(blank.tobytes(), "a.pdf") == "no_extractable_text"


def test_docx_structure() -> None:
    styles = (
        f'<w:styles xmlns:w="{W_NS}">'
        '<w:style w:styleId="Heading1"><w:name w:val="heading 1"/></w:style>'
        '<w:style w:styleId="Heading2"><w:name w:val="heading 2"/></w:style>'
        "</w:styles>"
    )
    doc_rels = (
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/styles" Target="styles.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/image" Target="http://attacker.example/x.png" TargetMode="External"/>'
        "</Relationships>"
    )
    body = (
        _p("Intro", "Heading1")
        + _p("Details", "Heading2")
        + _p("Body text")
        + '<w:p><w:pPr><w:numPr><w:ilvl w:val="1"/><w:numId w:val="3"/></w:numPr></w:pPr>'
        "<w:r><w:t>nested item</w:t></w:r></w:p>"
        "<w:tbl><w:tr><w:tc>" + _p("a") + "</w:tc><w:tc>" + _p("b") + "</w:tc></w:tr></w:tbl>"
        '<w:p><w:r><w:t>before</w:t><w:br w:type="page"/></w:r></w:p>'
        + _p("Next", "Heading1")
        + _p("after")
    )
    doc = parse_document(
        _docx(body, {"word/styles.xml": styles, "word/_rels/document.xml.rels": doc_rels}),
        filename="t.docx",
    )
    blocks = doc.blocks()
    assert [(b.kind, b.text, b.heading_path, b.level) for b in blocks] == [
        ("heading", "Intro", ("Intro",), 1),
        ("heading", "Details", ("Intro", "Details"), 2),
        ("paragraph", "Body text", ("Intro", "Details"), None),
        ("list_item", "nested item", ("Intro", "Details"), 2),
        ("table", "a | b", ("Intro", "Details"), None),
        ("paragraph", "before", ("Intro", "Details"), None),
        ("heading", "Next", ("Next",), 1),
        ("paragraph", "after", ("Next",), None),
    ]
    assert doc.page_count == 2
    assert doc.pages[1].blocks[0].text == "Next"


def test_docx_refuses_dtds_and_bombs() -> None:
    evil = (
        '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&x;</w:t></w:r></w:p>'
        "</w:body></w:document>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("_rels/.rels", RELS)
        zf.writestr("word/document.xml", evil)
    assert _code(buf.getvalue(), "x.docx") == "corrupt_file"

    bomb = _docx(_p("x"), {"word/media/zeros.bin": "\0" * (210 * 1024 * 1024)})
    assert len(bomb) < 1024 * 1024
    assert _code(bomb, "x.docx") == "corrupt_file"

    broken_xml = _docx("<w:p><w:r><w:t>unclosed")
    assert _code(broken_xml, "x.docx") == "corrupt_file"


def test_markdown_blocks() -> None:
    md = (
        "---\ntitle: Front\n---\n"
        "Top\n===\n\nintro para\nsecond line\n\n"
        "## Sub ##\n\n- one\n- two\n\n"
        "```python\n# not a heading\n\nx = 1\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n***\n\n"
        "Other\n-----\ntext\n"
    )
    doc = parse_document(md.encode(), filename="x.md")
    assert doc.title == "Front"
    got = [(b.kind, b.text, b.heading_path) for b in doc.blocks()]
    assert got == [
        ("heading", "Top", ("Top",)),
        ("paragraph", "intro para\nsecond line", ("Top",)),
        ("heading", "Sub", ("Top", "Sub")),
        ("list_item", "- one", ("Top", "Sub")),
        ("list_item", "- two", ("Top", "Sub")),
        ("paragraph", "```python\n# not a heading\n\nx = 1\n```", ("Top", "Sub")),
        ("table", "| a | b |\n|---|---|\n| 1 | 2 |", ("Top", "Sub")),
        ("heading", "Other", ("Top", "Other")),
        ("paragraph", "text", ("Top", "Other")),
    ]


def test_text_paragraphs_and_boms() -> None:
    doc = parse_document("één\r\n\r\ntwee\r\ndrie\n\n\n".encode("utf-16"), filename="x.txt")
    assert [b.text for b in doc.blocks()] == ["één", "twee\ndrie"]
    assert parse_document("Grüße".encode("cp1252"), filename="x.txt").text == "Grüße"
    assert parse_document(b"\xef\xbb\xbfhi", filename="x.txt").text == "hi"
    assert _code(b"   \n\n  ", "x.txt") == "no_extractable_text"


def _ruled_page(
    rules: Sequence[tuple[float, float, float, float]], words: Mapping[str, tuple[float, float]]
) -> Any:
    doc = pymupdf.open()
    page = doc.new_page()
    for x0, y0, x1, y1 in rules:
        page.draw_line((x0, y0), (x1, y1))
    for word, at in words.items():
        page.insert_text(at, word, fontsize=9)
    return pymupdf.open("pdf", doc.tobytes())[0]


def _grid(xs: list[float], ys: list[float]) -> list[tuple[float, float, float, float]]:
    return [(xs[0], y, xs[-1], y) for y in ys] + [(x, ys[0], x, ys[-1]) for x in xs]


CELLS = {"Name": (105, 117), "Role": (205, 117), "Ada": (105, 137), "Owner": (205, 137)}


def test_a_ruled_table_is_searched_and_kept() -> None:
    page = _ruled_page(_grid([100, 200, 300], [100, 120, 140]), CELLS)
    assert pdf_parsing._grid_box(page) is not None
    assert [text for _, text in pdf_parsing._tables(page)] == ["| Name | Role |\n| Ada | Owner |"]
    # Two rules and columns that run on below the second: a finder may close the table with
    # the columns' ends (a corpus PDF's table is so drawn), so the search is left to it.
    page = _ruled_page(
        [(100, 100, 300, 100), (100, 120, 300, 120)]
        + [(x, 100, x, 145) for x in (100, 150, 200, 250, 300)],
        CELLS,
    )
    assert pdf_parsing._grid_box(page) is not None


def test_lines_that_cannot_make_a_table_are_not_searched_for_one() -> None:
    # A ruled header row over unruled rows: only one row of cells.
    header_only = _ruled_page(_grid([100, 150, 200, 250, 300], [100, 120]), CELLS)
    # A diagram: framed boxes side by side, each one cell (the finder's search costs tens of
    # milliseconds a page and would find nothing to keep).
    boxes = [rule for x in (100, 220, 340) for rule in _grid([x, x + 100], [100, 140])]
    diagram = _ruled_page(boxes, {"Input": (110, 125), "Model": (230, 125), "Output": (350, 125)})
    for page in (header_only, diagram):
        assert pdf_parsing._grid_box(page) is None
        assert pdf_parsing._tables(page) == []
