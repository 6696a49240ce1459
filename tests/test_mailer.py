"""Bulk messages as a real SMTP server receives them: headers, MIME, QP, DKIM; pool outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest

from newsroom.mail import messages
from newsroom.mail.dkim import Signer
from newsroom.mail.messages import HeaderError, MessageTemplate, Recipient
from newsroom.mail.ratelimit import RateLimiter
from newsroom.mail.smtp import (
    FAIL,
    POLICY,
    RETRY,
    SENT,
    UNREACHED,
    UNSENDABLE,
    Outgoing,
    Pool,
    RelayAnswer,
    classify,
)
from newsroom.site import Site
from tests.smtpserver import TestSMTPServer, free_port

HTML = '<html><body><p>Dear {{first_name|friend}},</p>\n<p>Café society — “quotes” €</p>\n<a href="{{unsubscribe_url}}">Leave</a></body></html>\n'
TEXT = "Dear {{first_name|friend}},\n\n.a line starting with a dot\n.\nÇa va? {{email}}\nLeave: {{unsubscribe_url}}\n"


def template(**kwargs: object) -> MessageTemplate:
    defaults: dict[str, object] = {
        "subject": "Save our socialists — “now”",
        "text": TEXT,
        "html": HTML,
        "sender": ("Campaign News", "news@example.org"),
        "list_id": "Campaign News <news.example.org>",
        "unsubscribe_mailto": "bounces+tok@example.org?subject=unsubscribe",
        "message_id_domain": "example.org",
    }
    defaults.update(kwargs)
    return MessageTemplate(**defaults)  # type: ignore[arg-type]


def recipient(email: str = "ann@example.net", name: str = "Ann Émile Smith") -> Recipient:
    return Recipient(email, name, f"https://news.example.org/unsubscribe/TOKEN-{email}", "")


def build(t: MessageTemplate, r: Recipient) -> bytes:
    return t.build(r, messages.new_message_id("example.org"), messages.DateHeader().date())


def send(site: Site, items: list[Outgoing], connections: int = 2) -> list[RelayAnswer]:
    outcomes: list[RelayAnswer] = []

    async def run() -> None:
        pool = Pool(site.config, connections=connections, limiter=RateLimiter(1e6))
        await pool.send_all(iter(items), outcomes.append)
        await pool.close()

    asyncio.run(run())
    return outcomes


@pytest.fixture
def relay(smtp_server: TestSMTPServer, site_dir: Path) -> Iterator[tuple[TestSMTPServer, Site]]:
    site = Site.open(site_dir)
    yield smtp_server, site
    site.close()


def test_received_message_has_every_header(relay: tuple[TestSMTPServer, Site]) -> None:
    server, site = relay
    t = template()
    data = build(t, recipient())
    outcomes = send(site, [Outgoing(1, "bounces+tok@example.org", "ann@example.net", data)])
    assert outcomes == [RelayAnswer(1, SENT, 250, "OK queued")]
    [received] = server.messages
    assert received.mail_from == "bounces+tok@example.org"
    assert received.rcpt_tos == ["ann@example.net"]
    assert received.data.rstrip(b"\r\n") == data.rstrip(b"\r\n")
    msg = received.message
    assert msg["To"] == "Ann Émile Smith <ann@example.net>"
    assert msg["From"] == "Campaign News <news@example.org>"
    assert msg["Subject"] == "Save our socialists — “now”"
    assert msg["Date"] and msg["Message-ID"].endswith("@example.org>")
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == "Campaign News <news.example.org>"
    assert msg["List-Unsubscribe"] == (
        "<https://news.example.org/unsubscribe/TOKEN-ann@example.net>, "
        "<mailto:bounces+tok@example.org?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Precedence"] == "bulk"
    assert msg.get_all("Cc") is None
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    for part in (text, html):
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content_charset() == "utf-8"
    assert text.get_content().replace("\r\n", "\n") == (
        "Dear Ann,\n\n.a line starting with a dot\n.\nÇa va? ann@example.net\n"
        "Leave: https://news.example.org/unsubscribe/TOKEN-ann@example.net\n"
    )
    assert "<p>Café society — “quotes” €</p>" in html.get_content()
    assert 'href="https://news.example.org/unsubscribe/TOKEN-ann@example.net"' in html.get_content()


def test_the_date_is_utc_as_plus_0000() -> None:
    """RFC 5322 section 3.3: "+0000" for UTC; "GMT" is an obsolete form, never generated."""
    clock = messages.DateHeader(lambda: 1_795_000_000.7)
    assert clock.date() == "Wed, 18 Nov 2026 11:06:40 +0000"
    assert b"\r\nDate: Wed, 18 Nov 2026 11:06:40 +0000\r\n" in template().build(
        recipient(), "<id@example.org>", clock.date()
    )


def test_raw_lines_are_short_crlf_and_dot_safe() -> None:
    data = build(template(text=". " * 300 + "\n" + "é" * 500), recipient())
    lines = data.split(b"\r\n")
    assert b"\n" not in b"".join(lines) and b"\r" not in b"".join(lines)
    head, body = data.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in head.split(b"\r\n")) <= 998  # RFC 5322 §2.1.1
    assert max(len(line) for line in body.split(b"\r\n")) <= 76  # RFC 2045 §6.7
    assert not any(line.startswith(b".") for line in lines)


def test_fallback_and_html_escaping() -> None:
    data = build(template(), Recipient("x@example.net", "", "https://u/?a=1&b=2"))
    msg = message_from_bytes(data, policy=policy.default)
    text, html = msg.iter_parts()
    assert text.get_content().startswith("Dear friend,")
    assert 'href="https://u/?a=1&amp;b=2"' in html.get_content()
    assert msg["To"] == "x@example.net"


def test_merge_field_in_subject_and_each_message_unique() -> None:
    t = template(subject="News for {{first_name|you}}")
    one, two = build(t, recipient()), build(t, recipient("b@example.net", ""))
    first = message_from_bytes(one, policy=policy.default)
    second = message_from_bytes(two, policy=policy.default)
    assert first["Subject"] == "News for Ann" and second["Subject"] == "News for you"
    assert first["Message-ID"] != second["Message-ID"]
    assert second["To"] == "b@example.net"


@pytest.mark.parametrize("bad", ["a\r\nBcc: x@y.z", "a\nb", "a\0b", "a\rb"])
def test_header_values_with_line_breaks_are_refused(bad: str) -> None:
    with pytest.raises(HeaderError, match="line break or NUL"):
        template(subject=bad)
    with pytest.raises(HeaderError):
        build(template(), Recipient("ann@example.net", bad, "https://u/"))
    with pytest.raises(HeaderError):
        build(template(), Recipient("ann@example.net", "Ann", "https://u/" + bad))


def test_unknown_merge_field_is_an_error() -> None:
    with pytest.raises(Exception, match="unknown merge field"):
        template(text="Hello {{surname}}")


def test_addresses_must_be_addresses_and_from_ascii_before_the_at() -> None:
    with pytest.raises(HeaderError, match="the From address must be ASCII before the @"):
        build(template(sender=("News", "nëws@example.org")), recipient())
    with pytest.raises(HeaderError, match="the To address must be an email address: 'ann'"):
        build(template(), Recipient("ann", "Ann", "https://u/"))
    with pytest.raises(HeaderError, match="not a mail domain"):
        build(template(), Recipient("ann@münchen..de", "Ann", "https://u/"))


def utf8_outgoing(email: str, name: str, t: MessageTemplate | None = None) -> Outgoing:
    data = build(t or template(), Recipient(email, name, "https://u/"))
    return Outgoing(1, "b@example.org", messages.wire_address(email), data)


def test_an_idn_domain_goes_as_an_a_label(relay: tuple[TestSMTPServer, Site]) -> None:
    """RFC 5890/5891: the domain in RCPT TO and To: as its A-label; no SMTPUTF8 needed."""
    server, site = relay
    [outcome] = send(site, [utf8_outgoing("anna@münchen.de", "Anna Lee")])
    assert outcome.kind == SENT
    [received] = server.messages
    assert received.rcpt_tos == ["anna@xn--mnchen-3ya.de"]
    assert received.mail_options == []
    assert received.raw_header(b"To") == b"To: Anna Lee <anna@xn--mnchen-3ya.de>\r\n"
    assert received.data.isascii()


def test_a_utf8_local_part_goes_with_smtputf8_when_offered(
    relay: tuple[TestSMTPServer, Site], dkim_key: tuple[bytes, bytes]
) -> None:
    """RFC 6531: MAIL FROM ... SMTPUTF8, the UTF-8 address in RCPT TO; RFC 6532: in To: too,
    the display name still an encoded word; and the DKIM signature over those bytes holds."""
    server, site = relay
    private, record = dkim_key
    t = template(signer=Signer("example.org", "news", private))
    for pipelining in (True, False):
        server.reset()
        server.pipelining = pipelining
        [outcome] = send(site, [utf8_outgoing("anna.müller@münchen.de", "Anna Müller", t)])
        assert outcome.kind == SENT
        [received] = server.messages
        assert received.mail_options == ["SMTPUTF8"]
        assert received.rcpt_tos == ["anna.müller@xn--mnchen-3ya.de"]
        assert received.raw_header(b"To") == (
            b"To: =?utf-8?q?Anna_M=C3=BCller?= <anna.m\xc3\xbcller@xn--mnchen-3ya.de>\r\n"
        )
        assert received.message["To"] == "Anna Müller <anna.müller@xn--mnchen-3ya.de>"
        assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: record)


def test_a_utf8_local_part_is_not_offered_to_a_relay_without_smtputf8(
    relay: tuple[TestSMTPServer, Site],
) -> None:
    server, site = relay
    server.smtputf8 = False
    ascii_one = Outgoing(2, "b@example.org", "ann@example.net", build(template(), recipient()))
    outcomes = send(site, [utf8_outgoing("josé@example.net", "José"), ascii_one], connections=1)
    assert outcomes == [
        RelayAnswer(
            1,
            UNSENDABLE,
            0,
            f"the relay 127.0.0.1:{server.port} does not offer SMTPUTF8 (RFC 6531), needed for "
            "an address with non-ASCII characters before the @",
        ),
        RelayAnswer(2, SENT, 250, "OK queued"),
    ]
    assert [m.rcpt_tos for m in server.messages] == [["ann@example.net"]]
    assert not any("josé" in command for command in server.commands)  # never offered


def test_dkim_signature_verifies(
    relay: tuple[TestSMTPServer, Site], dkim_key: tuple[bytes, bytes]
) -> None:
    server, site = relay
    private, record = dkim_key
    t = template(signer=Signer("example.org", "news", private))
    send(site, [Outgoing(1, "b@example.org", "ann@example.net", build(t, recipient()))])
    [received] = server.messages

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news._domainkey.example.org."
        return record

    assert dkim.verify(received.data, dnsfunc=dns)
    signature = received.message["DKIM-Signature"]
    signed = {h.strip().lower() for h in signature.split("h=")[1].split(";")[0].split(":")}
    assert {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    } <= signed
    tampered = received.data.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def items(n: int, t: MessageTemplate | None = None) -> list[Outgoing]:
    t = t or template()
    return [
        Outgoing(
            i, f"b+{i}@example.org", f"r{i}@example.net", build(t, recipient(f"r{i}@example.net"))
        )
        for i in range(n)
    ]


def test_pool_sends_many_messages_per_connection_pipelined(
    relay: tuple[TestSMTPServer, Site],
) -> None:
    server, site = relay
    before = server.connections  # the server's own start-up probe
    outcomes = send(site, items(20), connections=3)
    assert sorted(o.key for o in outcomes if o.kind == SENT) == list(range(20))
    assert server.connections - before == 3
    assert len(server.messages) == 20
    assert len(server.messages) == 20


def test_pool_without_pipelining(relay: tuple[TestSMTPServer, Site]) -> None:
    server, site = relay
    server.pipelining = False
    outcomes = send(site, items(5), connections=1)
    assert [o.kind for o in outcomes] == [SENT] * 5


def test_pool_outcomes_of_failures(relay: tuple[TestSMTPServer, Site]) -> None:
    server, site = relay
    server.fail("RCPT", 550, "5.1.1 No such user", match="r1@")
    server.fail("RCPT", 451, "4.3.0 Try again later", match="r2@")
    server.fail("RCPT", 550, "5.7.1 Sender not allowed", match="r3@")
    server.fail("DATA", 552, "5.3.4 Too much mail", match="r4@")
    server.drop("MAIL", match="b+5@")
    outcomes = {o.key: o for o in send(site, items(7), connections=1)}
    assert outcomes[0].kind == SENT and outcomes[6].kind == SENT
    assert (outcomes[1].kind, outcomes[1].answer) == (FAIL, "550 5.1.1 No such user")
    assert outcomes[2].kind == RETRY
    assert (outcomes[3].kind, outcomes[3].code) == (POLICY, 550)
    assert outcomes[4].kind == RETRY
    assert (outcomes[5].kind == RETRY and outcomes[5].code == 421) or outcomes[5].code == 0
    assert sorted(m.rcpt_tos[0] for m in server.messages) == ["r0@example.net", "r6@example.net"]


def test_pool_reconnects_after_drop_and_times_out(relay: tuple[TestSMTPServer, Site]) -> None:
    server, site = relay
    server.drop("DATA", match="r1@", times=1)
    server.stall("MAIL", 3.0, match="b+3@", times=1)
    site.config._values["smtp.timeout"] = 0.5
    outcomes = {o.key: o for o in send(site, items(5), connections=1)}
    assert [outcomes[i].kind for i in range(5)] == [SENT, RETRY, SENT, RETRY, SENT]
    assert "in time" in outcomes[3].text
    assert server.connections >= 3


def test_unreachable_relay_is_retry_not_crash(site: Site) -> None:
    site.config._values["smtp.port"] = 1
    outcomes = send(site, items(1), connections=1)
    assert outcomes[0].kind == UNREACHED and "cannot reach" in outcomes[0].text


def test_classify() -> None:
    assert classify(250, "ok") == SENT
    assert classify(421, "4.4.2 bye") == RETRY
    assert classify(552, "5.3.4 too big") == RETRY
    assert classify(554, "5.7.1 policy") == POLICY
    assert classify(550, "5.1.1 unknown") == FAIL


@pytest.fixture
def tls_relay(certificate: tuple[Path, Path]) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """An aiosmtpd relay that insists on STARTTLS and a login."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    logins: list[tuple[str, str]] = []

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        login = (data.login.decode(), data.password.decode())  # type: ignore[attr-defined]
        logins.append(login)
        return AuthResult(success=login == ("news", "s3cret"))

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    port = free_port()
    controller = Controller(
        Sink(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
        authenticator=authenticator, auth_require_tls=True, server_hostname="localhost",
    )  # fmt: skip
    controller.start()
    yield port, logins
    controller.stop()


def test_starttls_checks_the_certificate_and_logs_in(
    site: Site,
    tls_relay: tuple[int, list[tuple[str, str]]],
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, logins = tls_relay
    values = site.config._values
    values.update({"smtp.host": "localhost", "smtp.port": port, "smtp.security": "starttls"})
    values.update({"smtp.username": "news", "smtp.password": "s3cret"})
    [refused] = send(site, items(1), connections=1)  # a certificate nobody vouches for
    assert refused.kind == UNREACHED and "CERTIFICATE_VERIFY_FAILED" in refused.text
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    assert [o.kind for o in send(site, items(2), connections=1)] == [SENT, SENT]
    assert logins[-1] == ("news", "s3cret")
    values.update({"smtp.password": "wrong", "smtp.timeout": 2})
    [denied] = send(site, items(1), connections=1)
    assert denied.kind == UNREACHED and logins[-1] == ("news", "wrong")
