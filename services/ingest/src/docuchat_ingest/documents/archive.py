"""Safe reading of an uploaded ZIP archive: each supported entry becomes a document.

Nothing is written to disk: entries are read into memory through ``zipfile`` with their real
(not declared) sizes counted while they decompress, so a lying central directory cannot get
past the limits. What refuses the whole archive (nothing of it is stored):

- a path that escapes the archive (absolute, ``..``, a drive letter) or a symlink entry
  -> 422 ``unsafe_archive``;
- an archive inside the archive (``.zip``/``.jar``/``.7z``/... or ZIP bytes that are not a
  Word document) -> 422 ``nested_archive``;
- more than ``max_entries`` files -> 422 ``too_many_entries``;
- an entry that expands more than ``max_ratio`` times its compressed size -> 422
  ``archive_bomb``;
- more than ``max_total_bytes`` once expanded, or an entry over the per-file limit -> 413
  ``archive_too_large`` / ``file_too_large``;
- an encrypted archive -> 422 ``encrypted_document``; an unreadable one -> 422 ``corrupt_file``;
- no supported entry at all -> 422 ``empty_archive``.

An entry of an unsupported type, or one that is itself broken (an encrypted PDF, say), does
not sink its siblings: it is reported back as skipped, with its code, and the rest are stored.
Folders and OS droppings (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``) are ignored silently.
"""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from docuchat_common.errors import PayloadTooLarge, Unprocessable
from docuchat_ingest.parsing.detect import ZIP_MAGIC

ZIP_MEDIA_TYPE = "application/zip"
ARCHIVE_EXTENSIONS = frozenset(
    {".zip", ".jar", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst"}
)
_IGNORED_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_READ_CHUNK = 64 * 1024
MAX_ENTRY_NAME = 255


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_entries: int
    max_entry_bytes: int
    max_total_bytes: int
    max_ratio: float


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    filename: str  # the entry's path inside the archive, e.g. "reports/q3.pdf"
    data: bytes


def is_archive(filename: str) -> bool:
    """A ``.zip`` upload (its bytes are checked when it is opened)."""
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower() == ".zip"


def read_archive(data: bytes, limits: ArchiveLimits) -> list[ArchiveEntry]:
    """The archive's files, in archive order, after every safety check above passed."""
    if not data.startswith(ZIP_MAGIC):
        raise Unprocessable("the .zip file is not a ZIP archive", code="corrupt_file")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
        raise Unprocessable("the ZIP archive cannot be read", code="corrupt_file") from exc
    with archive:
        members = [info for info in archive.infolist() if _is_file(info)]
        for info in members:
            _check_member(info)
        if len(members) > limits.max_entries:
            raise Unprocessable(
                f"the archive holds {len(members)} files (limit {limits.max_entries})",
                code="too_many_entries",
                extra={"max_entries": limits.max_entries},
            )
        entries: list[ArchiveEntry] = []
        total = 0
        for info in members:
            content = _read_member(archive, info, limits, already=total)
            total += len(content)
            entries.append(ArchiveEntry(entry_name(info.filename), content))
    if not entries:
        raise Unprocessable("the archive holds no files", code="empty_archive")
    return entries


def entry_name(raw: str) -> str:
    name = "/".join(part for part in raw.replace("\\", "/").split("/") if part)
    name = "".join(ch for ch in name if ch.isprintable())
    return name[-MAX_ENTRY_NAME:]


def _is_file(info: zipfile.ZipInfo) -> bool:
    if info.is_dir():
        return False
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if any(p.lower() == "__macosx" for p in parts):
        return False
    return not (parts and parts[-1].lower() in _IGNORED_NAMES)


def _check_member(info: zipfile.ZipInfo) -> None:
    raw = info.filename
    path = PurePosixPath(raw.replace("\\", "/"))
    if (
        raw.startswith(("/", "\\"))
        or ".." in path.parts
        or (len(raw) > 1 and raw[1] == ":")
        or "\x00" in raw
    ):
        raise Unprocessable(f"the archive entry {raw!r} escapes the archive", code="unsafe_archive")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise Unprocessable(f"the archive entry {raw!r} is a symbolic link", code="unsafe_archive")
    if info.flag_bits & 0x1:
        raise Unprocessable("the ZIP archive is encrypted", code="encrypted_document")
    if path.suffix.lower() in ARCHIVE_EXTENSIONS:
        raise Unprocessable(
            f"the archive entry {raw!r} is itself an archive", code="nested_archive"
        )


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ArchiveLimits, *, already: int
) -> bytes:
    """The entry's bytes, counted as they inflate: the declared sizes are not trusted."""
    ceiling = max(info.compress_size, 1) * limits.max_ratio
    out = bytearray()
    try:
        with archive.open(info) as member:
            while chunk := member.read(_READ_CHUNK):
                out += chunk
                if len(out) > limits.max_entry_bytes:
                    raise PayloadTooLarge(
                        f"the archive entry {info.filename!r} exceeds the file limit of "
                        f"{limits.max_entry_bytes} bytes",
                        code="file_too_large",
                        extra={"max_upload_bytes": limits.max_entry_bytes},
                    )
                if already + len(out) > limits.max_total_bytes:
                    raise PayloadTooLarge(
                        f"the archive expands past {limits.max_total_bytes} bytes",
                        code="archive_too_large",
                        extra={"max_archive_bytes": limits.max_total_bytes},
                    )
                if len(out) > ceiling and len(out) > _READ_CHUNK:
                    raise Unprocessable(
                        f"the archive entry {info.filename!r} expands more than "
                        f"{limits.max_ratio:g} times: refused as a decompression bomb",
                        code="archive_bomb",
                    )
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise Unprocessable(
            f"the archive entry {info.filename!r} cannot be read", code="corrupt_file"
        ) from exc
    except RuntimeError as exc:  # zipfile: "File ... is encrypted, password required"
        raise Unprocessable("the ZIP archive is encrypted", code="encrypted_document") from exc
    data = bytes(out)
    if data.startswith(ZIP_MAGIC) and not info.filename.lower().endswith(".docx"):
        raise Unprocessable(
            f"the archive entry {info.filename!r} is itself an archive", code="nested_archive"
        )
    return data
