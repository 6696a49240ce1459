"""Mailings end to end against a real SMTP server: freeze, send, outcomes, pause, resume."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from newsroom.database import transaction
from newsroom.delivery import journal, mailings
from newsroom.delivery.journal import Journal
from newsroom.delivery.mailings import Result
from newsroom.delivery.senders import SenderLock
from newsroom.errors import NewsroomError
from newsroom.mail import verp
from newsroom.models import BounceEvent, Delivery, MailingStatus, utcnow
from newsroom.site import Site
from tests.sendhelp import make_mailing, run, subscribe, subscribe_people, unsubscribe
from tests.smtpserver import TestSMTPServer


@pytest.fixture
def sending_site(
    smtp_server: TestSMTPServer, site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    monkeypatch.setenv("NEWSROOM_SMTP_CONNECTIONS", "3")
    monkeypatch.setenv("NEWSROOM_SMTP_TIMEOUT", "2")
    monkeypatch.setenv("NEWSROOM_SITE_BASE_URL", "https://news.example.org")
    monkeypatch.setenv("NEWSROOM_SENDING_BOUNCE_ADDRESS", "bounces@example.org")
    site = Site.open(site_dir)
    yield site
    site.close()


def statuses(site: Site, mailing_id: int) -> dict[str, str]:
    with transaction(site.engine) as session:
        rows = session.execute(
            select(Delivery.email, Delivery.status).where(Delivery.mailing_id == mailing_id)
        )
        return {email: status for email, status in rows}


def test_mailing_sends_one_message_per_address(
    sending_site: Site, smtp_server: TestSMTPServer
) -> None:
    emails = subscribe(sending_site, 12)
    created = make_mailing(sending_site)
    assert (created.count, created.already) == (12, 0)
    report = run(sending_site, created.mailing_id)
    assert report.done and report.sent == 12
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(emails)
    message = smtp_server.to("p3@example.net")[0]
    assert message.message["To"] == "Person 3 <p3@example.net>"
    assert message.message["List-Id"] == "Test Newsroom <all-members.news.example.org>"
    unsubscribe_header = message.message["List-Unsubscribe"]
    assert unsubscribe_header.startswith("<https://news.example.org/unsubscribe/")
    assert f"<mailto:{message.mail_from}?subject=unsubscribe>" in unsubscribe_header
    delivery_id = verp.delivery_id(sending_site.config, message.mail_from)
    with transaction(sending_site.engine) as session:
        assert session.get_one(Delivery, delivery_id).email == "p3@example.net"
    assert "Dear Person," in message.body()
    assert set(statuses(sending_site, created.mailing_id).values()) == {"sent"}
    assert mailings.get(sending_site.engine, created.mailing_id).status == MailingStatus.DONE


def test_same_issue_is_not_sent_twice_to_an_address(sending_site: Site) -> None:
    subscribe(sending_site, 3)
    first = make_mailing(sending_site)
    run(sending_site, first.mailing_id)
    with pytest.raises(NewsroomError) as refused:
        make_mailing(sending_site)
    assert str(refused.value) == (
        "nobody to send to: 3 addresses already had issue 'Save our socialists' "
        "(issues/2020-12-24-save-our-socialists.md) from mailing 1; --again sends to them too"
    )
    subscribe(sending_site, 2, start=3)
    second = make_mailing(sending_site)
    assert (second.count, second.already) == (2, 3)
    again = make_mailing(sending_site, again=True)
    assert again.count == 5
    other = make_mailing(sending_site, slug="another-issue")
    assert other.count == 5


def test_failures_are_recorded_by_kind(sending_site: Site, smtp_server: TestSMTPServer) -> None:
    subscribe(sending_site, 4)
    smtp_server.fail("RCPT", 550, "5.1.1 No such user", match="p1@")
    smtp_server.fail("RCPT", 451, "4.3.0 Try again later", match="p2@")
    created = make_mailing(sending_site)
    report = run(sending_site, created.mailing_id)
    assert (report.sent, report.failed, report.deferred) == (2, 1, 1)
    assert not report.done and report.next_retry is not None
    with transaction(sending_site.engine) as session:
        rows = {d.email: d for d in session.scalars(select(Delivery))}
        bounces = session.scalars(select(BounceEvent)).all()
    assert rows["p1@example.net"].status == "failed"
    assert rows["p1@example.net"].last_response == "550 5.1.1 No such user"
    assert [(b.kind, b.delivery_id) for b in bounces] == [("hard", rows["p1@example.net"].id)]
    deferred = rows["p2@example.net"]
    assert deferred.status == "deferred" and deferred.attempts == 1
    wait = deferred.next_attempt_at - utcnow()  # type: ignore[operator]
    assert timedelta(minutes=2) < wait < timedelta(minutes=8)
    # later the relay takes it
    smtp_server.reset()
    report = run(sending_site, created.mailing_id, clock=lambda: utcnow() + timedelta(hours=1))
    assert report.done and report.sent == 1
    assert statuses(sending_site, created.mailing_id)["p2@example.net"] == "sent"


def test_retries_end_with_the_retry_window(sending_site: Site, smtp_server: TestSMTPServer) -> None:
    subscribe(sending_site, 1)
    smtp_server.fail("DATA", 452, "4.2.2 Mailbox full")
    created = make_mailing(sending_site)
    run(sending_site, created.mailing_id)
    late = utcnow() + timedelta(hours=49)
    report = run(sending_site, created.mailing_id, clock=lambda: late)
    assert report.failed == 1 and report.done
    with transaction(sending_site.engine) as session:
        delivery = session.scalars(select(Delivery)).one()
        assert delivery.last_response.startswith("out of retries: 452")
        assert session.scalars(select(BounceEvent)).all() == []  # a 4xx is no hard bounce


def test_policy_rejection_pauses_the_mailing(
    sending_site: Site, smtp_server: TestSMTPServer
) -> None:
    subscribe(sending_site, 30)
    smtp_server.fail("MAIL", 550, "5.7.1 Sender address rejected: not owned by you")
    created = make_mailing(sending_site)
    report = run(sending_site, created.mailing_id)
    assert "5.7.1 Sender address rejected" in report.paused
    mailing = mailings.get(sending_site.engine, created.mailing_id)
    assert mailing.status == MailingStatus.PAUSED
    assert "5.7.1 Sender address rejected: not owned by you" in mailing.paused_reason
    counted = Counter(statuses(sending_site, created.mailing_id).values())
    assert counted == {"pending": 30}  # the relay refused us, not them: nobody is marked failed
    # resumed once the relay is fixed: everyone gets it once
    smtp_server.reset()
    mailings.resume(sending_site.engine, created.mailing_id)
    assert run(sending_site, created.mailing_id).sent == 30
    assert len(smtp_server.messages) == 30


def test_a_run_of_errors_pauses_the_mailing(
    sending_site: Site, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sending_site.config._values["sending.max_consecutive_errors"] = 5
    subscribe(sending_site, 40)
    smtp_server.fail("RCPT", 451, "4.7.0 Temporary server error")
    created = make_mailing(sending_site)
    report = run(sending_site, created.mailing_id)
    assert (
        "errors in a row" in report.paused and "451 4.7.0 Temporary server error" in report.paused
    )
    counted = Counter(statuses(sending_site, created.mailing_id).values())
    assert counted["deferred"] <= 8 and counted["pending"] >= 32  # stopped within a batch


def test_unsendable_deliveries_fail_with_the_reason_and_are_counted(
    sending_site: Site, smtp_server: TestSMTPServer
) -> None:
    """Deliveries that never reach the relay (no SMTPUTF8 for a UTF-8 local part; a name no
    header can hold, from a row written around our checks) are failed with the reason, counted
    in the report exactly as the database has them, score no bounce, and, being no relay
    error, do not pause the mailing however many come in a row."""
    sending_site.config._values["sending.max_consecutive_errors"] = 2
    smtp_server.smtputf8 = False
    utf8 = ["josé@bücher.example", "zoë@example.net", "łukasz@example.net"]
    people = {"ann@example.net": "Ann", **dict.fromkeys(utf8, "X"), "bad@example.net": "A\nB"}
    subscribe_people(sending_site, people)
    created = make_mailing(sending_site)
    report = run(sending_site, created.mailing_id)
    assert report.done and not report.paused
    counts = mailings.counts(sending_site.engine, created.mailing_id)
    assert (report.sent, report.failed) == (counts["sent"], counts["failed"]) == (1, 4)
    why = (
        f"not sent: the relay 127.0.0.1:{smtp_server.port} does not offer SMTPUTF8 (RFC 6531), "
        "needed for an address with non-ASCII characters before the @"
    )
    with transaction(sending_site.engine) as session:
        rows = {d.email: d for d in session.scalars(select(Delivery))}
        assert session.scalars(select(BounceEvent)).all() == []
    assert {e: rows[e].last_response for e in utf8} == dict.fromkeys(utf8, why)
    assert rows["bad@example.net"].last_response.startswith(
        "not sent: the To header must not contain a line break"
    )
    assert [m.rcpt_tos for m in smtp_server.messages] == [["ann@example.net"]]


def test_unsubscribe_mid_mailing_takes_effect(
    sending_site: Site, smtp_server: TestSMTPServer
) -> None:
    sending_site.config._values["sending.batch"] = 1
    subscribe(sending_site, 6)
    created = make_mailing(sending_site)

    def first_sent(result: Result) -> None:
        if result.claimed.email == "p0@example.net":
            unsubscribe(sending_site, "p4@example.net")

    report = run(sending_site, created.mailing_id, on_result=first_sent)
    assert report.sent == 5 and report.skipped == 1
    assert smtp_server.to("p4@example.net") == []
    assert statuses(sending_site, created.mailing_id)["p4@example.net"] == "skipped"


def test_uncertain_deliveries_are_not_resent_unless_asked(
    sending_site: Site, smtp_server: TestSMTPServer
) -> None:
    subscribe(sending_site, 10)
    created = make_mailing(sending_site)
    # a sender that died after claiming three deliveries
    mailings.claim(sending_site.engine, created.mailing_id, "gone:1:abc", 3, utcnow())
    with SenderLock(sending_site.engine) as lock:
        assert mailings.counts(sending_site.engine, created.mailing_id, lock).uncertain == 3
        report = run(sending_site, created.mailing_id, lock=lock)
        assert report.done and report.sent == 7 and report.uncertain == 3
        assert mailings.resend_uncertain(sending_site.engine, created.mailing_id, lock) == 3
    mailings.resume(sending_site.engine, created.mailing_id)
    report = run(sending_site, created.mailing_id)
    assert report.sent == 3 and report.uncertain == 0
    assert len(smtp_server.messages) == 10


def test_sqlite_allows_one_sender_at_a_time(sending_site: Site) -> None:
    if sending_site.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL allows many senders")
    with SenderLock(sending_site.engine), pytest.raises(NewsroomError, match="one .* at a time"):
        SenderLock(sending_site.engine).acquire()


def test_three_senders_on_postgresql_never_double(
    sending_site: Site, smtp_server: TestSMTPServer
) -> None:
    if sending_site.engine.dialect.name == "sqlite":
        pytest.skip("needs PostgreSQL (SKIP LOCKED)")
    sending_site.config._values["sending.batch"] = 7
    emails = subscribe(sending_site, 300)
    created = make_mailing(sending_site)
    reports = []

    def work() -> None:
        reports.append(run(sending_site, created.mailing_id))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert sorted(received) == sorted(emails) and set(received.values()) == {1}
    assert sum(r.sent for r in reports) == 300
    assert all(r.sent > 0 for r in reports)
    assert mailings.get(sending_site.engine, created.mailing_id).status == MailingStatus.DONE


def test_cancel_skips_what_is_left(sending_site: Site) -> None:
    subscribe(sending_site, 3)
    created = make_mailing(sending_site)
    assert mailings.cancel(sending_site.engine, created.mailing_id, utcnow()) == 3
    with pytest.raises(NewsroomError, match="cancelled"):
        mailings.resume(sending_site.engine, created.mailing_id)
    # a cancelled mailing does not count as "already had it"
    assert make_mailing(sending_site).count == 3


def by_id(site: Site, mailing_id: int) -> dict[int, tuple[str, int]]:
    with transaction(site.engine) as session:
        rows = session.execute(
            select(Delivery.id, Delivery.status, Delivery.attempts).where(
                Delivery.mailing_id == mailing_id
            )
        )
        return {id_: (status, attempts) for id_, status, attempts in rows}


def dead_sender(site: Site, mailing_id: int, claims: int, boot: str | None = None) -> Journal:
    """A sender that claimed CLAIMS deliveries and wrote a journal, then died (its journal
    closed without being discarded, as the kernel closes it after a SIGKILL)."""
    mailings.claim(site.engine, mailing_id, "gone:1:abc", claims, utcnow())
    return Journal(journal.folder(site.root), "gone:1:abc", mailing_id, boot=boot)


def test_a_dead_senders_journal_settles_all_but_the_unanswered(sending_site: Site) -> None:
    subscribe(sending_site, 8)
    created = make_mailing(sending_site)
    written = dead_sender(sending_site, created.mailing_id, 6)
    first = min(by_id(sending_site, created.mailing_id))
    one, two, three, four = first, first + 1, first + 2, first + 3  # five and six: never handed
    written.handed(one)
    written.answered(one, 250)
    written.handed(two)  # the dot went out, no answer: uncertain
    written.handed(three)
    written.answered(three, 451)
    written.handed(four)
    written.answered(four, 250)
    written.close(discard=False)
    with SenderLock(sending_site.engine) as lock:
        where = journal.folder(sending_site.root)
        assert (
            mailings.reconcile(sending_site.engine, created.mailing_id, lock, where, utcnow()) == 5
        )
        assert mailings.counts(sending_site.engine, created.mailing_id, lock).uncertain == 1
    rows = by_id(sending_site, created.mailing_id)
    assert [rows[i] for i in (one, two, three, four)] == [
        ("sent", 1), ("sending", 1), ("pending", 1), ("sent", 1)
    ]  # fmt: skip
    assert rows[first + 4] == rows[first + 5] == rows[first + 6] == ("pending", 0)
    assert not journal.path(where, "gone:1:abc", created.mailing_id).exists()


def test_a_journal_of_another_boot_or_a_live_writer_is_not_trusted(sending_site: Site) -> None:
    subscribe(sending_site, 4)
    created = make_mailing(sending_site)
    written = dead_sender(sending_site, created.mailing_id, 3, boot="another-boot")
    for key in by_id(sending_site, created.mailing_id):
        written.handed(key)
        written.answered(key, 250)
    where = journal.folder(sending_site.root)
    with SenderLock(sending_site.engine) as lock:
        # still open: its writer holds the flock, so it may be alive (another database session)
        assert (
            mailings.reconcile(sending_site.engine, created.mailing_id, lock, where, utcnow()) == 0
        )
        written.close(discard=False)  # died after a power cut: the page cache may have lost lines
        assert (
            mailings.reconcile(sending_site.engine, created.mailing_id, lock, where, utcnow()) == 0
        )
        assert mailings.counts(sending_site.engine, created.mailing_id, lock).uncertain == 3


def test_a_journal_cut_short_or_garbled() -> None:
    header = b"newsroom-journal 1 boot-1 host:1:ab\n"
    said = journal.parse(header + b"h 7\na 7 250\nh 8\na 8 2", "host:1:ab", "boot-1")
    assert said is not None and said.answered == {7: 250} and said.handed == {8}
    assert journal.parse(header + b"h 7\nx 9\n", "host:1:ab", "boot-1") is None
    assert journal.parse(header + b"h 7\n", "host:1:ab", "boot-2") is None
    assert journal.parse(header + b"h 7\n", "other:2:cd", "boot-1") is None
    assert journal.parse(b"newsroom-journal 1  host:1:ab\nh 7\n", "host:1:ab", "") is None


def test_a_clean_run_leaves_no_journal_and_journal_off_writes_none(sending_site: Site) -> None:
    subscribe(sending_site, 3)
    where = journal.folder(sending_site.root)
    assert run(sending_site, make_mailing(sending_site).mailing_id).sent == 3
    assert list(where.iterdir()) == []  # everything it said is in the database now
    sending_site.config._values["sending.journal"] = False
    where.rmdir()
    assert run(sending_site, make_mailing(sending_site, slug="second").mailing_id).sent == 3
    assert not where.exists()
