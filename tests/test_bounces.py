"""Bounce and complaint reports: matched through VERP, scored, acted on, each handled once."""

from __future__ import annotations

import imaplib
import json
import mailbox
import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from newsroom import database, tokens
from newsroom.delivery import bounces
from newsroom.mail import verp
from newsroom.models import (
    ConsentEvent,
    Delivery,
    Mailing,
    MailingList,
    ProcessedReport,
    Subscriber,
    Subscription,
)
from newsroom.people import subscribers
from newsroom.site import Site
from tests import postfixrelay
from tests.conftest import Run
from tests.postfixrelay import MAIL_DOMAIN, ORG_DOMAIN, PostfixRelay
from tests.sendhelp import sign_with_dkim
from tests.smtpserver import TestSMTPServer, free_port

DATA = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RCPT = "gone@example.com"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


@dataclass
class Sent:
    delivery_id: int
    subscriber_id: int
    verp: str


@pytest.fixture
def sent(site: Site) -> Sent:
    """One subscriber on two lists, and one delivery of a mailing to them."""
    with database.transaction(site.engine) as s:
        lists = [MailingList(slug=f"l{i}", name=f"List {i}") for i in (1, 2)]
        person = Subscriber(email=RCPT, name="Gone Person")
        s.add_all([*lists, person])
        s.flush()
        s.add_all(
            [Subscription(subscriber_id=person.id, list_id=x.id, status="confirmed") for x in lists]
        )
        mailing = Mailing(
            issue_slug="save", issue_path="issues/x.md", subject="Save", expression="l1"
        )
        s.add(mailing)
        s.flush()
        delivery = Delivery(
            mailing_id=mailing.id,
            subscriber_id=person.id,
            email=RCPT,
            variant_key="v",
            status="sent",
        )
        s.add(delivery)
        s.flush()
        return Sent(delivery.id, person.id, verp.envelope_sender(site.config, delivery.id))


def report(name: str, sent: Sent, verp_address: str | None = None, msgid: str = "m1") -> bytes:
    return returned(name, verp_address or sent.verp, msgid)


def returned(name: str, verp_address: str, msgid: str = "m1") -> bytes:
    """The report tests/data/bounces/NAME about a message to RCPT sent from VERP_ADDRESS."""
    text = (DATA / name).read_text()
    text = text.replace("{VERP}", verp_address).replace("{RCPT}", RCPT).replace("{MSGID}", msgid)
    return text.replace("\n", "\r\n").encode()


def process_bytes(
    site: Site, raws: list[bytes], tmp_path: Path, now: datetime = NOW
) -> bounces.Outcome:
    (tmp_path / "bounces.mbox").unlink(missing_ok=True)  # each call reads just RAWS
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for raw in raws:
        box.add(raw)
    box.flush()
    box.close()
    return bounces.process(site.engine, site.config, str(tmp_path / "bounces.mbox"), now=now)


def statuses(site: Site, sent: Sent) -> list[str]:
    with database.transaction(site.engine) as s:
        return sorted(
            s.scalars(
                select(Subscription.status).where(Subscription.subscriber_id == sent.subscriber_id)
            )
        )


@pytest.mark.parametrize(
    "name", ["postfix-hard.eml", "exim-hard.eml", "gmail-hard.eml", "exchange-hard.eml"]
)
def test_permanent_failures_are_hard(site: Site, sent: Sent, name: str) -> None:
    found = bounces.read_report(site.config, report(name, sent))
    assert (found.kind, found.delivery_id, found.ignored) == ("hard", sent.delivery_id, "")


def test_dsn_diagnostic_is_kept(site: Site, sent: Sent) -> None:
    found = bounces.read_report(site.config, report("postfix-hard.eml", sent))
    assert found.diagnostic.startswith(
        "5.1.1 smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected"
    )


def test_delayed_is_soft(site: Site, sent: Sent) -> None:
    found = bounces.read_report(site.config, report("postfix-delayed.eml", sent))
    assert (found.kind, found.delivery_id) == ("soft", sent.delivery_id)
    assert found.diagnostic.startswith("4.4.7")


def test_arf_is_a_complaint_matched_through_the_originals_return_path(
    site: Site, sent: Sent
) -> None:
    found = bounces.read_report(site.config, report("arf-abuse.eml", sent))
    assert (found.kind, found.delivery_id) == ("complaint", sent.delivery_id)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (lambda s: report("out-of-office.eml", s), "not a bounce, complaint or unsubscribe"),
        (
            lambda s: report("postfix-hard.eml", s, s.verp.replace("-", "-0", 1)[:-1]),
            "forged or unknown token",
        ),
        (
            lambda s: report("postfix-hard.eml", s, "someone@elsewhere.example"),
            "no newsroom address in it",
        ),
        (
            lambda s: b"x" * (bounces.MAX_REPORT_BYTES + 1),
            f"larger than {bounces.MAX_REPORT_BYTES} bytes",
        ),
    ],
    ids=["out-of-office", "forged", "foreign", "huge"],
)
def test_reports_that_change_nothing(
    site: Site, sent: Sent, tmp_path: Path, raw: Callable[[Sent], bytes], reason: str
) -> None:
    outcome = process_bytes(site, [raw(sent)], tmp_path)
    assert outcome.ignored == {reason: 1}
    assert statuses(site, sent) == ["confirmed", "confirmed"]


