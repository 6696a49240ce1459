"""Double opt-in: one email for all lists, through a real SMTP server; signed links that confirm
once, expire, and cannot be reused for another address."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from newsroom import tokens
from newsroom.database import transaction
from newsroom.errors import NewsroomError
from newsroom.mail import verp
from newsroom.models import Subscriber
from newsroom.people import lists, subscribers
from newsroom.site import Site
from tests.conftest import Run
from tests.sendhelp import sign_with_dkim
from tests.smtpserver import Received, TestSMTPServer

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def ready(site: Site, smtp_server: TestSMTPServer) -> Iterator[Site]:
    # the smtp_server fixture set the environment after `site` was opened: read settings again
    fresh = Site.open(site.root)
    lists.sync(fresh, NOW)
    yield fresh
    fresh.close()


@pytest.fixture
def verifies(
    site_dir: Path, dkim_key: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch
) -> Callable[[bytes], bool]:
    """The site signs with the test DKIM key; dkimpy's check of a message against its record."""
    return sign_with_dkim(site_dir, dkim_key, monkeypatch)


@pytest.fixture
def signing(verifies: Callable[[bytes], bool], ready: Site) -> Site:
    """The site, its settings read once the DKIM key is set (`verifies` comes first)."""
    return ready


def signed_fields(received: Received) -> set[str]:
    signature = str(received.message["DKIM-Signature"])
    return {name.strip().lower() for name in signature.split("h=")[1].split(";")[0].split(":")}


def envelope_of(site: Site, email: str) -> str:
    """The envelope sender a confirmation email to EMAIL must have: its own VERP address."""
    with transaction(site.engine) as session:
        person = session.scalars(select(Subscriber).where(Subscriber.email == email)).one()
        return verp.confirmation_sender(site.config, person.id, person.token_key)


def link_of(server: TestSMTPServer, n: int = -1) -> str:
    text = server.messages[n].body()
    found = re.search(r"http://localhost:8000/confirm/(\S+)", text)
    assert found, text
    return found.group(1)


def test_one_email_for_all_lists_with_what_and_who(
    ready: Site, smtp_server: TestSMTPServer
) -> None:
    report = subscribers.add(
        ready,
        "Ann@Example.org",
        ["all-members", "disability-group"],
        now=NOW,
        name="Zebulon <b>x</b>",
    )
    assert report.outcomes == {"all-members": "pending", "disability-group": "pending"}
    assert report.confirmation_sent
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["ann@example.org"]
    message = received.message
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["To"] == "ann@example.org"
    assert message["Subject"] == "Confirm your subscription to Test Newsroom"
    plain, html = received.body(), received.body("html")
    for part in (plain, html):
        assert "All members" in part and "Disability Group" in part
        assert "Test Newsroom" in part
        assert "Zebulon" not in part and "<b>x" not in part  # nothing typed but the address
    assert "<html" in html and 'lang="en-GB"' in html
    assert "5 January 2026" not in plain and "8 January 2026" in plain  # expiry, 72 hours on


def test_the_text_part_is_wrapped_at_72_columns(ready: Site, smtp_server: TestSMTPServer) -> None:
    """Issue #14, item 6: the consent text's line reached 157 columns; now every line but the
    link's (which must stay whole to be copied) fits in 72, and a long list description hangs
    under its bullet."""
    toml = ready.lists_file.read_text(encoding="utf-8")
    long = "News and meetings of the Disability Group, its campaigns and its members' questions"
    ready.lists_file.write_text(toml.replace("News and meetings of the Disability Group", long))
    lists.sync(ready, NOW)
    subscribers.add(ready, "ann@example.org", ["all-members", "disability-group"], now=NOW)
    lines = smtp_server.messages[-1].body().splitlines()
    (link,) = [line for line in lines if line.startswith("http://localhost:8000/confirm/")]
    assert [line for line in lines if len(line) > 72 and line != link] == [], lines
    assert "  * Disability Group: News and meetings of the Disability Group, its" in lines
    assert "    campaigns and its members' questions" in lines
    assert 'By confirming you agree: "I want to receive emails from Test Newsroom on' in lines


