"""The dev-smtp server: every message kept whole in a Maildir, with its envelope."""

from __future__ import annotations

import mailbox
import smtplib
from email import message_from_bytes, policy
from pathlib import Path

from newsroom.mail.devsmtp import DevSMTP
from tests.smtpserver import free_port

RAW = (
    "Subject: =?utf-8?b?Q2Fmw6k=?=\r\nMIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ".a line with a dot\r\n.\r\nCafé €\r\n"
).encode()


def test_messages_land_in_the_maildir(tmp_path: Path) -> None:
    server = DevSMTP(tmp_path / "outbox", port=free_port()).start()
    try:
        with smtplib.SMTP(server.host, server.port) as client:
            client.ehlo()
            assert client.has_extn("pipelining")
            client.sendmail("bounces+1-ab@example.org", ["ann@example.net", "bob@example.net"], RAW)
            client.sendmail("bounces+2-cd@example.org", ["cy@example.net"], RAW)
    finally:
        server.stop()
    assert server.handler.count == 2
    stored = sorted(mailbox.Maildir(tmp_path / "outbox"), key=lambda m: m["Return-Path"])
    first = message_from_bytes(stored[0].as_bytes(), policy=policy.default)
    assert first["Return-Path"] == "<bounces+1-ab@example.org>"
    assert first.get_all("X-Envelope-To") == ["<ann@example.net>", "<bob@example.net>"]
    assert first["Subject"] == "Café"
    assert first.get_content() == ".a line with a dot\n.\nCafé €\n"
    assert (tmp_path / "outbox" / "new").is_dir()


def test_a_utf8_local_part_is_taken_with_smtputf8(tmp_path: Path) -> None:
    server = DevSMTP(tmp_path / "outbox", port=free_port()).start()
    try:
        with smtplib.SMTP(server.host, server.port) as client:
            client.ehlo()
            assert client.has_extn("smtputf8")
            client.sendmail("b@example.org", ["josé@example.net"], RAW, mail_options=["SMTPUTF8"])
    finally:
        server.stop()
    [stored] = (tmp_path / "outbox" / "new").iterdir()
    assert b"X-Envelope-To: <jos\xc3\xa9@example.net>" in stored.read_bytes()