def test_the_body_never_names_the_victim(site: Site, sent: Sent) -> None:
    """A forged report naming a real subscriber in its text but not our VERP changes nothing."""
    forged = report("postfix-hard.eml", sent, "attacker@evil.example")
    assert bounces.read_report(site.config, forged).delivery_id is None


def test_three_hard_bounces_within_the_window_set_bounced(
    site: Site, sent: Sent, tmp_path: Path
) -> None:
    raws = [
        report("postfix-hard.eml", sent).replace(b"4F2A1@mx", f"{i}@mx".encode()) for i in range(3)
    ]
    outcome = process_bytes(site, raws[:2], tmp_path)
    assert outcome.hard == 2 and statuses(site, sent) == ["confirmed", "confirmed"]
    outcome = process_bytes(site, raws, tmp_path, now=NOW + timedelta(days=1))
    assert outcome.duplicates == 2 and outcome.hard == 1
    assert outcome.bounced == [RCPT]
    assert statuses(site, sent) == ["bounced", "bounced"]
    with database.transaction(site.engine) as s:
        details = [
            e.detail for e in s.scalars(select(ConsentEvent).where(ConsentEvent.kind == "bounced"))
        ]
    assert sum("reached the threshold 3" in d for d in details) == 2
    assert sum(d.startswith("hard bounce scored 1") for d in details) == 3


def test_old_bounces_fall_out_of_the_window(site: Site, sent: Sent, tmp_path: Path) -> None:
    raws = [
        report("postfix-hard.eml", sent).replace(b"4F2A1@mx", f"{i}@mx".encode()) for i in range(3)
    ]
    for i, raw in enumerate(raws):
        process_bytes(site, [raw], tmp_path, now=NOW + timedelta(days=20 * i))
    assert statuses(site, sent) == ["confirmed", "confirmed"]


def test_soft_bounces_score_at_most_once_a_day(site: Site, sent: Sent, tmp_path: Path) -> None:
    raws = [report("postfix-delayed.eml", sent, msgid=f"d{i}") for i in range(8)]
    outcome = process_bytes(site, raws, tmp_path)
    assert outcome.soft == 8
    assert statuses(site, sent) == ["confirmed", "confirmed"]
    with database.transaction(site.engine) as s:
        assert bounces._score(s, site.config, sent.subscriber_id, NOW) == 0.5


def test_a_complaint_unsubscribes_from_every_list_at_once(
    site: Site, sent: Sent, tmp_path: Path
) -> None:
    outcome = process_bytes(site, [report("arf-abuse.eml", sent)], tmp_path)
    assert outcome.complaints == 1
    assert statuses(site, sent) == ["complained", "complained"]
    with database.transaction(site.engine) as s:
        kinds = sorted(e.kind for e in s.scalars(select(ConsentEvent)))
        assert kinds == ["complained", "complained"]
        assert s.get(ProcessedReport, "<arf-report-1@mailbox.example>").outcome == "complaint"  # type: ignore[union-attr]


# --- a message to the List-Unsubscribe mailto address (RFC 2369) ----------------------------


def ledger(site: Site) -> list[tuple[str, str, str, str]]:
    """Every ledger event: (kind, source, method, list slug)."""
    with database.transaction(site.engine) as s:
        rows = s.execute(
            select(ConsentEvent.kind, ConsentEvent.source, ConsentEvent.method, MailingList.slug)
            .join(MailingList, MailingList.id == ConsentEvent.list_id)
            .order_by(ConsentEvent.id)
        )
        return [(kind, source, method, slug) for kind, source, method, slug in rows]


@pytest.mark.parametrize("name", ["mailto-gmail.eml", "mailto-client.eml"])
def test_a_mailto_request_leaves_the_mailings_lists_once(
    site: Site, sent: Sent, tmp_path: Path, name: str
) -> None:
    raw = report(name, sent)
    found = bounces.read_report(site.config, raw)
    assert (found.kind, found.delivery_id, found.ignored) == ("unsubscribe", sent.delivery_id, "")
    outcome = process_bytes(site, [raw], tmp_path)
    assert (outcome.unsubscribes, outcome.hard, outcome.ignored) == (1, 0, {})
    assert statuses(site, sent) == ["confirmed", "unsubscribed"]  # the mailing went to l1 only
    assert ledger(site) == [("unsubscribed", "email", "mailto", "l1")]
    with database.transaction(site.engine) as s:
        handled = s.scalars(select(ProcessedReport)).one()
        assert handled.outcome == "unsubscribe"
        assert handled.reason == (
            "mailing 1 (save): email to the List-Unsubscribe address: left l1"
        )
    again = process_bytes(site, [raw], tmp_path)
    assert (again.unsubscribes, again.duplicates) == (0, 1)
    assert len(ledger(site)) == 1


