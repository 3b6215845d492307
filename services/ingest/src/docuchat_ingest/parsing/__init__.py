"""Document parsing for the ingest pipeline: bytes in, pages of typed blocks out.

``parse_document`` is pure (no I/O besides the bytes it is given) and raises ``ParseError``
with a stable ``code`` for every input it cannot turn into text.
"""

from __future__ import annotations

from docuchat_ingest.parsing.detect import detect_media_type
from docuchat_ingest.parsing.model import (
    DOCX,
    MARKDOWN,
    PDF,
    SUPPORTED_MEDIA_TYPES,
    TEXT,
    Block,
    BlockKind,
    ErrorCode,
    Page,
    ParsedDocument,
    ParseError,
)

_GENERIC = {"", "application/octet-stream", "binary/octet-stream"}
_TEXTUAL = {TEXT, MARKDOWN, "text/x-markdown"}


def load_parsers() -> None:
    """Import every format's parser now (PyMuPDF's import costs seconds), so that the first
    document of each kind does not wait for it."""
    import docuchat_ingest.parsing.docx
    import docuchat_ingest.parsing.markdown
    import docuchat_ingest.parsing.pdf
    import docuchat_ingest.parsing.text  # noqa: F401


def parse_document(
    data: bytes, *, filename: str, media_type: str = "", max_pages: int = 500
) -> ParsedDocument:
    """Parse an uploaded file.

    The type comes from the magic bytes and must agree with the extension of ``filename``
    (``detect_media_type``). ``media_type`` is the client's declared type: generic values are
    ignored, text/plain and text/markdown are interchangeable, any other disagreement with the
    detected type is ``unsupported_media_type``.
    """
    detected = detect_media_type(data, filename)
    declared = media_type.split(";", 1)[0].strip().lower()
    if (
        declared not in _GENERIC
        and declared != detected
        and not (declared in _TEXTUAL and detected in _TEXTUAL)
    ):
        raise ParseError(
            "unsupported_media_type", f"declared {declared!r} but the content is {detected!r}"
        )
    if detected == PDF:
        from docuchat_ingest.parsing.pdf import parse_pdf

        return parse_pdf(data, max_pages=max_pages)
    if detected == DOCX:
        from docuchat_ingest.parsing.docx import parse_docx

        doc = parse_docx(data)
    elif detected == MARKDOWN:
        from docuchat_ingest.parsing.markdown import parse_markdown

        doc = parse_markdown(data)
    else:
        from docuchat_ingest.parsing.text import parse_text

        doc = parse_text(data)
    if doc.page_count > max_pages:
        raise ParseError("too_many_pages", f"{doc.page_count} pages (limit {max_pages})")
    return doc


__all__ = [
    "DOCX",
    "MARKDOWN",
    "PDF",
    "SUPPORTED_MEDIA_TYPES",
    "TEXT",
    "Block",
    "BlockKind",
    "ErrorCode",
    "Page",
    "ParseError",
    "ParsedDocument",
    "detect_media_type",
    "load_parsers",
    "parse_document",
]
