"""`newsroom dev-smtp`: a local SMTP server (aiosmtpd) that keeps every message in a Maildir.

With no relay configured, the whole flow still runs on a fresh machine: the default settings
(smtp.host localhost, port 8025) point here. Nothing is ever delivered anywhere.
"""

from __future__ import annotations

import mailbox
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsroom.errors import NewsroomError

# How `newsroom dev-smtp` greets: the one relay a real mailing with placeholder settings may go
# to (delivery/readiness.py asks).
DEV_SMTP_NAME = "newsroom-dev-smtp"


class MaildirHandler:
    """Stores each accepted message, with its envelope in Return-Path and X-Envelope-To."""

    def __init__(self, path: Path) -> None:
        self.maildir = mailbox.Maildir(path, create=True)
        self.count = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        responses.insert(-1, "250-PIPELINING")  # aiosmtpd reads pipelined commands in order
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        head = f"Return-Path: <{envelope.mail_from}>\r\n".encode()
        head += "".join(f"X-Envelope-To: <{r}>\r\n" for r in envelope.rcpt_tos).encode()
        self.maildir.add(head + content)
        self.count += 1
        return "250 OK stored"


class DevSMTP:
    """The server: `start()`, `stop()`; messages land in MAILDIR/new."""

    def __init__(self, maildir: Path, host: str = "127.0.0.1", port: int = 8025) -> None:
        self.maildir = maildir
        self.host = host
        self.port = port
        self.handler = MaildirHandler(maildir)
        self._controller: Controller | None = None

    def start(self) -> DevSMTP:
        controller = _Controller(self.handler, hostname=self.host, port=self.port)
        try:
            controller.start()
        except (OSError, RuntimeError) as exc:
            controller.loop.close()
            raise NewsroomError(
                f"cannot listen on {self.host}:{self.port}: {exc} (is another server using the "
                "port? choose one with --port)"
            ) from None
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class _Controller(Controller):
    def factory(self) -> Any:
        # SMTPUTF8 (RFC 6531), as a modern relay offers it: mail to a UTF-8 local part is kept.
        # The name it greets with tells a real mailing with placeholder settings (readiness.py)
        # that nothing leaves this machine.
        return SMTP(self.handler, hostname=DEV_SMTP_NAME, decode_data=False, enable_SMTPUTF8=True)