def _forged(change: Callable[[int, str], tuple[int, str]]) -> Callable[[Sent], bytes]:
    """The request sent to our VERP address with its delivery number or its tag changed."""

    def build(s: Sent) -> bytes:
        local, domain = s.verp.split("@")
        number, tag = local.split("+")[1].split("-")
        changed, forged = change(int(number), tag)
        assert (changed, forged) != (int(number), tag)
        return report("mailto-gmail.eml", s, f"bounces+{changed}-{forged}@{domain}")

    return build


def _edited(old: str, new: str) -> Callable[[Sent], bytes]:
    """The request with one header line changed."""
    return lambda s: report("mailto-gmail.eml", s).replace(old.encode(), new.encode(), 1)


def _only_in_from(s: Sent) -> bytes:
    """A genuine VERP address, but only in From: (To and Delivered-To name someone else)."""
    text = report("mailto-gmail.eml", s, "list-owner@example.net").decode()
    return text.replace(f"From: Gone Person <{RCPT}>", f"From: <{s.verp}>").encode()


def _forwarded(s: Sent) -> bytes:
    """Someone's issue, forwarded as an attachment with its Return-Path, to a plain address."""
    issue = f"Return-Path: <{s.verp}>\r\nSubject: Save our socialists\r\n\r\nHello.\r\n"
    return (
        "From: someone@example.net\r\nTo: bounces@example.org\r\nSubject: unsubscribe\r\n"
        'Message-ID: <fwd@example.net>\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n--b\r\n"
        f"Content-Type: message/rfc822\r\n\r\n{issue}--b--\r\n"
    ).encode()


FORGED, NOT_ONE = "forged or unknown token", "not a bounce, complaint or unsubscribe"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_forged(lambda number, tag: (number + 1, tag)), FORGED),
        (_forged(lambda number, tag: (number, tag[::-1])), FORGED),
        (_only_in_from, "no newsroom address in it"),
        (_forwarded, "no newsroom address in it"),
        (_edited("Subject: unsubscribe", "Subject: Re: Save our socialists"), NOT_ONE),
        (_edited("Subject:", "Auto-Submitted: auto-replied\r\nSubject:"), NOT_ONE),
        (_edited("Subject:", "Precedence: auto_reply\r\nSubject:"), NOT_ONE),
        (_edited(f"Return-Path: <{RCPT}>", "Return-Path: <>"), NOT_ONE),
    ],
    ids=[
        "another-delivery",
        "tampered-tag",
        "only-in-from",
        "forwarded-original",
        "a-reply",
        "auto-replied",
        "precedence-auto-reply",
        "null-sender",
    ],
)
def test_mailto_requests_that_change_nothing(
    site: Site, sent: Sent, tmp_path: Path, raw: Callable[[Sent], bytes], reason: str
) -> None:
    outcome = process_bytes(site, [raw(sent)], tmp_path)
    assert (outcome.unsubscribes, outcome.ignored) == (0, {reason: 1})
    assert statuses(site, sent) == ["confirmed", "confirmed"]
    assert ledger(site) == []


def test_processed_reports_can_be_deleted_or_moved(site: Site, sent: Sent, tmp_path: Path) -> None:
    maildir = mailbox.Maildir(tmp_path / "in", create=True)
    maildir.add(report("postfix-hard.eml", sent))
    maildir.add(report("out-of-office.eml", sent))
    maildir.close()
    bounces.process(
        site.engine, site.config, str(tmp_path / "in"), now=NOW, move_to=str(tmp_path / "done")
    )
    assert len(mailbox.Maildir(tmp_path / "in")) == 0
    assert len(mailbox.Maildir(tmp_path / "done")) == 2
    bounces.process(site.engine, site.config, str(tmp_path / "done"), now=NOW, delete=True)
    assert len(mailbox.Maildir(tmp_path / "done")) == 0


def test_an_erased_subscribers_delivery_is_ignored(site: Site, sent: Sent, tmp_path: Path) -> None:
    with database.transaction(site.engine) as s:
        s.get(Delivery, sent.delivery_id).subscriber_id = None  # type: ignore[union-attr]
    outcome = process_bytes(site, [report("postfix-hard.eml", sent)], tmp_path)
    assert outcome.ignored == {"unknown delivery (erased or deleted)": 1}


# --- single messages: a confirmation email, a test copy ------------------------------------


def mbox_of(tmp_path: Path, raws: list[bytes]) -> str:
    path = tmp_path / "reports.mbox"
    path.unlink(missing_ok=True)
    box = mailbox.mbox(path)
    for raw in raws:
        box.add(raw)
    box.close()
    return str(path)


def asked_for(cli: Run, smtp_server: TestSMTPServer, *list_slugs: str) -> str:
    """RCPT asks for LIST_SLUGS; returns the envelope sender of the confirmation email."""
    lists = [arg for slug in list_slugs for arg in ("--list", slug)]
    added = cli("subscribers", "add", RCPT, *lists, now=NOW)
    assert added.exit_code == 0, added.output
    return smtp_server.messages[-1].mail_from


DIAGNOSTIC = (
    "5.1.1 smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown in "
    "virtual mailbox table"
)


