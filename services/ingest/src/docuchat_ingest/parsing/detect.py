"""Media type detection from magic bytes, checked against the file name's extension.

Policy (stable codes):
- a known format under the wrong extension (a ``.pdf`` that is really a ZIP, a ``.docx``
  that is really a PDF, another ZIP/OOXML such as ``.xlsx``, binary bytes named ``.txt``)
  -> ``unsupported_media_type``;
- a ``.pdf``/``.docx`` whose bytes match no known format (garbage, a truncated header, a ZIP
  whose central directory is unreadable) -> ``corrupt_file``;
- an OLE2/CFB container named ``.docx`` is how Office stores an encrypted (password) DOCX
  -> ``encrypted_document``;
- an empty (or whitespace-only) file -> ``no_extractable_text``;
- an extension outside .pdf/.docx/.txt/.text/.md/.markdown -> ``unsupported_media_type``.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import PurePath

from docuchat_ingest.parsing.model import DOCX, MARKDOWN, PDF, TEXT, ParseError

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
EXTENSIONS = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".txt": TEXT,
    ".text": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
}
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def _extension_type(filename: str) -> str:
    ext = PurePath(filename).suffix.lower()
    if ext not in EXTENSIONS:
        raise ParseError(
            "unsupported_media_type", f"unsupported file extension {ext or '(none)'!r}"
        )
    return EXTENSIONS[ext]


def _zip_kind(data: bytes) -> str:
    """'docx', 'other' (a readable ZIP that is not a Word document) or 'corrupt'."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
        return "corrupt"
    if any(n.startswith("word/") for n in names):
        return "docx"
    return "other"


def looks_binary(sample: bytes) -> bool:
    """True if bytes cannot be text (NULs that are not UTF-16/32 padding, control bytes)."""
    if not sample:
        return False
    if sample.startswith(_BOMS) or sample.startswith((b"\x00\x00\xfe\xff",)):
        return False
    if b"\x00" in sample:
        return text_nul_encoding(sample) is None
    controls = sum(1 for b in sample if b < 9 or 13 < b < 32)
    return controls > len(sample) * 0.05


def text_nul_encoding(sample: bytes) -> str | None:
    """Guess UTF-16/32 without BOM from the positions of NUL bytes (None if no pattern)."""
    n = len(sample) - len(sample) % 4
    if n < 4:
        return None
    s = sample[:n]
    quads = n // 4
    zero = [sum(1 for i in range(k, n, 4) if s[i] == 0) for k in range(4)]
    if zero[1] >= 0.9 * quads and zero[2] >= 0.9 * quads and zero[3] >= 0.9 * quads:
        return "utf-32-le"
    if zero[0] >= 0.9 * quads and zero[1] >= 0.9 * quads and zero[2] >= 0.9 * quads:
        return "utf-32-be"
    odd = zero[1] + zero[3]
    even = zero[0] + zero[2]
    if odd >= 0.6 * 2 * quads and even < 0.1 * 2 * quads:
        return "utf-16-le"
    if even >= 0.6 * 2 * quads and odd < 0.1 * 2 * quads:
        return "utf-16-be"
    return None


def detect_media_type(data: bytes, filename: str) -> str:
    """Return the media type of ``data``; raise ParseError if magic and extension disagree."""
    declared = _extension_type(filename)
    if not data.strip(b" \t\r\n\x00"):
        raise ParseError("no_extractable_text", "the file is empty")
    head = data[:1024]
    if b"%PDF-" in head:  # the spec tolerates junk before the header
        if declared != PDF:
            raise ParseError("unsupported_media_type", f"a PDF named {filename!r}")
        return PDF
    if data.startswith(ZIP_MAGIC):
        kind = _zip_kind(data)
        if declared == DOCX:
            if kind == "corrupt":
                raise ParseError("corrupt_file", "the DOCX is not a readable ZIP archive")
            if kind == "other":
                raise ParseError(
                    "unsupported_media_type", "a ZIP archive that is not a Word document"
                )
            return DOCX
        raise ParseError("unsupported_media_type", f"a ZIP archive named {filename!r}")
    if data.startswith(OLE_MAGIC):
        if declared == DOCX:
            raise ParseError("encrypted_document", "the DOCX is encrypted (OLE2 container)")
        raise ParseError("unsupported_media_type", "an OLE2 (legacy Office) file")
    if declared in (PDF, DOCX):
        raise ParseError("corrupt_file", f"{filename!r} does not start like a {declared} file")
    if looks_binary(data[:4096]):
        raise ParseError("unsupported_media_type", f"{filename!r} is binary, not text")
    return declared
