"""The test SMTP server itself: it records, and fails when told to."""

from __future__ import annotations

import smtplib

import pytest

from tests.smtpserver import TestSMTPServer

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


def send(server: TestSMTPServer, to: str = "b@example.org") -> None:
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.sendmail("a@example.org", [to], MESSAGE)


def test_records_what_it_accepts(smtp_server: TestSMTPServer) -> None:
    send(smtp_server)
    [received] = smtp_server.messages
    assert received.mail_from == "a@example.org"
    assert received.rcpt_tos == ["b@example.org"]
    assert received.message["Subject"] == "hi"


def test_fails_a_chosen_command_for_a_chosen_address(smtp_server: TestSMTPServer) -> None:
    smtp_server.fail("RCPT", 550, "5.1.1 No such user", match="gone@")
    send(smtp_server, "here@example.org")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        send(smtp_server, "gone@example.org")
    assert info.value.recipients["gone@example.org"] == (550, b"5.1.1 No such user")
    assert [m.rcpt_tos for m in smtp_server.messages] == [["here@example.org"]]


def test_fails_only_as_many_times_as_told(smtp_server: TestSMTPServer) -> None:
    smtp_server.fail("DATA", 451, "4.3.0 Try later", times=1)
    with pytest.raises(smtplib.SMTPDataError):
        send(smtp_server)
    send(smtp_server)
    assert len(smtp_server.messages) == 1


def test_drops_the_connection(smtp_server: TestSMTPServer) -> None:
    smtp_server.drop("MAIL")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp_server)
    assert smtp_server.messages == []


def test_stalls(smtp_server: TestSMTPServer) -> None:
    smtp_server.stall("MAIL", 2.0)
    with (
        smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=0.5) as client,
        pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"),
    ):
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
