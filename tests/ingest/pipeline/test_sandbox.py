"""Parsing in child processes: same result, a time budget that ends a runaway parse, a fresh
child afterwards, and a large document that does not hold up a small one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from docuchat_ingest.parsing import ParseError, parse_document
from docuchat_ingest.pipeline.sandbox import ParserSandbox

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
DMCA = CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf"
# The corpus's slowest text PDF to parse (tables, two columns); the smallest one.
LARGE = CORPUS / "docs" / "pdf" / "text" / "pdfjs-TAMReview.pdf"
SMALL = CORPUS / "docs" / "pdf" / "text" / "pyPdf-001-minimal-document.pdf"


@pytest.fixture
def sandbox() -> Iterator[ParserSandbox]:
    sandbox = ParserSandbox(timeout_seconds=60, processes=2)
    yield sandbox
    sandbox.close()


async def test_the_child_parses_like_the_parent(sandbox: ParserSandbox) -> None:
    data = DMCA.read_bytes()
    parsed = await sandbox.parse(
        data, filename=DMCA.name, media_type="application/pdf", max_pages=500
    )
    direct = parse_document(data, filename=DMCA.name, media_type="application/pdf")
    assert parsed.page_count == direct.page_count == 18
    assert parsed.text == direct.text


async def test_a_parse_over_its_budget_fails_and_the_next_one_gets_a_fresh_child(
    sandbox: ParserSandbox,
) -> None:
    data = DMCA.read_bytes()
    # A budget no parse can meet (the child cannot even start in time).
    sandbox.timeout_seconds = 0.01
    with pytest.raises(ParseError) as over:
        await sandbox.parse(data, filename=DMCA.name, media_type="application/pdf", max_pages=500)
    assert over.value.code == "parse_timeout"
    sandbox.timeout_seconds = 60
    parsed = await sandbox.parse(
        data, filename=DMCA.name, media_type="application/pdf", max_pages=500
    )
    assert parsed.page_count == 18


async def test_parse_errors_cross_the_process_boundary_with_their_code(
    sandbox: ParserSandbox,
) -> None:
    encrypted = CORPUS / "docs" / "pdf" / "encrypted" / "pdfminer-aes-256.pdf"
    with pytest.raises(ParseError) as failed:
        await sandbox.parse(
            encrypted.read_bytes(),
            filename=encrypted.name,
            media_type="application/pdf",
            max_pages=500,
        )
    assert failed.value.code == "encrypted_document"


async def test_a_small_document_is_not_held_up_by_a_large_one_parsing(
    sandbox: ParserSandbox,
) -> None:
    await sandbox.warm()
    finished: list[str] = []

    async def parse(path: Path) -> None:
        await sandbox.parse(
            path.read_bytes(), filename=path.name, media_type="application/pdf", max_pages=500
        )
        finished.append(path.name)

    # Tasks start in the order they are made: the large document takes a child first.
    await asyncio.gather(parse(LARGE), parse(SMALL))
    assert finished == [SMALL.name, LARGE.name]


async def test_a_child_killed_over_its_budget_leaves_the_other_childs_parse_alone(
    sandbox: ParserSandbox,
) -> None:
    data = DMCA.read_bytes()
    sandbox.timeout_seconds = 0.01
    outcomes = await asyncio.gather(
        *(
            sandbox.parse(data, filename=DMCA.name, media_type="application/pdf", max_pages=500)
            for _ in range(2)
        ),
        return_exceptions=True,
    )
    # Each parse ran out of its own time; neither saw its child die under it ("corrupt_file").
    assert [getattr(o, "code", o) for o in outcomes] == ["parse_timeout", "parse_timeout"]
    sandbox.timeout_seconds = 60
    parsed = await asyncio.gather(
        *(
            sandbox.parse(data, filename=DMCA.name, media_type="application/pdf", max_pages=500)
            for _ in range(2)
        )
    )
    assert [p.page_count for p in parsed] == [18, 18]


async def test_a_cancelled_parse_gives_its_child_back_for_the_next_document() -> None:
    sandbox = ParserSandbox(timeout_seconds=60, processes=1)
    try:
        await sandbox.warm()
        # The caller gives up mid-parse (the large document takes ~0.5 s): its parse is cancelled.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                sandbox.parse(
                    LARGE.read_bytes(),
                    filename=LARGE.name,
                    media_type="application/pdf",
                    max_pages=500,
                ),
                timeout=0.05,
            )
        # The only child is back (replaced: the abandoned parse is not finished in it).
        async with asyncio.timeout(30):
            parsed = await sandbox.parse(
                SMALL.read_bytes(), filename=SMALL.name, media_type="application/pdf", max_pages=500
            )
        assert parsed.page_count == 1
    finally:
        sandbox.close()