def test_a_confirmation_that_bounces_hard_ends_the_pending_subscriptions(
    cli: Run, smtp_server: TestSMTPServer, tmp_path: Path
) -> None:
    """A dead address asked for is never mailed again: one hard bounce of its confirmation
    email (a Postfix DSN to the confirmation's VERP address) sets its pending subscriptions to
    bounced, with the diagnostic in the ledger, and an import later skips it."""
    envelope = asked_for(cli, smtp_server, "all-members", "disability-group")
    assert envelope.startswith("bounces+c")
    dsn = returned("postfix-confirmation-hard.eml", envelope)
    result = cli("bounces", "process", mbox_of(tmp_path, [dsn]), now=NOW)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "1 hard bounces, 0 soft bounces, 0 complaints, 0 unsubscribes, 0 already handled, "
        f"0 ignored\n  {RCPT}: the confirmation email bounced; pending subscriptions set to "
        "bounced\n"
    )
    gone = shown(cli, RCPT)
    assert {x["list"]: x["status"] for x in gone["subscriptions"]} == {
        "all-members": "bounced",
        "disability-group": "bounced",
    }
    assert [
        (e["kind"], e["list"], e["source"], e["method"], e["detail"]) for e in gone["ledger"][2:]
    ] == [
        ("bounced", slug, "bounce-report", "hard", f"hard bounce of the confirmation email: "
         f"{DIAGNOSTIC}") for slug in ("all-members", "disability-group")
    ]  # fmt: skip
    [listed] = json.loads(cli("bounces", "--json", now=NOW).stdout)
    assert (listed["email"], listed["kind"], listed["score"]) == (RCPT, "hard", 0.0)
    (tmp_path / "again.csv").write_text(f"email\n{RCPT}\n")
    later = NOW + timedelta(days=2)
    again = cli("subscribers", "import", str(tmp_path / "again.csv"), "--list", "all-members",
                now=later)  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "skipped for all-members: bounced on 2026-11-23" in again.output
    assert ok_line(cli("subscribers", "send-confirmations", now=later)) == (
        "sent 0 confirmation emails"
    )
    assert len(smtp_server.messages) == 1  # the one that bounced, and no other
    twice = cli("bounces", "process", mbox_of(tmp_path, [dsn]), now=later)
    assert twice.stdout.startswith("0 hard bounces, 0 soft bounces, 0 complaints, 0 unsub")
    assert "1 already handled" in twice.stdout


