"""parse_document over the real files of ../shared/corpus (read in place, never copied)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from docuchat_ingest.parsing import DOCX, MARKDOWN, PDF, TEXT, ParsedDocument, parse_document
from docuchat_ingest.parsing.model import ParseError

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
STABLE_CODES = {
    "encrypted_document",
    "no_extractable_text",
    "corrupt_file",
    "unsupported_media_type",
    "too_many_pages",
}
# Valid DOCX files that really contain no text (checked: no w:t element in any part).
EMPTY_DOCX = {
    "mammoth-empty.docx",
    "pythondocx-having-images.docx",
    "pythondocx-no-styles-part.docx",
    "pythondocx-tbl-having-tables.docx",
}
# Image-only scans: no text layer at all.
IMAGE_ONLY = {"ocrmypdf-c02-22-huckfinn.pdf", "ocrmypdf-francais.pdf", "ocrmypdf-linn.pdf"}


def _files(*folders: str, top_level_only: bool = False) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        base = CORPUS / folder
        pattern = "*" if top_level_only else "**/*"
        out += sorted(p for p in base.glob(pattern) if p.is_file())
    return out


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CORPUS)) for p in paths]


def _parse(path: Path) -> ParsedDocument:
    return parse_document(path.read_bytes(), filename=path.name, media_type="")


def test_corpus_is_present() -> None:
    assert (CORPUS / "MANIFEST.tsv").is_file(), CORPUS


GOOD = _files(
    "docs/pdf/text",
    "docs/pdf/multicolumn",
    "docs/pdf/tables",
    "docs/md",
    "docs/txt",
) + _files("docs/docx", top_level_only=True)


@pytest.mark.parametrize("path", GOOD, ids=_ids(GOOD))
def test_good_documents_parse_to_text(path: Path) -> None:
    if path.name in EMPTY_DOCX:
        with pytest.raises(ParseError) as err:
            _parse(path)
        assert err.value.code == "no_extractable_text"
        return
    doc = _parse(path)
    assert doc.text.strip()
    assert doc.page_count == len(doc.pages) >= 1
    assert [p.number for p in doc.pages] == list(range(1, doc.page_count + 1))
    assert doc.media_type in {PDF, DOCX, TEXT, MARKDOWN}
    for block in doc.blocks():
        assert block.text.strip()  # (markdown code keeps its indentation)
        assert block.kind in {
            "heading",
            "paragraph",
            "list_item",
            "table",
            "header",
            "footer",
            "footnote",
        }


ENCRYPTED = _files("docs/pdf/encrypted", "docs/docx/encrypted")


@pytest.mark.parametrize("path", ENCRYPTED, ids=_ids(ENCRYPTED))
def test_encrypted_documents(path: Path) -> None:
    if path.name == "pypdf-r2-owner-password-only.pdf":
        # owner password only: opens with the empty user password, so it is readable
        assert _parse(path).text.strip()
        return
    with pytest.raises(ParseError) as err:
        _parse(path)
    assert err.value.code == "encrypted_document"


BAD = _files("docs/pdf/malformed", "docs/docx/malformed", "docs/pdf/scanned")


@pytest.mark.parametrize("path", BAD, ids=_ids(BAD))
def test_malformed_and_scanned_fail_cleanly(path: Path) -> None:
    try:
        doc = _parse(path)
    except ParseError as err:
        assert err.code in STABLE_CODES  # noqa: PT017 - either outcome is allowed
        if path.name in IMAGE_ONLY:
            assert err.code == "no_extractable_text"  # noqa: PT017
        return
    # recoverable damage (or a scan with a hidden OCR layer) parses to real text
    assert path.name not in IMAGE_ONLY
    assert doc.text.strip()


HOSTILE = _files("security")


@pytest.mark.parametrize("path", HOSTILE, ids=_ids(HOSTILE))
def test_hostile_inputs_never_crash(path: Path) -> None:
    names = [path.name]
    if path.suffix in {".ooxml", ".xlsx", ".xml"}:
        names.append(path.stem + ".docx")  # also push the package through the DOCX reader
    for name in names:
        try:
            doc = parse_document(path.read_bytes(), filename=name)
        except ParseError as err:
            assert err.code in STABLE_CODES  # noqa: PT017 - either outcome is allowed
        else:
            assert doc.page_count >= 1


def test_xxe_payload_is_refused_not_resolved() -> None:
    data = (CORPUS / "security/xxe/poi-PackageRelsHasEntities.ooxml").read_bytes()
    with pytest.raises(ParseError) as err:
        parse_document(data, filename="x.docx")
    assert err.value.code == "corrupt_file"


# -- known content -----------------------------------------------------------------------


def test_docx_heading_paths() -> None:
    doc = _parse(CORPUS / "docs/docx/pandoc-headers.docx")
    assert doc.title == "A Test of Headers"
    blocks = doc.blocks()
    headings = [(b.level, b.text) for b in blocks if b.kind == "heading"]
    assert headings[:3] == [(1, "A Test of Headers"), (2, "Second Level"), (3, "Third level")]
    para = next(b for b in blocks if b.text == "Some plain text.")
    assert para.heading_path == ("A Test of Headers", "Second Level")
    fifth = [b for b in blocks if b.kind == "paragraph" and "Fifth level" in b.heading_path]
    assert fifth[0].heading_path == (
        "A Test of Headers",
        "Second Level",
        "Third level",
        "Fourth level",
        "Fifth level",
    )


def test_docx_tables_lists_notes_headers() -> None:
    tables = [b for b in _parse(CORPUS / "docs/docx/pandoc-tables.docx").blocks()]
    table = next(b for b in tables if b.kind == "table")
    assert table.text.splitlines()[0] == "Name | Game | Fame | Blame"
    assert "Lebron James | Basketball | Very High | Leaving Cleveland" in table.text

    items = [b for b in _parse(CORPUS / "docs/docx/mammoth-simple-list.docx").blocks()]
    assert [(b.kind, b.text) for b in items] == [("list_item", "Apple"), ("list_item", "Banana")]

    notes = [b for b in _parse(CORPUS / "docs/docx/pandoc-notes.docx").blocks()]
    assert any(b.kind == "footnote" and "My note." in b.text for b in notes)

    hf = _parse(CORPUS / "docs/docx/poi-DiffFirstPageHeadFoot.docx")
    kinds = {(b.kind, b.text) for b in hf.blocks()}
    assert ("header", "I am the header on the first page, and I\u2019m nice and simple") in kinds
    assert ("footer", "The footer of the first page") in kinds
    assert hf.page_count == 2  # explicit page break
    assert hf.pages[1].blocks[0].text.startswith("This is page two.")


def test_docx_strict_text_box_and_tracked_insertions() -> None:
    assert _parse(CORPUS / "docs/docx/mammoth-strict-ooxml.docx").text == "Test"
    assert "Datum plane" in _parse(CORPUS / "docs/docx/mammoth-text-box.docx").text
    ins = _parse(CORPUS / "docs/docx/pandoc-track_changes_insertion.docx").text
    assert ins == "This is a text with two exciting insertions."


def test_pdf_table_rows() -> None:
    grid = _parse(CORPUS / "docs/pdf/tables/pdfminer-issue-369-excel.pdf")
    assert [b.kind for b in grid.blocks()] == ["table"]
    assert grid.text.splitlines() == ["| 1 | 2 | 3 |", "| 4 | 5 | 6 |", "| 7 | 8 | 9 |"]

    tagged = _parse(CORPUS / "docs/pdf/text/pdfplumber-word365-tagged.pdf")
    table = next(b for b in tagged.blocks() if b.kind == "table")
    assert "| Ligne1 | Alouette | Farfadet |" in table.text.splitlines()
    # the table's words are not repeated as paragraphs
    assert not any("Alouette" in b.text for b in tagged.blocks() if b.kind != "table")
    assert tagged.title == "Titre"
    items = [b.text for b in tagged.blocks() if b.kind == "list_item"]
    assert items == [
        "\u2022 Liste",
        "\u2022 Liste 2",
        "\u2022 Liste 3",
        "1. Liste num\u00e9rot\u00e9e",
        "2. Liste num\u00e9rot\u00e9e",
    ]


def _index(text: str, needle: str) -> int:
    i = text.find(needle)
    assert i >= 0, needle
    return i


def test_pdf_two_columns_are_read_column_by_column() -> None:
    doc = _parse(CORPUS / "docs/pdf/multicolumn/pyPdf-026-latex-multicolumn.pdf")
    assert doc.page_count == 3
    page = doc.pages[0].text
    # left column (top to bottom) comes entirely before the right column
    left_top = _index(page, "This is a sample document with two columns")
    left_bottom = _index(page, "Nulla malesuada porttitor diam")
    right_top = _index(page, "pellentesque ante. Phasellus adipiscing")
    assert left_top < left_bottom < right_top
    assert doc.title == "Two-Column Document with Lorem Ipsum"


def test_pdf_three_columns_with_footnotes() -> None:
    doc = _parse(CORPUS / "docs/pdf/multicolumn/pdfplumber-federal-register-2020-17221.pdf")
    page = doc.pages[1].text
    col1 = _index(page, "These effects include stall warning")
    col2 = _index(page, "On November 7, 2018, the FAA issued")
    col3 = _index(page, "To address the unsafe condition")
    assert col1 < col2 < col3
    # running header and the printer's line at the bottom are marked, not mixed into the text
    blocks = doc.pages[1].blocks
    assert blocks[0].kind == "header"
    assert blocks[0].text.startswith("47699 Federal Register")
    assert blocks[-1].kind == "footer"
    assert blocks[-1].text.startswith("VerDate")


def test_pdf_pages_and_headings() -> None:
    doc = _parse(CORPUS / "docs/pdf/multicolumn/pdfjs-tracemonkey.pdf")
    assert doc.page_count == 14
    title = "Trace-based Just-in-Time Type Specialization for Dynamic Languages"
    assert doc.title == title
    intro = next(b for b in doc.pages[0].blocks if b.text.startswith("Dynamic languages such as"))
    assert intro.heading_path[-1] == "Abstract"
    dmca = _parse(CORPUS / "docs/pdf/text/pdfminer-dmca.pdf")  # empty user password
    assert dmca.page_count == 18


def test_pdf_text_without_unicode_mapping_is_left_out() -> None:
    """Most pages of this paper use fonts without a Unicode mapping: PyMuPDF reads their
    glyphs as U+FFFD. Only the readable text is kept (the garbage would fill chunks with
    unknown tokens and surface in searches)."""
    doc = _parse(CORPUS / "docs/pdf/text/pdfjs-TAMReview.pdf")
    assert doc.page_count == 23
    assert "Overview of the Technology Acceptance Model" in doc.text
    assert doc.text.count("\ufffd") < 0.05 * len(doc.text)


@pytest.mark.parametrize(
    ("name", "word"),
    [
        ("encodings/chardet-iso-8859-1.txt", "Vielä"),
        ("encodings/chardet-windows-1252.txt", "Arkadiewitsch"),
        ("encodings/chardet-koi8-r.txt", "гимназии"),
        ("encodings/chardet-windows-1251-russian.txt", "гимназии"),
        ("encodings/chardet-iso-8859-7-greek.txt", "διαδικτυακός"),
        ("encodings/chardet-shift_jis.txt", "マルチン・ルター"),
        ("encodings/chardet-euc-jp.txt", "アプリケーション"),
        ("encodings/chardet-big5.txt", "維基大典"),
        ("encodings/chardet-utf16le-nobom.txt", "DateTime,Bid,Ask"),
        ("encodings/chardet-utf32le-nobom.txt", "DateTime,Bid,Ask"),
        ("utf8/chardet-utf8-bom.txt", "コンソール"),
        ("utf8/chardet-utf8-greek.txt", "ελληνική"),
    ],
)
def test_text_encodings(name: str, word: str) -> None:
    doc = _parse(CORPUS / "docs/txt" / name)
    assert word in doc.text
    assert "\ufffd" not in doc.text
    assert doc.page_count == 1


def test_markdown_headings_and_code_fences() -> None:
    doc = _parse(CORPUS / "docs/md/commonmark-spec.md")
    assert doc.title == "CommonMark Spec"
    blocks = doc.blocks()
    tabs = next(b for b in blocks if b.kind == "heading" and b.text == "Tabs")
    assert tabs.heading_path == ("Preliminaries", "Tabs")
    # fenced examples stay whole: a block that opens a fence also closes it
    fences = [b for b in blocks if re.match(r"^`{3,}", b.text)]
    assert fences
    assert all(b.text.splitlines()[-1].startswith("```") for b in fences[:50])