def test_confirming_confirms_once(ready: Site, smtp_server: TestSMTPServer) -> None:
    subscribers.add(ready, "ann@example.org", ["all-members", "disability-group"], now=NOW)
    token = link_of(smtp_server)
    later = NOW + timedelta(hours=2)
    result = subscribers.confirm(ready, token, ip="192.0.2.1", user_agent="Firefox", now=later)
    assert result.confirmed == ["all-members", "disability-group"] and result.already == []
    again = subscribers.confirm(ready, token, ip="192.0.2.1", user_agent="Firefox", now=later)
    assert again.confirmed == [] and again.already == ["all-members", "disability-group"]


def test_expired_links_say_so_and_a_new_email_can_be_asked_for(
    ready: Site, smtp_server: TestSMTPServer
) -> None:
    subscribers.add(ready, "ann@example.org", ["all-members"], now=NOW)
    token = link_of(smtp_server)
    late = NOW + timedelta(hours=73)
    with pytest.raises(tokens.TokenExpired, match="expired"):
        subscribers.confirm(ready, token, ip=None, user_agent=None, now=late)
    assert subscribers.resend_confirmation(ready, token, now=late)
    assert len(smtp_server.messages) == 2
    fresh = link_of(smtp_server)
    assert subscribers.confirm(ready, fresh, ip=None, user_agent=None, now=late).confirmed == [
        "all-members"
    ]


def test_at_most_one_email_per_address_per_day(ready: Site, smtp_server: TestSMTPServer) -> None:
    subscribers.add(ready, "ann@example.org", ["all-members"], now=NOW)
    held = subscribers.add(
        ready, "ann@example.org", ["disability-group"], now=NOW + timedelta(hours=23)
    )
    assert held.confirmation_held and not held.confirmation_sent
    assert len(smtp_server.messages) == 1
    again = subscribers.add(
        ready, "ann@example.org", ["disability-group"], now=NOW + timedelta(hours=24)
    )
    assert again.confirmation_sent
    assert len(smtp_server.messages) == 2
    # the second email covers every pending list
    body = smtp_server.messages[1].body()
    assert "All members" in body and "Disability Group" in body


def test_a_token_cannot_be_used_for_another_address(
    ready: Site, smtp_server: TestSMTPServer
) -> None:
    subscribers.add(ready, "ann@example.org", ["all-members"], now=NOW)
    token = link_of(smtp_server)
    payload = tokens.read(ready.config, "confirm", token, now=NOW)
    subscribers.add(ready, "bob@example.org", ["all-members"], now=NOW)
    bob_id = payload["s"] + 1
    forged = tokens.make(
        ready.config, "confirm", {**payload, "s": bob_id}, now=NOW
    )  # even a correctly signed token naming Bob's id carries Ann's address digest
    with pytest.raises(tokens.TokenError, match="no longer valid"):
        subscribers.confirm(ready, forged, ip=None, user_agent=None, now=NOW)
    with pytest.raises(tokens.TokenError):
        subscribers.unsubscribe(ready, token, method="link", now=NOW)  # wrong purpose


def test_the_relay_refusing_is_an_error_and_allows_a_retry(
    ready: Site, smtp_server: TestSMTPServer
) -> None:
    smtp_server.fail("RCPT", 550, "5.1.1 No such user", times=1)
    with pytest.raises(Exception, match="refused"):
        subscribers.add(ready, "ann@example.org", ["all-members"], now=NOW)
    report = subscribers.add(ready, "ann@example.org", ["all-members"], now=NOW)
    assert report.confirmation_sent
    assert len(smtp_server.messages) == 1


def test_single_opt_in_confirms_at_once_without_email(
    ready: Site, smtp_server: TestSMTPServer
) -> None:
    ready.lists_file.write_text(
        ready.lists_file.read_text() + '\n[press]\nname = "Press"\nopt_in = "single"\n'
    )
    lists.sync(ready, NOW)
    report = subscribers.add(ready, "ann@example.org", ["press"], now=NOW)
    assert report.outcomes == {"press": "confirmed"} and not report.confirmation_sent
    assert smtp_server.messages == []


def test_internationalised_address(ready: Site, smtp_server: TestSMTPServer) -> None:
    """Kept in Unicode; sent with the domain as an A-label (RFC 5890) and, for the UTF-8 local
    part, with SMTPUTF8 and a UTF-8 To: (RFC 6531, 6532)."""
    report = subscribers.add(ready, "josé@bücher.example", ["all-members"], now=NOW)
    assert report.email == "josé@bücher.example"
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["josé@xn--bcher-kva.example"]
    assert "SMTPUTF8" in received.mail_options
    assert received.raw_header(b"To") == "To: josé@xn--bcher-kva.example\r\n".encode()
    assert "josé@bücher.example" in received.body()  # the reader sees it as they typed it


