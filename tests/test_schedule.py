"""Scheduled mailings (issue #16, item 1): `send --at` records one and freezes nothing, `mailings`
shows it, `send --at` again moves it, `mailings cancel` cancels it, and `worker` — its clock
passed in, never slept on — freezes and sends it when it falls due, after reading and checking
the issue again. Also: no issue before its date without `--now`, two workers never both freeze
one (SQLite and PostgreSQL), and a real `newsroom worker` process picking one up."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select, text

from newsroom.database import transaction
from newsroom.delivery import audience, dispatch, mailings, outbox, schedule
from newsroom.errors import NewsroomError
from newsroom.models import Delivery, Mailing, MailingStatus, MailingVariant, utcnow
from newsroom.site import Site
from newsroom.web import archive
from tests.conftest import Run
from tests.sendhelp import Workers, subscribe, wait_for
from tests.smtpserver import TestSMTPServer
from tests.test_cli_sending import error_line, received_at_least
from tests.test_migrations import alembic_config

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # the commands' clock: 1 December, 10:00 GMT
DUE = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)  # "2026-12-05 09:00" in London (GMT in December)
ISSUE = "issues/2026-12-04-bulletin.md"  # as the site knows it
NAME = "2026-12-04-bulletin.md"  # as a command is given it


def write_issue(root: Path, body: str = "News for the week.", date: str = "2026-12-04") -> Path:
    path = root / ISSUE
    path.write_text(
        f"---\ntitle: Bulletin\ndate: {date}\nto: all-members\nsummary: This week.\n---\n"
        f"Dear {{{{first_name|friend}}}},\n\n{body}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def opened(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    monkeypatch.setenv("NEWSROOM_SMTP_TIMEOUT", "3")
    write_issue(site_dir)
    site = Site.open(site_dir)
    subscribe(site, 3)
    yield site
    site.close()


def at_nine(cli: Run, *extra: str, now: datetime = NOW) -> str:
    result = cli("send", NAME, "--at", "2026-12-05 09:00", "--yes", *extra, now=now)
    assert result.exit_code == 0, result.output
    return result.output


def rows(site: Site, table: type) -> int:
    with transaction(site.engine) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def work(site: Site, now: datetime) -> int:
    return dispatch.work(site, once=True, poll=0.01, watch=dispatch.Quiet(), clock=lambda: now)


# --- the time --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "instant"),
    [
        ("2026-12-05 09:00", "2026-12-05T09:00:00+00:00"),  # GMT in winter
        ("2026-07-05 9:00", "2026-07-05T08:00:00+00:00"),  # BST in summer
        ("2026-12-05T09:00", "2026-12-05T09:00:00+00:00"),
        ("2026-12-05 09:00 +01:00", "2026-12-05T08:00:00+00:00"),
        ("2026-12-05T09:00-05:00", "2026-12-05T14:00:00+00:00"),
        ("2026-12-05 09:00Z", "2026-12-05T09:00:00+00:00"),
        ("2026-12-05 09:00 UTC", "2026-12-05T09:00:00+00:00"),
        ("2026-12-05 09:00 Europe/Paris", "2026-12-05T08:00:00+00:00"),
        ("2026-10-25 01:30", "2026-10-25T00:30:00+00:00"),  # twice that night: the first
    ],
)
def test_at_is_in_the_site_time_zone_unless_it_says(given: str, instant: str) -> None:
    assert schedule.parse_at(given, "Europe/London").isoformat() == instant


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("tomorrow", 'write the date and time as YYYY-MM-DD HH:MM, such as "2026-12-05 09:00"'),
        ("2026-12-05", "write the date and time as YYYY-MM-DD HH:MM"),
        ("2026-02-30 09:00", "no such date or time"),
        ("2026-12-05 24:00", "no such date or time"),
        ("2026-03-29 01:30", "2026-03-29 01:30 does not exist in Europe/London (the clocks go"),
        ("2026-12-05 09:00 +15:00", 'bad UTC offset "+15:00"'),
        ("2026-12-05 09:00 Mars/Olympus", 'unknown time zone "Mars/Olympus"'),
    ],
)
def test_a_time_that_cannot_be_read_says_how_to_write_it(given: str, words: str) -> None:
    with pytest.raises(NewsroomError) as info:
        schedule.parse_at(given, "Europe/London")
    assert str(info.value).startswith(f'--at "{given}"') and words in str(info.value)


def test_a_time_in_the_past_or_years_away_is_an_error(cli: Run, opened: Site) -> None:
    past = cli("send", NAME, "--at", "2026-12-01 09:59", "--yes", now=NOW)
    assert error_line(past) == (
        "Error: --at 2026-12-01 09:59 GMT is in the past (it is 2026-12-01 10:00 GMT now): give "
        "a later time, or leave out --at to send now"
    )
    typo = cli("send", NAME, "--at", "2062-12-05 09:00", "--yes", now=NOW)
    assert "is more than two years away: is the year right?" in error_line(typo)
    assert error_line(cli("send", NAME, "--at", "soon", now=NOW)).startswith('Error: --at "soon"')
    assert rows(opened, Mailing) == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--dry-run"], "--at schedules a real send: it does not go with --dry-run or --test"),
        (["--test", "ed@example.net"], "it does not go with --dry-run or --test"),
    ],
)
def test_at_goes_with_real_sends_only(cli: Run, opened: Site, args: list[str], words: str) -> None:
    assert words in error_line(cli("send", NAME, "--at", "2026-12-05 09:00", *args, now=NOW))
    resumed = cli("send", "--resume", "1", "--at", "2026-12-05 09:00", now=NOW)
    assert "--resume ID takes no ISSUE, --to, --from, --dry-run, --test, --again, --at or" in (
        error_line(resumed)
    )


# --- scheduling, listing, moving, cancelling ---------------------------------------------------


def test_send_at_records_a_mailing_and_freezes_nothing(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    asked = cli("send", NAME, "--at", "2026-12-05 09:00", input="y\n", now=NOW)
    assert asked.exit_code == 0, asked.output
    assert asked.output.splitlines()[:2] == [
        "Schedule 'Bulletin' to 'all-members' for 2026-12-05 09:00 GMT: 3 recipient(s) today, "
        f"from newsroom@example.org through 127.0.0.1:{smtp_server.port}? [y/N]: y",
        "mailing 1 scheduled for 2026-12-05 09:00 GMT",
    ]
    assert "`newsroom worker --once` from cron" in asked.output
    assert (rows(opened, Delivery), rows(opened, MailingVariant), smtp_server.messages) == (
        0,
        0,
        [],
    )
    mailing = mailings.get(opened.engine, 1)
    assert (mailing.status, mailing.scheduled_at, mailing.frozen_at) == ("scheduled", DUE, None)
    listed = cli("mailings", now=NOW).output.splitlines()
    assert listed[1].split() == ["1", "scheduled", "bulletin", "0", "0", "0", "all-members"]
    assert listed[2].strip() == f"at 2026-12-05 09:00 GMT, from {ISSUE}"
    [row] = json.loads(cli("mailings", "--json", now=NOW).output)
    assert (row["scheduled_at"], row["frozen_at"], row["issue_path"], row["to"]) == (
        "2026-12-05T09:00:00+00:00", None, ISSUE, "all-members"
    )  # fmt: skip
    shown = cli("mailings", "show", "1", now=NOW).output
    assert "at:      2026-12-05 09:00 GMT (not frozen yet)" in shown
    said_no = cli("send", NAME, "--at", "2026-12-06 09:00", input="n\n", now=NOW)
    assert said_no.output.splitlines()[-1] == "Nothing scheduled."
    assert mailings.get(opened.engine, 1).scheduled_at == DUE
    assert archive.sent_to(opened, "all-members") == set()  # not in the list's feed yet


def test_send_at_again_moves_it_and_another_audience_is_another_mailing(
    cli: Run, opened: Site
) -> None:
    at_nine(cli)
    moved = cli("send", NAME, "--at", "2026-12-06 18:30 +00:00", "--yes", "--again", now=NOW)
    assert moved.exit_code == 0, moved.output
    assert moved.output.splitlines()[0] == (
        "mailing 1 moved from 2026-12-05 09:00 GMT to 2026-12-06 18:30 GMT"
    )
    mailing = mailings.get(opened.engine, 1)
    assert mailing.scheduled_at == datetime(2026, 12, 6, 18, 30, tzinfo=UTC) and mailing.again
    other = cli("send", NAME, "--to", "disability-group or all-members", "--at",
                "2026-12-05 09:00", "--yes", now=NOW)  # fmt: skip
    assert other.output.startswith("mailing 2 scheduled for 2026-12-05 09:00 GMT")
    assert rows(opened, Mailing) == 2


def test_sending_now_while_it_is_scheduled_is_refused(cli: Run, opened: Site) -> None:
    at_nine(cli)
    assert error_line(cli("send", NAME, "--yes", now=DUE)) == (
        f"Error: mailing 1 is scheduled to send {ISSUE} to 'all-members' at 2026-12-05 09:00 "
        "GMT: move it with --at TIME, or cancel it with `newsroom mailings cancel 1` before "
        "sending it now"
    )
    assert "is scheduled and has nobody in it yet" in error_line(cli("send", "--resume", "1"))
    assert "not sending: nothing to pause" in error_line(cli("mailings", "pause", "1"))


def test_a_cancelled_schedule_is_never_sent(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    at_nine(cli)
    cancelled = cli("mailings", "cancel", "1", now=NOW)
    assert cancelled.output == "mailing 1 cancelled: it was scheduled and will not be sent\n"
    assert work(opened, DUE + timedelta(days=1)) == 0
    assert smtp_server.messages == [] and rows(opened, Delivery) == 0
    assert at_nine(cli).startswith("mailing 2 scheduled")  # a new one: that one is cancelled


# --- the worker ------------------------------------------------------------------------------


def test_the_worker_freezes_and_sends_it_when_it_falls_due(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    at_nine(cli)
    assert work(opened, DUE - timedelta(minutes=1)) == 0  # not yet
    assert rows(opened, Delivery) == 0 and mailings.get(opened.engine, 1).status == "scheduled"
    subscribe(opened, 1, start=3)  # joins before it falls due: the audience is frozen then
    write_issue(opened.root, "News for the week, corrected.")  # edited: the issue is read again
    result = cli("worker", "--once", now=DUE)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "mailing 1 fell due: 4 deliveries frozen",
        "worker stopped: 4 sent",
    ]
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        f"p{i}@example.net" for i in range(4)
    ]
    assert "News for the week, corrected." in smtp_server.messages[0].body()
    mailing = mailings.get(opened.engine, 1)
    assert (mailing.status, mailing.frozen_at) == (MailingStatus.DONE, DUE)
    assert archive.sent_to(opened, "all-members") == {"bulletin"}
    assert "at:      2026-12-05 09:00 GMT (frozen and sent)" in cli("mailings", "show", "1").output
    assert work(opened, DUE + timedelta(hours=1)) == 0 and len(smtp_server.messages) == 4


def test_retries_are_counted_from_when_it_was_frozen(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    """Scheduled four days ahead, longer than sending.retry_hours (48): a 4xx at the time it
    goes is deferred and retried, not "out of retries"."""
    at_nine(cli)
    smtp_server.fail("RCPT", 451, "4.3.0 Try again later", match="p1@")
    assert work(opened, DUE) == 2
    with transaction(opened.engine) as session:
        deferred = session.scalars(select(Delivery).where(Delivery.status == "deferred")).one()
    assert deferred.email == "p1@example.net" and deferred.next_attempt_at is not None
    smtp_server.reset()
    assert work(opened, deferred.next_attempt_at) == 1


def shown_paused(cli: Run) -> list[str]:
    listed = cli("mailings").output.splitlines()
    return [line.strip() for line in listed[2:]]


def test_a_schedule_whose_issue_file_is_gone_is_paused_with_the_reason(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    at_nine(cli)
    (opened.root / ISSUE).unlink()
    result = cli("worker", "--once", now=DUE)
    assert result.exit_code == 0, result.output
    reason = f"not sent when due: {ISSUE} is gone (moved or deleted since it was scheduled)"
    assert result.output.splitlines()[1:] == [
        f"mailing 1 paused: {reason}",
        "worker stopped: 0 sent",
    ]
    assert shown_paused(cli) == [f"was due 2026-12-05 09:00 GMT, from {ISSUE}", f"paused: {reason}"]
    assert smtp_server.messages == [] and rows(opened, Delivery) == 0
    assert "was scheduled and never frozen" in error_line(cli("send", "--resume", "1"))
    write_issue(opened.root)  # put back, and scheduled again: the same mailing, moved
    assert at_nine(cli, now=DUE).startswith("mailing 1 moved from 2026-12-05 09:00 GMT")
    assert work(opened, DUE) == 3


@pytest.mark.parametrize(
    ("body", "date", "reason"),
    [
        (
            "::: statment Oops\nby: X\n\nText.\n:::",
            "2026-12-04",
            f"not sent when due: the issue no longer passes `newsroom check`: {ISSUE}:9: unknown "
            'block type "statment"',
        ),
        (
            "See [our site](www.example.org) and ![](a.png).",
            "2026-12-04",
            f"more: `newsroom check {ISSUE}` lists them)",
        ),
        (
            "News.",
            "2026-12-06",
            f"not sent when due: {ISSUE} is dated 2026-12-06 12:00 GMT, which has not come yet",
        ),
    ],
    ids=["broken", "two-problems", "dated-later"],
)
def test_a_schedule_whose_issue_no_longer_passes_is_paused_not_sent(
    cli: Run, opened: Site, smtp_server: TestSMTPServer, body: str, date: str, reason: str
) -> None:
    at_nine(cli)
    write_issue(opened.root, body, date=date)
    assert work(opened, DUE) == 0
    mailing = mailings.get(opened.engine, 1)
    assert mailing.status == MailingStatus.PAUSED and reason in mailing.paused_reason
    assert smtp_server.messages == [] and rows(opened, Delivery) == 0


def test_a_schedule_with_nobody_left_is_paused(cli: Run, opened: Site) -> None:
    at_nine(cli)
    with opened.engine.begin() as connection:
        connection.execute(text("UPDATE subscriptions SET status = 'unsubscribed'"))
    assert work(opened, DUE) == 0
    assert mailings.get(opened.engine, 1).paused_reason == (
        "not sent when due: nobody to send to: 'all-members' matches no confirmed subscriber"
    )
    assert rows(opened, MailingVariant) == 0  # the freeze was rolled back whole


# --- an issue before its date ------------------------------------------------------------------


def test_an_issue_is_not_sent_before_its_date_without_now(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    write_issue(opened.root, date="2026-12-05")  # published at noon, London time
    early = cli("send", NAME, "--yes", now=NOW)
    assert error_line(early) == (
        f"Error: {ISSUE} is dated 2026-12-05 12:00 GMT, which has not come yet: its email links "
        'to its page in the archive, which appears only then. Schedule it with --at "2026-12-05 '
        '12:00", or add --now to send it now all the same'
    )
    before = cli("send", NAME, "--at", "2026-12-05 09:00", "--yes", now=NOW)
    assert error_line(before) == (
        f"Error: {ISSUE} is dated 2026-12-05 12:00 GMT: --at 2026-12-05 09:00 GMT is before its "
        "date, and its email links to its page in the archive, which appears only then. Give "
        '--at "2026-12-05 12:00" or later, or add --now to send it early all the same'
    )
    assert cli("send", NAME, "--dry-run", now=NOW).exit_code == 0  # looking is fine
    assert cli("send", NAME, "--test", "ed@example.net", now=NOW).exit_code == 0
    assert at_nine(cli, "--now").startswith("mailing 1 scheduled for 2026-12-05 09:00 GMT")
    assert work(opened, DUE) == 3  # --now is kept for the freeze
    write_issue(opened.root, date="2026-12-20")
    now_anyway = cli("send", NAME, "--yes", "--now", "--again", now=NOW)
    assert now_anyway.exit_code == 0, now_anyway.output


# --- two workers -------------------------------------------------------------------------------


def freeze(site: Site, mailing_id: int, addressees: object = None) -> mailings.Created | None:
    planned = outbox.plan(site, NAME)
    if addressees is None:
        return outbox.freeze(site, planned, planned.target, mailing_id, DUE)
    assert planned.letterhead is not None
    return schedule.freeze(
        site.engine, mailing_id, issue_slug=planned.slug, subject="Bulletin",
        expression=planned.target, letterhead=planned.letterhead, variants=planned.variants,
        addressees=addressees, now=DUE,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_scheduled_mailing_is_frozen_once(cli: Run, opened: Site) -> None:
    at_nine(cli)
    first = freeze(opened, 1)
    assert first is not None and first.count == 3
    assert freeze(opened, 1) is None  # a second worker finds it no longer scheduled
    assert rows(opened, Delivery) == 3 and rows(opened, MailingVariant) == 1


def test_two_workers_freezing_at_once_on_postgresql(cli: Run, opened: Site) -> None:
    """While one worker is inside its freeze (its claim not yet committed), the other's claim
    skips the locked row (SKIP LOCKED) at once; on SQLite one writer at a time, and one sender
    at a time, make this moot."""
    if opened.engine.dialect.name == "sqlite":
        pytest.skip("on SQLite one writer runs at a time: the claim is serialised")
    at_nine(cli)
    inside, other_done = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}
    planned = outbox.plan(opened, NAME)

    def slow_addressees() -> object:
        inside.set()
        assert other_done.wait(30)
        return audience.addressees(opened.engine, "all-members", planned.choose)

    first = threading.Thread(
        target=lambda: outcome.setdefault("first", freeze(opened, 1, slow_addressees))
    )
    first.start()
    assert inside.wait(30)
    outcome["second"] = freeze(opened, 1)
    other_done.set()
    first.join(30)
    assert outcome["second"] is None
    created = outcome["first"]
    assert isinstance(created, mailings.Created) and created.count == 3
    assert rows(opened, Delivery) == 3


# --- a real worker process -------------------------------------------------------------------


@pytest.mark.slow
def test_a_running_worker_process_picks_up_a_scheduled_mailing(
    site_dir: Path, opened: Site, smtp_server: TestSMTPServer, workers: Workers
) -> None:
    """The process has the real clock: the mailing is recorded with the library, due a second
    ago by that clock, after the worker has started and looked once."""
    write_issue(site_dir, date="2020-12-04")  # dated before the real clock's today
    (worker,) = workers.start()
    now = utcnow()
    recorded = schedule.record(
        opened.engine, issue_slug="bulletin", issue_path=ISSUE, subject="Bulletin",
        expression="all-members", at=now - timedelta(seconds=1), again=False, early=False,
        now=now,
    )  # fmt: skip
    wait_for(partial(received_at_least, smtp_server, 3), "the scheduled mailing")
    wait_for(
        lambda: mailings.get(opened.engine, recorded.mailing_id).status == MailingStatus.DONE,
        "the mailing to be done",
    )
    worker.process.send_signal(signal.SIGTERM)
    lines = worker.finish()
    assert worker.process.returncode == 0, lines
    assert lines[1:] == [
        f"mailing {recorded.mailing_id} fell due: 3 deliveries frozen",
        "worker stopped: 3 sent",
    ]
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        f"p{i}@example.net" for i in range(3)
    ]


# --- the migration -----------------------------------------------------------------------------


def test_0004_counts_every_earlier_mailing_as_frozen_when_it_was_made(site: Site) -> None:
    command.downgrade(alembic_config(site), "0003")
    try:
        with site.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO mailings (issue_slug, issue_path, subject, expression, status, "
                    "paused_reason, created_at) VALUES ('x', 'issues/x.md', 'X', 'all-members', "
                    "'done', '', :at)"
                ),
                {"at": NOW.replace(tzinfo=None)},
            )
    finally:
        command.upgrade(alembic_config(site), "head")
    mailing = mailings.get(site.engine, 1)
    assert (mailing.frozen_at, mailing.scheduled_at, mailing.again) == (NOW, None, False)
