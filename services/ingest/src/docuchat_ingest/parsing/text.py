"""Plain text: encoding detection (BOMs, UTF-8, UTF-16/32 without BOM, charset-normalizer)."""

from __future__ import annotations

import codecs
import re

from docuchat_ingest.parsing.detect import text_nul_encoding
from docuchat_ingest.parsing.model import (
    TEXT,
    Block,
    Page,
    ParsedDocument,
    ParseError,
    require_text,
)

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")


# Single-byte Latin code pages charset-normalizer may pick for mostly-ASCII Western text
# (e.g. hp_roman8 or mac_roman for a Finnish ISO-8859-1 file); Windows-1252 is far more likely.
_LATIN_FAMILY = frozenset(
    {
        "mac_roman", "hp_roman8", "cp1250", "cp1252", "latin_1", "iso8859_15", "iso8859_2",
        "iso8859_3", "iso8859_4", "iso8859_9", "iso8859_10", "iso8859_13", "iso8859_14",
        "iso8859_16", "cp437", "cp850", "cp852", "cp858", "cp775", "cp1254", "cp1257",
        "mac_latin2", "mac_iceland", "cp860", "cp861", "cp863", "cp865",
    }
)  # fmt: skip
SHORT_TEXT = 256
# punctuation and symbols of Windows-1252 (0x80-0xBF) and the no-break space
_CP1252_PUNCT = frozenset(bytes(range(0x80, 0xC0)).decode("cp1252", errors="ignore"))


def _plausible_cp1252(data: bytes) -> bool:
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return all(c.isalpha() or c in _CP1252_PUNCT for c in text if ord(c) > 127)


def detect_encoding(data: bytes) -> tuple[str, int]:
    """Return (encoding, number of BOM bytes to skip)."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name, len(bom)
    if b"\x00" in data[:4096]:  # ASCII-range UTF-16/32 is also valid UTF-8: check NULs first
        nul = text_nul_encoding(data[:4096])
        if nul is not None:
            return nul, 0
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8", 0
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError("unsupported_media_type", "could not determine the text encoding")
    # too little text to tell code pages apart, or a Latin look-alike: Windows-1252 wins
    if (best.encoding in _LATIN_FAMILY or len(data) < SHORT_TEXT) and _plausible_cp1252(data):
        return "cp1252", 0
    return best.encoding, 0


def decode_text(data: bytes) -> str:
    encoding, skip = detect_encoding(data)
    text = data[skip:].decode(encoding, errors="replace")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def parse_text(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    blocks = [
        Block(text=para.strip(), kind="paragraph")
        for para in _BLANK_LINES.split(text)
        if para.strip()
    ]
    return require_text(ParsedDocument(media_type=TEXT, pages=[Page(number=1, blocks=blocks)]))