def test_an_idn_domain_needs_no_smtputf8(ready: Site, smtp_server: TestSMTPServer) -> None:
    subscribers.add(ready, "anna@münchen.de", ["all-members"], now=NOW)
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["anna@xn--mnchen-3ya.de"]
    assert "SMTPUTF8" not in received.mail_options
    assert received.raw_header(b"To") == b"To: anna@xn--mnchen-3ya.de\r\n"


def test_a_relay_without_smtputf8_is_an_error_and_allows_a_retry(
    ready: Site, smtp_server: TestSMTPServer
) -> None:
    smtp_server.smtputf8 = False
    with pytest.raises(NewsroomError) as refused:
        subscribers.add(ready, "josé@bücher.example", ["all-members"], now=NOW)
    assert str(refused.value) == (
        f"the relay 127.0.0.1:{smtp_server.port} does not offer SMTPUTF8 (RFC 6531), needed "
        "for an address with non-ASCII characters before the @"
    )
    assert smtp_server.messages == []
    smtp_server.smtputf8 = True  # the relay is upgraded: the next try goes
    report = subscribers.add(ready, "josé@bücher.example", ["all-members"], now=NOW)
    assert report.confirmation_sent
    assert [m.rcpt_tos for m in smtp_server.messages] == [["josé@xn--bcher-kva.example"]]


def test_the_email_is_signed_and_its_bounces_come_back_to_its_own_address(
    signing: Site, verifies: Callable[[bytes], bool], smtp_server: TestSMTPServer
) -> None:
    """DKIM as for bulk messages (RFC 6376); the envelope sender names this subscriber row
    (bounces+c<id>-<tag>@), not the From address, so `bounces process` can act on a bounce."""
    subscribers.add(signing, "ann@example.org", ["all-members"], now=NOW)
    (received,) = smtp_server.messages
    assert verifies(received.data)
    assert {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"} <= (
        signed_fields(received)
    )
    assert not verifies(received.data.replace(b"/confirm/", b"/confirm/x", 1))  # body altered
    assert received.mail_from == envelope_of(signing, "ann@example.org")
    assert re.fullmatch(r"bounces\+c\d+-[0-9a-f]{16}@example\.org", received.mail_from)
    # ASCII throughout: neither SMTPUTF8 nor BODY=8BITMIME (RFC 1870's SIZE is aiosmtplib's)
    assert [o for o in received.mail_options if not o.startswith("SIZE=")] == []
    assert received.data.isascii()


def test_an_internationalised_address_is_signed_too(
    signing: Site, verifies: Callable[[bytes], bool], smtp_server: TestSMTPServer
) -> None:
    """Signed as sent: with SMTPUTF8 and a UTF-8 To: (RFC 6531, 6532), the signature holds."""
    subscribers.add(signing, "josé@bücher.example", ["all-members"], now=NOW)
    (received,) = smtp_server.messages
    assert "SMTPUTF8" in received.mail_options
    assert received.rcpt_tos == ["josé@xn--bcher-kva.example"]
    assert received.raw_header(b"To") == "To: josé@xn--bcher-kva.example\r\n".encode()
    assert received.mail_from == envelope_of(signing, "josé@bücher.example")
    assert verifies(received.data)


def test_each_confirmation_an_import_sends_is_signed_with_its_own_envelope(
    cli: Run,
    verifies: Callable[[bytes], bool],
    smtp_server: TestSMTPServer,
    site: Site,
    tmp_path: Path,
) -> None:
    csv = tmp_path / "new.csv"
    csv.write_text("email\nann@example.org\nbob@example.org\n", "utf-8")
    before = smtp_server.connections  # the server's own readiness check is one
    imported = cli("subscribers", "import", str(csv), "--list", "all-members", now=NOW)
    assert imported.exit_code == 0, imported.output
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.org"], ["bob@example.org"]]
    assert smtp_server.connections == before + 1  # one connection for all of them
    for received in smtp_server.messages:
        assert verifies(received.data)
        assert received.mail_from == envelope_of(site, received.rcpt_tos[0])
