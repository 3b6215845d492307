"""Exports of a session with its citations: JSON, text, Markdown and a PDF (read back with
PyMuPDF), each a download with a filename."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pymupdf
import pytest

from tests.chat.answering.test_ask import DISTANCE_EDUCATION, UNANSWERABLE
from tests.chat.conftest import ChatService, Corpus
from tests.fakes.openai_server import CITED_ANSWER


@pytest.fixture
async def conversation(chat: ChatService, corpus: Corpus) -> dict[str, Any]:
    user = uuid.uuid4()
    session = await chat.new_session(
        corpus.tenant_id, user, corpus.knowledge_base_id, title="Copyright: distance ed."
    )
    for question in (DISTANCE_EDUCATION, UNANSWERABLE):
        answered = await chat.ask(corpus.tenant_id, user, session["id"], question)
        assert answered.status_code == 201, answered.text
    return {"user": user, "session": session}


async def export(
    chat: ChatService, corpus: Corpus, conversation: dict[str, Any], fmt: str
) -> tuple[bytes, str, str]:
    response = await chat.client.get(
        f"/api/v1/sessions/{conversation['session']['id']}/export",
        params={"format": fmt},
        headers=chat.headers(corpus.tenant_id, conversation["user"]),
    )
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="copyright-distance-ed.{fmt}"'
    return response.content, response.headers["content-type"], disposition


def text_of_pdf(data: bytes) -> str:
    with pymupdf.open(stream=data, filetype="pdf") as document:
        return " ".join(page.get_text() for page in document)


@pytest.mark.parametrize("fmt", ["txt", "md", "pdf"])
async def test_text_exports_hold_the_questions_answers_and_sources(
    chat: ChatService, corpus: Corpus, conversation: dict[str, Any], fmt: str
) -> None:
    data, media_type, _ = await export(chat, corpus, conversation, fmt)
    assert media_type.startswith(
        {"txt": "text/plain", "md": "text/markdown", "pdf": "application/pdf"}[fmt]
    )
    text = text_of_pdf(data) if fmt == "pdf" else data.decode()
    flat = " ".join(text.split())
    for expected in (
        DISTANCE_EDUCATION,
        CITED_ANSWER,
        UNANSWERABLE,
        "[1] pdfminer-dmca.pdf, page",
        "distance education",
    ):
        assert expected in flat, (fmt, expected)


async def test_the_json_export_is_the_session_and_its_messages(
    chat: ChatService, corpus: Corpus, conversation: dict[str, Any]
) -> None:
    data, media_type, _ = await export(chat, corpus, conversation, "json")
    assert media_type == "application/json"
    exported = json.loads(data)
    assert exported["session"]["id"] == conversation["session"]["id"]
    listed = await chat.messages(corpus.tenant_id, conversation["user"], exported["session"]["id"])
    assert exported["messages"] == listed
    assert exported["messages"][1]["citations"][0]["document_id"] == corpus.dmca_id


async def test_an_unknown_format_is_refused(
    chat: ChatService, corpus: Corpus, conversation: dict[str, Any]
) -> None:
    refused = await chat.client.get(
        f"/api/v1/sessions/{conversation['session']['id']}/export",
        params={"format": "docx"},
        headers=chat.headers(corpus.tenant_id, conversation["user"]),
    )
    assert refused.status_code == 422
