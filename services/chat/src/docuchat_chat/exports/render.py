"""A session as a file: JSON, plain text, Markdown, or PDF (PyMuPDF), citations included."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from typing import Any

from docuchat_chat.sessions.schemas import CitationOut, MessageOut, SessionOut

SPEAKER = {"user": "You", "assistant": "Assistant"}


def _source(citation: CitationOut) -> str:
    page = f", page {citation.page}" if citation.page is not None else ""
    return f"[{citation.number}] {citation.filename}{page}"


def _title(session: SessionOut) -> str:
    return session.title or "Chat"


def to_json(session: SessionOut, messages: Sequence[MessageOut]) -> bytes:
    return json.dumps(
        {
            "session": session.model_dump(mode="json"),
            "messages": [m.model_dump(mode="json") for m in messages],
        },
        indent=2,
        ensure_ascii=False,
    ).encode()


def to_text(session: SessionOut, messages: Sequence[MessageOut]) -> bytes:
    lines = [_title(session), "=" * len(_title(session)), ""]
    for message in messages:
        stamp = message.created_at.isoformat(timespec="seconds")
        lines.append(f"{SPEAKER[message.role]} ({stamp}):")
        lines.append(message.content)
        if message.citations:
            lines.append("Sources:")
            lines.extend(f"  {_source(c)}: {c.text.strip()}" for c in message.citations)
        lines.append("")
    return "\n".join(lines).encode()


def to_markdown(session: SessionOut, messages: Sequence[MessageOut]) -> bytes:
    lines = [f"# {_title(session)}", ""]
    for message in messages:
        stamp = message.created_at.isoformat(timespec="seconds")
        lines += [f"## {SPEAKER[message.role]} ({stamp})", "", message.content, ""]
        if message.citations:
            lines.append("**Sources**")
            lines.append("")
            for c in message.citations:
                quote = " ".join(c.text.split())
                lines.append(f"- {_source(c)}: {quote}")
            lines.append("")
    return "\n".join(lines).encode()


def to_pdf(session: SessionOut, messages: Sequence[MessageOut]) -> bytes:
    """Laid out by PyMuPDF's Story (HTML → pages, wrapping and page breaks included)."""
    import pymupdf as _pymupdf

    # PyMuPDF ships partial annotations; used through Any to keep mypy strict elsewhere.
    pymupdf: Any = _pymupdf
    parts = [f"<h1>{html.escape(_title(session))}</h1>"]
    for message in messages:
        stamp = message.created_at.isoformat(timespec="seconds")
        parts.append(f"<h3>{SPEAKER[message.role]} ({stamp})</h3>")
        parts.append(f"<p>{html.escape(message.content)}</p>")
        if message.citations:
            items = "".join(
                f"<li>{html.escape(_source(c))}: {html.escape(' '.join(c.text.split()))}</li>"
                for c in message.citations
            )
            parts.append(f"<p><b>Sources</b></p><ul>{items}</ul>")
    story = pymupdf.Story(html="".join(parts), user_css="body {font-family: sans-serif;}")
    buffer = io.BytesIO()
    writer = pymupdf.DocumentWriter(buffer)
    page = pymupdf.paper_rect("a4")
    where = pymupdf.Rect(page.x0 + 50, page.y0 + 50, page.x1 - 50, page.y1 - 50)
    more = True
    while more:
        device = writer.begin_page(page)
        more, _ = story.place(where)
        story.draw(device)
        writer.end_page()
    writer.close()
    return buffer.getvalue()
