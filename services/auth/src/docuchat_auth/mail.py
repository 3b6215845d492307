"""Sending email: a port with a development adapter and an SMTP adapter.

Development (and tests) never send anything: each message is logged (without its secret
content) and appended as one JSON line to a file a newcomer or a test can read
(``.docuchat/mail/outbox.jsonl`` by default). Production uses SMTP (aiosmtplib).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from docuchat_common.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    kind: str  # email_code | password_reset | invite
    sent_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


class MailSender(Protocol):
    async def send(self, mail: Mail) -> None: ...


class FileMailSender:
    """Dev/test adapter: one JSON line per message in ``path``; the log says where."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def send(self, mail: Mail) -> None:
        async with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps(asdict(mail)) + "\n"
            await asyncio.to_thread(self._append, line)
        # The body holds the secret (a code, a link): the log only says where to read it.
        log.info(
            "mail written (dev)",
            to=mail.to,
            subject=mail.subject,
            kind=mail.kind,
            file=str(self.path),
        )

    def _append(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)


class SmtpMailSender:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.use_tls = use_tls

    async def send(self, mail: Mail) -> None:
        import aiosmtplib

        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.text)
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            start_tls=self.use_tls,
            timeout=15,
        )
        log.info("mail sent", to=mail.to, subject=mail.subject, kind=mail.kind)


def read_mails(path: Path) -> list[Mail]:
    """What the dev adapter wrote (tests, and a newcomer's `docuchat` session)."""
    if not path.exists():
        return []
    return [Mail(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
