"""ZIP uploads: each supported file becomes a document; an unsafe archive is refused whole and
leaves nothing behind; a bad entry is skipped with its reason and sinks none of its siblings."""

from __future__ import annotations

import io
import random
import stat
import uuid
import zipfile

import pytest
from sqlalchemy import func, select

from docuchat_common.errors import DocuChatError
from docuchat_ingest.blobs import LocalBlobStore
from docuchat_ingest.documents.archive import ArchiveLimits, read_archive
from docuchat_ingest.models import Document, outbox
from tests.ingest.conftest import IngestService
from tests.ingest.test_documents import (
    DOCX_FILE,
    ENCRYPTED_PDF,
    KB,
    MD_FILE,
    PDF_FILE,
    _kb,
    _stored,
)

LIMITS = ArchiveLimits(
    max_entries=10, max_entry_bytes=5_000_000, max_total_bytes=8_000_000, max_ratio=200
)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def make_zip(*entries: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def refusal(data: bytes, limits: ArchiveLimits = LIMITS) -> tuple[int, str]:
    with pytest.raises(DocuChatError) as caught:
        read_archive(data, limits)
    return caught.value.status, caught.value.code


def test_entries_come_out_with_their_paths_and_os_droppings_are_ignored() -> None:
    data = make_zip(
        ("reports/q3.md", b"# Q3\nrevenue grew"),
        ("__MACOSX/reports/._q3.md", b"\x00\x05junk"),
        ("reports/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("notes.txt", b"plain notes"),
    )
    entries = read_archive(data, LIMITS)
    assert [(e.filename, e.data) for e in entries] == [
        ("reports/q3.md", b"# Q3\nrevenue grew"),
        ("notes.txt", b"plain notes"),
    ]


@pytest.mark.parametrize(
    "name", ["../escape.txt", "a/../../escape.txt", "/etc/passwd.txt", "C:/windows/x.txt"]
)
def test_a_path_that_escapes_the_archive_refuses_it(name: str) -> None:
    assert refusal(make_zip(("fine.txt", b"fine"), (name, b"evil"))) == (422, "unsafe_archive")


def test_a_symlink_entry_refuses_the_archive() -> None:
    link = zipfile.ZipInfo("link.txt")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert refusal(make_zip((link, b"/etc/passwd"))) == (422, "unsafe_archive")


def test_archives_inside_archives_are_refused_by_name_and_by_bytes() -> None:
    inner = make_zip(("a.txt", b"inner"))
    assert refusal(make_zip(("inner.zip", inner))) == (422, "nested_archive")
    assert refusal(make_zip(("inner.txt", inner))) == (422, "nested_archive")
    # A DOCX is a ZIP too, and welcome.
    assert [e.filename for e in read_archive(make_zip(("w.docx", DOCX_FILE.read_bytes())), LIMITS)]


def test_limits_on_entries_size_and_expansion() -> None:
    many = make_zip(*[(f"f{i}.txt", b"text %d" % i) for i in range(11)])
    assert refusal(many) == (422, "too_many_entries")

    # 20 MB of zeros deflate to ~20 KB: a ratio near 1000 is a bomb, whatever the sizes.
    bomb = make_zip(("zeros.txt", bytes(20_000_000)))
    roomy = ArchiveLimits(
        max_entries=10, max_entry_bytes=10**9, max_total_bytes=10**9, max_ratio=200
    )
    assert refusal(bomb, roomy) == (422, "archive_bomb")

    big = random.Random(7).randbytes(3_000_000)  # incompressible
    assert refusal(make_zip(("a.txt", big), ("b.txt", big), ("c.txt", big))) == (
        413,
        "archive_too_large",
    )
    one_big = ArchiveLimits(
        max_entries=10, max_entry_bytes=1_000_000, max_total_bytes=10**9, max_ratio=1000
    )
    assert refusal(make_zip(("a.txt", big)), one_big) == (413, "file_too_large")


def test_lying_sizes_encryption_and_garbage() -> None:
    # zipfile cannot write encrypted entries: set the "encrypted" bit in both headers by hand.
    plain = bytearray(make_zip(("secret.txt", b"not really encrypted")))
    local, central = plain.index(b"PK\x03\x04"), plain.index(b"PK\x01\x02")
    plain[local + 6] |= 0x1
    plain[central + 8] |= 0x1
    assert refusal(bytes(plain)) == (422, "encrypted_document")
    assert refusal(b"PK\x03\x04" + bytes(200)) == (422, "corrupt_file")
    assert refusal(b"%PDF-1.4 not a zip") == (422, "corrupt_file")
    assert refusal(make_zip()) == (422, "empty_archive")


async def _count(ingest: IngestService, tenant: uuid.UUID) -> tuple[int, int]:
    async with ingest.runtime.database.transaction() as session:
        documents = await session.scalar(
            select(func.count()).select_from(Document).where(Document.tenant_id == tenant)
        )
        events = await session.scalar(
            select(func.count())
            .select_from(outbox)
            .where(
                outbox.c.event_type == "document.uploaded",
                outbox.c.payload["tenant_id"].astext == str(tenant),
            )
        )
    return int(documents or 0), int(events or 0)


async def test_a_zip_upload_queues_each_supported_file_and_reports_the_rest(
    ingest: IngestService, blobs: LocalBlobStore
) -> None:
    tenant = uuid.uuid4()
    kb_id = await _kb(ingest, tenant)
    archive = make_zip(
        ("papers/minimal.pdf", PDF_FILE.read_bytes()),
        ("papers/word.docx", DOCX_FILE.read_bytes()),
        ("spec.md", MD_FILE.read_bytes()),
        ("picture.png", PNG),
        ("locked.pdf", ENCRYPTED_PDF.read_bytes()),
    )

    async def upload() -> dict[str, object]:
        response = await ingest.client.post(
            f"{KB}/{kb_id}/documents",
            files={"file": ("bundle.zip", archive, "application/zip")},
            headers=ingest.as_user(tenant),
        )
        assert response.status_code in (200, 202), response.text
        body: dict[str, object] = response.json()
        body["_status"] = response.status_code
        return body

    first = await upload()
    assert first["_status"] == 202
    assert first["duplicate"] is False
    archive_out = first["archive"]
    assert isinstance(archive_out, dict)
    assert (archive_out["filename"], archive_out["media_type"]) == ("bundle.zip", "application/zip")
    documents = first["documents"]
    assert isinstance(documents, list)
    # The top-level fields are the first document's, so a client reading only `id` gets one
    # that resolves.
    assert (first["id"], first["filename"]) == (documents[0]["id"], "papers/minimal.pdf")
    assert [(d["filename"], d["media_type"], d["status"]) for d in documents] == [
        ("papers/minimal.pdf", "application/pdf", "queued"),
        (
            "papers/word.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "queued",
        ),
        ("spec.md", "text/markdown", "queued"),
    ]
    skipped = first["skipped"]
    assert isinstance(skipped, list)
    assert {s["filename"]: s["code"] for s in skipped} == {
        "picture.png": "unsupported_media_type",
        "locked.pdf": "encrypted_document",
    }
    assert await _count(ingest, tenant) == (3, 3)
    assert len(_stored(blobs, tenant)) == 3

    again = await upload()
    assert again["_status"] == 200
    assert again["duplicate"] is True
    assert [d["id"] for d in again["documents"]] == [d["id"] for d in documents]  # type: ignore[attr-defined]
    assert await _count(ingest, tenant) == (3, 3)


async def test_an_unsafe_zip_is_refused_whole_and_leaves_nothing(
    ingest: IngestService, blobs: LocalBlobStore
) -> None:
    tenant = uuid.uuid4()
    kb_id = await _kb(ingest, tenant)
    for name, archive, status, code in [
        (
            "traversal.zip",
            make_zip(("ok.md", MD_FILE.read_bytes()), ("../../evil.md", b"# evil")),
            422,
            "unsafe_archive",
        ),
        (
            "bomb.zip",
            make_zip(("ok.md", MD_FILE.read_bytes()), ("zeros.txt", bytes(20_000_000))),
            422,
            "archive_bomb",
        ),
        ("only-pictures.zip", make_zip(("a.png", PNG)), 422, "empty_archive"),
    ]:
        response = await ingest.client.post(
            f"{KB}/{kb_id}/documents",
            files={"file": (name, archive, "application/zip")},
            headers=ingest.as_user(tenant),
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code
    assert await _count(ingest, tenant) == (0, 0)
    assert _stored(blobs, tenant) == []