def ok_line(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return str(result.stdout).strip()


def test_a_confirmation_that_bounces_soft_is_counted_and_changes_nothing(
    cli: Run, smtp_server: TestSMTPServer, tmp_path: Path
) -> None:
    envelope = asked_for(cli, smtp_server, "all-members")
    delayed = returned("postfix-delayed.eml", envelope)
    result = cli("bounces", "process", mbox_of(tmp_path, [delayed]), now=NOW)
    assert ok_line(result) == (
        "0 hard bounces, 1 soft bounces, 0 complaints, 0 unsubscribes, 0 already handled, 0 ignored"
    )
    gone = shown(cli, RCPT)
    assert [x["status"] for x in gone["subscriptions"]] == ["pending"]
    assert [e["kind"] for e in gone["ledger"]] == ["requested"]


@pytest.mark.parametrize(
    ("name", "counted", "status", "method"),
    [
        ("arf-abuse.eml", "0 hard bounces, 0 soft bounces, 1 complaints, 0 unsubscribes",
         "complained", "complaint"),
        ("mailto-client.eml", "0 hard bounces, 0 soft bounces, 0 complaints, 1 unsubscribes",
         "unsubscribed", "mailto"),
    ],
)  # fmt: skip
def test_a_complaint_or_request_about_a_confirmation_ends_the_pending_subscriptions(
    cli: Run,
    smtp_server: TestSMTPServer,
    tmp_path: Path,
    name: str,
    counted: str,
    status: str,
    method: str,
) -> None:
    """Someone who marks the confirmation email as spam, or writes to its address to leave,
    did not ask for it (or no longer wants it): the request ends, with its ledger events."""
    envelope = asked_for(cli, smtp_server, "all-members", "disability-group")
    result = cli("bounces", "process", mbox_of(tmp_path, [returned(name, envelope)]), now=NOW)
    assert ok_line(result) == f"{counted}, 0 already handled, 0 ignored"
    gone = shown(cli, RCPT)
    assert [x["status"] for x in gone["subscriptions"]] == [status, status]
    assert [(e["kind"], e["method"]) for e in gone["ledger"][2:]] == [(status, method)] * 2


def test_a_forged_or_stale_confirmation_address_changes_nothing(
    cli: Run, site_dir: Path, smtp_server: TestSMTPServer, tmp_path: Path
) -> None:
    """The tag is an HMAC bound to the subscriber row's token key: another tag, another id, or
    the address of an email to a row since erased (its id perhaps given again, on SQLite, to the
    same address asking again) names nobody."""
    first = asked_for(cli, smtp_server, "all-members")
    assert ok_line(cli("subscribers", "erase", RCPT, "--yes", now=NOW))
    again = Site.open(site_dir)  # its settings read with the SMTP server's
    try:  # the person asks again on the web page, the one way back after an erasure
        subscribers.subscribe(again, RCPT, "", ["all-members"], ip=None, user_agent=None, now=NOW)
    finally:
        again.close()
    fresh = smtp_server.messages[-1].mail_from
    assert fresh != first
    number = fresh.split("+c", 1)[1].split("-")[0]
    forged = [
        fresh.replace(fresh.split("-")[1].split("@")[0], "0" * 16),  # another tag
        fresh.replace(f"+c{number}-", f"+c{int(number) + 7}-"),  # another id
        fresh.replace(f"+c{number}-", f"+c{'9' * 18}-"),  # beyond any id a table holds
        first,  # the erased row's
    ]
    raws = [
        returned("postfix-confirmation-hard.eml", address, msgid=f"m{i}")
        for i, address in enumerate(forged)
    ]
    result = cli("bounces", "process", mbox_of(tmp_path, raws), now=NOW)
    assert ok_line(result).splitlines() == [
        "0 hard bounces, 0 soft bounces, 0 complaints, 0 unsubscribes, 0 already handled, "
        "4 ignored",
        "  ignored 4: forged or unknown token",
    ]
    assert [x["status"] for x in shown(cli, RCPT)["subscriptions"]] == ["pending"]


def test_a_test_copy_is_signed_and_its_bounce_is_ignored_as_one(
    cli: Run,
    site_dir: Path,
    smtp_server: TestSMTPServer,
    dkim_key: tuple[bytes, bytes],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """`send --test` goes through the bulk Template, so it is signed like a mailing; its
    envelope sender is ours (bounces+test-<tag>@) yet names no delivery, so a bounce of it is
    recognised as a test copy's, not taken for a forgery."""
    verifies = sign_with_dkim(site_dir, dkim_key, monkeypatch)
    front = "---\ntitle: News\ndate: 2026-11-20\nto: all-members\nsummary: The news.\n---\n"
    (site_dir / "issues" / "2026-11-20-news.md").write_text(front + "Hello.\n")
    sent = cli("send", "2026-11-20-news.md", "--test", RCPT, now=NOW)
    assert sent.exit_code == 0, sent.output
    [copy] = smtp_server.messages
    assert verifies(copy.data)
    opened = Site.open(site_dir)
    assert copy.mail_from == verp.sender_for_test_copy(opened.config)
    opened.close()
    assert re.fullmatch(r"bounces\+test-[0-9a-f]{16}@example\.org", copy.mail_from)
    forged = copy.mail_from.replace(copy.mail_from[13:29], "0" * 16)
    raws = [
        returned("postfix-hard.eml", copy.mail_from),
        returned("postfix-delayed.eml", forged),
    ]
    result = cli("bounces", "process", mbox_of(tmp_path, raws), now=NOW)
    assert ok_line(result).splitlines() == [
        "0 hard bounces, 0 soft bounces, 0 complaints, 0 unsubscribes, 0 already handled, "
        "2 ignored",
        "  ignored 1: a test copy",
        "  ignored 1: forged or unknown token",
    ]


# --- the command line ------------------------------------------------------------------


def test_process_an_mbox_and_list_the_bounces(
    cli: Run, site: Site, sent: Sent, tmp_path: Path
) -> None:
    box = mailbox.mbox(tmp_path / "b.mbox")
    box.add(report("gmail-hard.eml", sent))
    box.add(report("out-of-office.eml", sent))
    box.close()
    result = cli("bounces", "process", str(tmp_path / "b.mbox"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1 hard bounces, 0 soft bounces, 0 complaints, 0 unsubscribes, 0 already handled, "
        "1 ignored",
        "  ignored 1: not a bounce, complaint or unsubscribe",
    ]
    again = cli("bounces", "process", str(tmp_path / "b.mbox"))
    assert again.stdout.startswith(
        "0 hard bounces, 0 soft bounces, 0 complaints, 0 unsubscribes, 2 already handled"
    )
    listed = cli("bounces")
    assert (
        "hard" in listed.stdout and "gone@example.com" in listed.stdout and "5.1.1" in listed.stdout
    )


def test_missing_source_is_one_clear_line(cli: Run, tmp_path: Path) -> None:
    result = cli("bounces", "process", str(tmp_path / "nothing.mbox"))
    assert result.exit_code == 1
    assert (
        result.stderr.strip() == f"Error: {tmp_path / 'nothing.mbox'}: no such mbox file or Maildir"
    )


def test_a_plain_folder_is_not_a_maildir(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    result = cli("bounces", "process", str(tmp_path / "folder"))
    assert result.exit_code == 1
    assert "is a folder but not a Maildir" in result.stderr


def test_delete_and_move_together_are_refused(cli: Run, tmp_path: Path) -> None:
    result = cli("bounces", "process", str(tmp_path), "--delete", "--move-to", "x")
    assert result.exit_code == 2
    assert "choose one of --delete and --move-to" in result.stderr


def test_imap_without_a_password_says_which_variable(cli: Run) -> None:
    result = cli("bounces", "process", "imaps://bounces@127.0.0.1/INBOX")
    assert result.exit_code == 1
    assert "NEWSROOM_BOUNCES_IMAP_PASSWORD" in result.stderr


def test_unreachable_imap_server(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSROOM_BOUNCES_IMAP_PASSWORD", "x")
    result = cli("bounces", "process", f"imap://bounces@127.0.0.1:{free_port()}/INBOX")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot open the IMAP mailbox 127.0.0.1:")


@pytest.fixture
def imap_server() -> Iterator[int]:
    """A real Dovecot IMAP server on 127.0.0.1 with user bounces / password secret."""
    if not os.path.exists(DOVECOT):
        if os.environ.get("CI"):
            pytest.fail("dovecot is not installed (.ci/run installs Debian's dovecot-imapd)")
        pytest.skip("dovecot is not installed: apt-get install dovecot-imapd")
    # Dovecot's auth process runs as its own user: the folder must be readable by it.
    root, port = Path(tempfile.mkdtemp(prefix="newsroom-dovecot-")), free_port()
    root.chmod(0o755)
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(parents=True)
    (root / "mail").chmod(0o777)
    (root / "home").chmod(0o777)
    (root / "users").write_text("bounces:{PLAIN}secret\n")
    (root / "dovecot.conf").write_text(
        f"base_dir = {root}/run\nstate_dir = {root}/state\nlog_path = {root}/log\n"
        "protocols = imap\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n"
        f"first_valid_uid = 100\nmail_location = maildir:{root}/mail/%u\n"
        f"passdb {{\n driver = passwd-file\n args = scheme=PLAIN username_format=%u {root}/users\n}}\n"
        f"userdb {{\n driver = static\n args = uid=65534 gid=65534 home={root}/home/%u\n}}\n"
        f"service imap-login {{\n inet_listener imap {{\n  address = 127.0.0.1\n  port = {port}\n }}\n"
        " inet_listener imaps {\n  port = 0\n }\n}\n"
    )
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(root / "dovecot.conf")])
    deadline = time.monotonic() + 10
    while True:
        try:
            imaplib.IMAP4("127.0.0.1", port, timeout=1).logout()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"dovecot did not start: {(root / 'log').read_text()}")
            time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(root, ignore_errors=True)


def test_imap_source_handles_and_moves_reports(
    cli: Run,
    site: Site,
    sent: Sent,
    imap_server: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = imaplib.IMAP4("127.0.0.1", imap_server)
    client.login("bounces", "secret")
    client.append("INBOX", None, None, report("arf-abuse.eml", sent))
    client.append("INBOX", None, None, report("exim-hard.eml", sent))
    monkeypatch.setenv("NEWSROOM_BOUNCES_IMAP_PASSWORD", "secret")
    url = f"imap://bounces@127.0.0.1:{imap_server}/INBOX"
    result = cli("bounces", "process", url, "--move-to", "Processed")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("1 hard bounces, 0 soft bounces, 1 complaints")
    assert statuses(site, sent) == ["complained", "complained"]
    client.select("INBOX")
    assert client.uid("SEARCH", "ALL")[1] == [b""]
    client.select('"Processed"')
    assert len(client.uid("SEARCH", "ALL")[1][0].split()) == 2
    client.logout()
    nowhere = cli("bounces", "process", url.replace("/INBOX", "/Nope"))
    assert nowhere.exit_code == 1
    assert nowhere.stderr == f"Error: {url.replace('/INBOX', '/Nope')}: no IMAP folder 'Nope'\n"
    monkeypatch.setenv("NEWSROOM_BOUNCES_IMAP_PASSWORD", "wrong")
    refused = cli("bounces", "process", url)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: cannot open the IMAP mailbox 127.0.0.1: ")


def test_an_imap_url_without_a_user(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSROOM_BOUNCES_IMAP_PASSWORD", "x")
    result = cli("bounces", "process", "imaps://127.0.0.1/INBOX")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: imaps://127.0.0.1/INBOX: an IMAP source looks like imaps://user@host/INBOX\n"
    )


# --- the whole loop: sending meets a relay that refuses chosen recipients -------------------


def test_5xx_while_sending_scores_hard_bounces_until_the_address_is_dropped(
    cli: Run, site_dir: Path, smtp_server: TestSMTPServer, tmp_path: Path
) -> None:
    (tmp_path / "people.csv").write_text(
        "email,name\nkeeps@example.org,Keeps Going\ngone@example.com,Gone Away\n"
    )
    imported = cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "all-members",
                   "--confirmed", "--consent", "Members' bulletin, agreed at joining")  # fmt: skip
    assert imported.exit_code == 0, imported.stderr
    (site_dir / "issues" / "2026-11-20-news.md").write_text(
        "---\ntitle: News\ndate: 2026-11-20\nsummary: The news.\n---\nHello {{first_name|friend}}.\n"
    )
    smtp_server.fail("RCPT", 550, "5.1.1 No such user here", match="gone@")
    for attempt in range(3):
        again = ["--again"] if attempt else []
        sent = cli("send", "2026-11-20-news.md", "--to", "all-members", "--yes", *again)
        assert sent.exit_code == 0, sent.stdout + sent.stderr
    assert [m.rcpt_tos for m in smtp_server.messages] == [["keeps@example.org"]] * 3
    shown = cli("subscribers", "show", "gone@example.com")
    assert "bounced" in shown.stdout
    assert "5.1.1 No such user here" in shown.stdout
    listed = cli("bounces")
    assert listed.stdout.count("gone@example.com") == 3
    before = len(smtp_server.commands)
    fourth = cli("send", "2026-11-20-news.md", "--to", "all-members", "--yes", "--again")
    assert fourth.exit_code == 0, fourth.stderr
    assert len(smtp_server.messages) == 4
    assert not [c for c in smtp_server.commands[before:] if "gone@" in c]


# --- mailings, bounces and mailto unsubscribes through the whole loop ------------------------


def import_and_write_issue(cli: Run, site_dir: Path, tmp_path: Path, csv: str) -> None:
    (tmp_path / "people.csv").write_text("email,name,lists\n" + csv)
    imported = cli("subscribers", "import", str(tmp_path / "people.csv"), "--confirmed",
                   "--consent", "Members' bulletin, agreed at joining", now=NOW)  # fmt: skip
    assert imported.exit_code == 0, imported.stdout + imported.stderr
    front = "---\ntitle: News\ndate: 2026-11-20\nsummary: The news.\n---\n"
    (site_dir / "issues" / "2026-11-20-news.md").write_text(
        front + "Hello {{first_name|friend}}.\n"
    )


def list_unsubscribe(raw: bytes) -> tuple[str, str, str]:
    """The https link, mailto address and mailto subject of a message's List-Unsubscribe."""
    header = str(message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"])
    found = re.fullmatch(r"<(https?://[^>]+)>, *<mailto:([^?>]+)\?subject=([^>]+)>", header)
    assert found is not None, header
    return found.group(1), found.group(2), found.group(3)


def mailto_request(member: str, address: str, subject: str) -> EmailMessage:
    """What a mail client or provider sends for the mailto of List-Unsubscribe (RFC 2369)."""
    request = EmailMessage()
    request["From"], request["To"], request["Subject"] = member, address, subject
    request["Message-ID"] = f"<unsubscribe-{member}>"
    request.set_content("This message was automatically generated.")
    return request


def shown(cli: Run, address: str) -> dict[str, Any]:
    result = cli("subscribers", "show", address, "--json", now=NOW)
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_mailto_leaves_the_lists_the_one_click_link_leaves(
    cli: Run, site: Site, site_dir: Path, smtp_server: TestSMTPServer, tmp_path: Path
) -> None:
    import_and_write_issue(
        cli, site_dir, tmp_path, "ann@example.net,Ann,all-members disability-group\n"
    )
    sent = cli("send", "2026-11-20-news.md", "--to", "all-members", "--yes", now=NOW)
    assert sent.exit_code == 0, sent.stdout + sent.stderr
    [message] = smtp_server.messages
    link, address, subject = list_unsubscribe(message.data)
    assert (address, subject) == (message.mail_from, "unsubscribe")
    one_click = tokens.read(site.config, "unsubscribe", link.rsplit("/", 1)[1], now=NOW)
    request = mailto_request("ann@example.net", address, subject)
    request["Delivered-To"] = address  # as the bounce mailbox's server records it
    box = mailbox.mbox(tmp_path / "in.mbox")
    box.add(request.as_bytes())
    box.close()
    result = cli("bounces", "process", str(tmp_path / "in.mbox"), now=NOW)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "0 hard bounces, 0 soft bounces, 0 complaints, 1 unsubscribes, 0 already handled, "
        "0 ignored\n"
    )
    with database.transaction(site.engine) as s:
        left = s.scalars(
            select(Subscription.list_id).where(Subscription.status == "unsubscribed")
        ).all()
    assert sorted(left) == sorted(one_click["l"])
    ann = shown(cli, "ann@example.net")
    assert {x["list"]: x["status"] for x in ann["subscriptions"]} == {
        "all-members": "unsubscribed",
        "disability-group": "confirmed",
    }
    assert [(e["kind"], e["source"], e["method"]) for e in ann["ledger"][-1:]] == [
        ("unsubscribed", "email", "mailto")
    ]


@pytest.fixture
def postfix() -> Iterator[PostfixRelay]:
    """A real Postfix on loopback with mailboxes for alice, bob and bounces (postfixrelay.py)."""
    why = ""
    if not os.path.exists(postfixrelay.POSTFIX):
        why = "postfix is not installed (.ci/run installs Debian's postfix, 'No configuration')"
    elif os.geteuid() != 0:
        why = "Postfix's master must be started as root"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with postfixrelay.running(["alice", "bob"]) as relay:
        yield relay


def test_a_mailing_through_postfix_bounces_and_unsubscribes(
    cli: Run,
    site_dir: Path,
    postfix: PostfixRelay,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Postfix takes a mailing, delivers two copies, bounces the third with its own DSN to the
    VERP address, and carries a mailto unsubscribe to the same mailbox; one run reads both."""
    for name, value in {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(postfix.port),
        "SITE_BASE_URL": f"https://news.{ORG_DOMAIN}",
        "SITE_SENDER": f"Newsroom Lab <news@{ORG_DOMAIN}>",
        "SENDING_BOUNCE_ADDRESS": f"bounces@{ORG_DOMAIN}",
    }.items():
        monkeypatch.setenv(f"NEWSROOM_{name}", value)
    alice, bob, gone = (f"{who}@{MAIL_DOMAIN}" for who in ("alice", "bob", "gone"))
    import_and_write_issue(cli, site_dir, tmp_path, (
        f"{alice},Alice,all-members disability-group\n{bob},Bob,all-members\n"
        f"{gone},Gone,all-members\n"
    ))  # fmt: skip
    sent = cli("send", "2026-11-20-news.md", "--to", "all-members", "--yes", now=NOW)
    assert sent.exit_code == 0, sent.stdout + sent.stderr
    [to_alice] = postfix.wait_for(postfix.mbox("alice"), 1)
    postfix.wait_for(postfix.mbox("bob"), 1)
    [dsn] = postfix.wait_for(postfix.bounces, 1)
    report = message_from_bytes(dsn, policy=policy.default)
    assert report.get_content_type() == "multipart/report"
    verp_address = str(report["Delivered-To"])  # the VERP address of gone's delivery
    assert verp_address.startswith("bounces+") and verp_address.endswith(f"@{ORG_DOMAIN}")
    _link, address, subject = list_unsubscribe(to_alice)
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=postfixrelay.DEADLINE) as smtp:
        smtp.send_message(mailto_request(alice, address, subject))
    postfix.wait_for(postfix.bounces, 2)

    result = cli("bounces", "process", str(postfix.bounces), now=NOW)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "1 hard bounces, 0 soft bounces, 0 complaints, 1 unsubscribes, 0 already handled, "
        "0 ignored\n"
    )
    listed = cli("bounces", "--json", now=NOW)
    [bounce] = json.loads(listed.stdout)
    assert (bounce["email"], bounce["kind"], bounce["score"]) == (gone, "hard", 1.0)
    assert bounce["diagnostic"] == '5.1.1 X-Postfix; unknown user: "gone"'
    gone_shown = shown(cli, gone)
    assert [x["status"] for x in gone_shown["subscriptions"]] == ["confirmed"]  # 1 < 3
    assert gone_shown["ledger"][-1]["detail"] == (
        'hard bounce scored 1 (total 1 in 30 days): 5.1.1 X-Postfix; unknown user: "gone"'
    )
    alice_shown = shown(cli, alice)
    assert {x["list"]: x["status"] for x in alice_shown["subscriptions"]} == {
        "all-members": "unsubscribed",
        "disability-group": "confirmed",
    }
    last = alice_shown["ledger"][-1]
    assert (last["kind"], last["list"], last["source"], last["method"]) == (
        "unsubscribed", "all-members", "email", "mailto"
    )  # fmt: skip
    assert [x["status"] for x in shown(cli, bob)["subscriptions"]] == ["confirmed"]
    again = cli("bounces", "process", str(postfix.bounces), now=NOW)
    assert again.stdout.startswith(
        "0 hard bounces, 0 soft bounces, 0 complaints, 0 unsubscribes, 2 already handled"
    )


def test_a_confirmation_through_postfix_is_signed_and_its_bounce_ends_the_request(
    cli: Run,
    site_dir: Path,
    postfix: PostfixRelay,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dkim_key: tuple[bytes, bytes],
) -> None:
    """Two people ask for a list: Postfix delivers alice's confirmation email, signed, and
    bounces gone's with its own DSN to the confirmation's envelope address; processing it ends
    gone's request and leaves alice's."""
    for name, value in {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(postfix.port),
        "SITE_SENDER": f"Newsroom Lab <news@{ORG_DOMAIN}>",
        "SENDING_BOUNCE_ADDRESS": f"bounces@{ORG_DOMAIN}",
    }.items():
        monkeypatch.setenv(f"NEWSROOM_{name}", value)
    verifies = sign_with_dkim(site_dir, dkim_key, monkeypatch)
    alice, gone = f"alice@{MAIL_DOMAIN}", f"gone@{MAIL_DOMAIN}"
    for who in (alice, gone):
        added = cli("subscribers", "add", who, "--list", "all-members", now=NOW)
        assert added.exit_code == 0, added.output
    [to_alice] = postfix.wait_for(postfix.mbox("alice"), 1)
    delivered = message_from_bytes(to_alice, policy=policy.default)
    assert str(delivered["Return-Path"]).startswith("<bounces+c")  # the envelope, kept
    assert verifies(to_alice.replace(b"\n", b"\r\n"))  # mbox keeps LF line ends
    [dsn] = postfix.wait_for(postfix.bounces, 1)
    assert str(message_from_bytes(dsn)["Delivered-To"]).startswith("bounces+c")
    result = cli("bounces", "process", str(postfix.bounces), now=NOW)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "1 hard bounces, 0 soft bounces, 0 complaints, 0 unsubscribes, 0 already handled, "
        f"0 ignored\n  {gone}: the confirmation email bounced; pending subscriptions set to "
        "bounced\n"
    )
    assert [x["status"] for x in shown(cli, gone)["subscriptions"]] == ["bounced"]
    assert shown(cli, gone)["ledger"][-1]["detail"] == (
        'hard bounce of the confirmation email: 5.1.1 X-Postfix; unknown user: "gone"'
    )
    assert [x["status"] for x in shown(cli, alice)["subscriptions"]] == ["pending"]
