"""Parsing in a child process: same result, a time budget that ends a runaway parse, and a
fresh child afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docuchat_ingest.parsing import ParseError, parse_document
from docuchat_ingest.pipeline.sandbox import ParserSandbox

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
DMCA = CORPUS / "docs" / "pdf" / "text" / "pdfminer-dmca.pdf"


@pytest.fixture
def sandbox() -> Iterator[ParserSandbox]:
    sandbox = ParserSandbox(timeout_seconds=60)
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
