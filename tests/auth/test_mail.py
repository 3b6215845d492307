"""The mail adapters: the dev file and real SMTP (a local aiosmtpd server on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from docuchat.devstack import free_port
from docuchat_auth.mail import FileMailSender, Mail, SmtpMailSender, read_mails


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, _Inbox]]:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


async def test_smtp_adapter_delivers_the_message(smtp_server: tuple[Controller, _Inbox]) -> None:
    controller, inbox = smtp_server
    sender = SmtpMailSender(
        host="127.0.0.1",
        port=controller.port,
        sender="DocuChat <no-reply@docuchat.test>",
        use_tls=False,
    )
    await sender.send(
        Mail(to="ada@example.com", subject="Your code", text="123456", kind="email_code")
    )
    [envelope] = inbox.messages
    assert envelope.rcpt_tos == ["ada@example.com"]
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == "Your code"
    assert message.get_payload().strip() == "123456"


async def test_dev_adapter_appends_readable_lines(tmp_path: Path) -> None:
    sender = FileMailSender(tmp_path / "mail" / "outbox.jsonl")
    await sender.send(Mail(to="a@example.com", subject="one", text="x", kind="invite"))
    await sender.send(Mail(to="b@example.com", subject="two", text="y", kind="password_reset"))
    assert [(m.to, m.kind) for m in read_mails(sender.path)] == [
        ("a@example.com", "invite"),
        ("b@example.com", "password_reset"),
    ]
