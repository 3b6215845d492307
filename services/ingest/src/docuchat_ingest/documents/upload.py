"""Streaming multipart upload: the body is parsed as it arrives, so an oversized file is refused
as soon as it crosses the limit instead of after it has been buffered.

Only the ``file`` part is kept (hashed while it streams); other parts are discarded unread.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import PurePath

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from docuchat_common.errors import PayloadTooLarge, Unprocessable

FIELD = "file"
# Multipart framing (boundaries, part headers) on top of the file itself: a Content-Length
# above the limit plus this much cannot carry a file under the limit.
FRAMING_SLACK = 64 * 1024
MAX_FILENAME = 255


@dataclass(frozen=True, slots=True)
class UploadedFile:
    filename: str
    content_type: str
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the file exceeds the upload limit of {limit} bytes",
        code="file_too_large",
        extra={"max_upload_bytes": limit},
    )


def boundary_of(content_type: str) -> bytes:
    ctype, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise Unprocessable(
            "the upload must be multipart/form-data with a `file` part", code="invalid_multipart"
        )
    return boundary


def check_content_length(header: str | None, limit: int) -> None:
    """An early 413 when the declared body size already rules the file out."""
    if header is None:
        return
    try:
        declared = int(header)
    except ValueError:
        return
    if declared > limit + FRAMING_SLACK:
        raise too_large(limit)


def clean_filename(raw: str) -> str:
    # Only the last path component, whatever separator the client used.
    name = PurePath(raw.replace("\\", "/")).name.strip()
    name = "".join(ch for ch in name if ch.isprintable())
    if not name:
        raise Unprocessable("the `file` part has no file name", code="file_required")
    return name[-MAX_FILENAME:]


class _Collector:
    """python_multipart callbacks that keep the ``file`` part and enforce the size limit."""

    def __init__(self, limit: int, on_size: Callable[[int], None] | None) -> None:
        self.limit = limit
        self.on_size = on_size
        self.files = 0
        self.done = False
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._current: bytearray | None = None
        self._filename = ""
        self._ctype = ""
        self._hash = hashlib.sha256()
        self.result: UploadedFile | None = None

    def on_part_begin(self) -> None:
        self._headers = {}
        self._current = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = b""
        self._value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") != FIELD.encode():
            return  # another form field: skipped
        self.files += 1
        if self.files > 1:
            raise Unprocessable("send one `file` part per upload", code="too_many_files")
        raw_name = options.get(b"filename")
        if raw_name is None:
            raise Unprocessable("the `file` part is not a file", code="file_required")
        self._filename = clean_filename(raw_name.decode("utf-8", "replace"))
        self._ctype = self._headers.get(b"content-type", b"").decode("latin-1").strip()
        self._current = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            return
        chunk = data[start:end]
        size = len(self._current) + len(chunk)
        if size > self.limit:
            raise too_large(self.limit)
        if self.on_size is not None:
            self.on_size(size)
        self._current += chunk
        self._hash.update(chunk)

    def on_part_end(self) -> None:
        if self._current is not None and self.result is None:
            self.result = UploadedFile(
                filename=self._filename,
                content_type=self._ctype,
                data=bytes(self._current),
                sha256=self._hash.hexdigest(),
            )
        self._current = None

    def on_end(self) -> None:
        self.done = True


async def read_file_part(
    stream: AsyncIterator[bytes],
    content_type: str,
    *,
    limit: int,
    on_size: Callable[[int], None] | None = None,
) -> UploadedFile:
    """Parse a multipart body as it streams; return its ``file`` part.

    Raises 413 ``file_too_large`` once the file passes ``limit`` bytes (or when ``on_size``,
    called with the running size, raises), 422 ``file_required`` without a ``file`` part and
    422 ``invalid_multipart`` for a malformed body.
    """
    collector = _Collector(limit, on_size)
    parser = MultipartParser(
        boundary_of(content_type),
        {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_end": collector.on_end,
        },
    )
    try:
        async for chunk in stream:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise Unprocessable(
            f"the multipart body is malformed: {exc}", code="invalid_multipart"
        ) from exc
    if collector.result is None:
        raise Unprocessable("the upload has no `file` part", code="file_required")
    if not collector.done:
        raise Unprocessable("the multipart body is incomplete", code="invalid_multipart")
    return collector.result
