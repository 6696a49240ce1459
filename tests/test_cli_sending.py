"""`newsroom send --resume`, `mailings`, `worker`, `dev-smtp`: what a volunteer sees, including
every error path, a sender killed with SIGKILL and resumed, and Ctrl-C."""

from __future__ import annotations

import mailbox
import os
import random
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import select

from newsroom.delivery import mailings
from newsroom.delivery.senders import SenderLock
from newsroom.models import Delivery, MailingStatus, Subscriber, utcnow
from newsroom.people import subscribers
from newsroom.people.consent import Origin
from newsroom.people.subscribers import Leaving
from newsroom.site import Site
from tests.conftest import Run
from tests.sendhelp import Workers, make_mailing, newsroom, subscribe, wait_for
from tests.smtpserver import TestSMTPServer, free_port


@pytest.fixture
def fast(smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch) -> TestSMTPServer:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    monkeypatch.setenv("NEWSROOM_SMTP_TIMEOUT", "3")
    return smtp_server


@pytest.fixture
def opened(site_dir: Path, fast: TestSMTPServer) -> Iterator[Site]:
    site = Site.open(site_dir)
    yield site
    site.close()


def error_line(result: object) -> str:
    output = getattr(result, "output", "")
    assert getattr(result, "exit_code", None) == 1, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["send"], "give an ISSUE"),
        (["send", "--resend-uncertain"], "--resend-uncertain goes with --resume"),
        (["send", "x", "--resume", "1"], "--resume ID takes no ISSUE"),
        (["send", "--resume", "99"], "no mailing 99"),
        (["send", "no-such-issue", "--to", "all-members"], "no issue 'no-such-issue'"),
        (["mailings", "show", "99"], "no mailing 99"),
        (["mailings", "pause", "99"], "no mailing 99"),
        (["mailings", "cancel", "99"], "no mailing 99"),
    ],
)
def test_error_paths(cli: Run, args: list[str], words: str) -> None:
    assert words in error_line(cli(*args))


def test_resume_sends_the_rest_and_lists(cli: Run, opened: Site, fast: TestSMTPServer) -> None:
    subscribe(opened, 5)
    created = make_mailing(opened)
    mailings.pause(opened.engine, created.mailing_id, "paused by hand")
    result = cli("mailings")
    assert result.exit_code == 0
    assert "paused" in result.output and "save-our-socialists" in result.output
    result = cli("send", "--resume", str(created.mailing_id))
    assert result.exit_code == 0, result.output
    assert f"mailing {created.mailing_id} done: 5 sent, 0 failed" in result.output
    assert len(fast.messages) == 5
    shown = cli("mailings", "show", str(created.mailing_id))
    assert "status:  done" in shown.output and "sent: 5" in shown.output
    assert "already done" in error_line(cli("mailings", "cancel", str(created.mailing_id)))
    assert "not sending" in error_line(cli("mailings", "pause", str(created.mailing_id)))


def test_pause_then_cancel(cli: Run, opened: Site) -> None:
    subscribe(opened, 2)
    created = make_mailing(opened)
    ident = str(created.mailing_id)
    assert cli("mailings", "pause", ident).exit_code == 0
    assert mailings.get(opened.engine, created.mailing_id).status == MailingStatus.PAUSED
    result = cli("mailings", "cancel", ident)
    assert result.exit_code == 0 and "2 deliveries will not be sent" in result.output
    assert "was cancelled" in error_line(cli("send", "--resume", ident))


def test_policy_pause_is_one_clear_line(cli: Run, opened: Site, fast: TestSMTPServer) -> None:
    subscribe(opened, 3)
    created = make_mailing(opened)
    fast.fail("MAIL", 554, "5.7.1 Relay access denied")
    line = error_line(cli("send", "--resume", str(created.mailing_id)))
    assert line.startswith(f"Error: mailing {created.mailing_id} paused")
    assert "554 5.7.1 Relay access denied" in line


def test_unreachable_relay_stops_before_sending(
    cli: Run, opened: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribe(opened, 1)
    created = make_mailing(opened)
    mailings.pause(opened.engine, created.mailing_id, "x")
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(free_port()))
    assert "cannot reach the SMTP relay" in error_line(
        cli("send", "--resume", str(created.mailing_id))
    )
    assert mailings.get(opened.engine, created.mailing_id).status == MailingStatus.PAUSED


def test_second_sender_on_sqlite_is_refused(cli: Run, opened: Site) -> None:
    if opened.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL allows many senders")
    subscribe(opened, 1)
    created = make_mailing(opened)
    with SenderLock(opened.engine):
        line = error_line(cli("send", "--resume", str(created.mailing_id)))
        assert "one `newsroom send` or `newsroom worker` runs at a time" in line
        assert "on SQLite" in error_line(cli("worker", "--once"))


def test_worker_once_sends_everything(cli: Run, opened: Site, fast: TestSMTPServer) -> None:
    subscribe(opened, 4)
    make_mailing(opened)
    make_mailing(opened, slug="second-issue")
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "worker stopped: 8 sent" in result.output
    assert len(fast.messages) == 8


def test_worker_once_with_the_relay_down_is_one_line(
    cli: Run, opened: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    subscribe(opened, 1)
    make_mailing(opened)
    port = free_port()
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(port))
    result = cli("worker", "--once")
    assert result.exit_code == 1 and "Traceback" not in result.output
    started, line = result.output.splitlines()
    assert started.startswith("worker ") and started.endswith(" started (Ctrl-C to stop)")
    assert line.startswith(f"Error: cannot reach the SMTP relay 127.0.0.1:{port}: ")
    assert line.endswith("(start one with `newsroom dev-smtp`, or set [smtp] host and port)")
    assert in_status(opened, 1, "pending") == ["p0@example.net"]  # nothing deferred or paused


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_worker_waits_for_mailings_outlasts_the_relay_and_stops_cleanly(
    workers: Workers,
    opened: Site,
    fast: TestSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    stop: signal.Signals,
) -> None:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "50/second")
    emails = subscribe(opened, 3)
    (worker,) = workers.start()  # on an idle site: nothing to do yet
    make_mailing(opened, slug="first")  # mailings made one after another, while it waits
    wait_for(partial(received_at_least, fast, 3), "the first mailing")
    make_mailing(opened, slug="second")
    wait_for(partial(received_at_least, fast, 6), "the second mailing")
    fast.stop()  # the relay goes down
    third = make_mailing(opened, slug="third")
    wait_for(partial(worker.says, "worker: cannot reach the SMTP relay"), "the worker to notice")
    assert worker.process.poll() is None
    assert in_status(opened, third.mailing_id, "pending") == emails  # nothing deferred
    fast.start()  # and comes back
    wait_for(partial(received_at_least, fast, 9), "the third mailing")
    wait_for(partial(worker.says, "worker: the relay answers again"), "the worker to say so")
    subscribe(opened, 197, start=3)
    created = make_mailing(opened, slug="fourth")
    wait_for(partial(in_status, opened, created.mailing_id, "sent"), "the fourth mailing")
    worker.process.send_signal(stop)  # mid-mailing
    lines = worker.finish()
    assert worker.process.returncode == 0, lines
    counts = mailings.counts(opened.engine, created.mailing_id)
    assert counts["sending"] == 0 and counts["pending"] > 0  # put back, not uncertain
    assert len(lines) == 4, lines  # started, relay down, relay back, stopped: nothing else
    assert lines[1].startswith("worker: cannot reach the SMTP relay 127.0.0.1:")
    assert lines[1].endswith("; trying again in 0.5 s, then less often (at most every 30 s)")
    assert lines[2:] == [
        "worker: the relay answers again",
        f"worker stopped: {9 + counts['sent']} sent",
    ]
    assert len(fast.messages) == 9 + counts["sent"]


@pytest.mark.slow
def test_two_workers_share_a_mailing_on_postgresql(
    workers: Workers,
    opened: Site,
    fast: TestSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if opened.engine.dialect.name == "sqlite":
        pytest.skip("on SQLite one sender runs at a time")
    monkeypatch.setenv("NEWSROOM_SENDING_BATCH", "20")
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "300/second")  # both together (sitepace.py)
    emails = subscribe(opened, 600)
    two = workers.start(2)
    created = make_mailing(opened)
    wait_for(partial(received_at_least, fast, 600), "every message")
    wait_for(
        lambda: mailings.get(opened.engine, created.mailing_id).status == MailingStatus.DONE,
        "the mailing to be done",
    )
    for worker in two:
        worker.process.send_signal(signal.SIGTERM)
    sent = [int(w.finish()[-1].removeprefix("worker stopped: ").removesuffix(" sent")) for w in two]
    assert [w.process.returncode for w in two] == [0, 0]
    received = Counter(m.rcpt_tos[0] for m in fast.messages)
    assert sorted(received) == sorted(emails) and set(received.values()) == {1}
    assert sum(sent) == 600 and min(sent) > 0  # both took part


ONE_CLICK = Origin("web", "one-click")


def received_at_least(server: TestSMTPServer, count: int) -> bool:
    return len(server.messages) >= count


def in_status(site: Site, mailing_id: int, status: str) -> list[str]:
    with site.engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.email).where(
                Delivery.mailing_id == mailing_id, Delivery.status == status
            )
        )
        return list(rows.scalars())


@pytest.mark.slow
def test_sigkill_at_random_instants_then_resume(
    site_dir: Path, opened: Site, fast: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten senders SIGKILLed at random instants, each mailing resumed: nobody lost; uncertain
    only what was handed to the relay without an answer (at most one per connection, whatever
    the batch); nobody doubled, except uncertain ones with --resend-uncertain."""
    connections = 4
    monkeypatch.setenv("NEWSROOM_SMTP_CONNECTIONS", str(connections))
    monkeypatch.setenv("NEWSROOM_SENDING_BATCH", "100")
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "400/second")
    chance = random.Random(10)
    emails = subscribe(opened, 200)
    killed_mid_way = 0
    for run in range(10):
        fast.reset()
        created = make_mailing(opened, slug=f"issue-{run}")
        ident = created.mailing_id
        # The instant: as soon as the first batch is claimed (before any connection is up), or
        # once the relay has received a number of messages drawn at random.
        received_first = chance.choice([0, *range(1, 200)])
        sender = newsroom(site_dir, "send", "--resume", str(ident))
        if received_first:
            wait_for(partial(received_at_least, fast, received_first), "messages")
        else:
            wait_for(partial(in_status, opened, ident, "sending"), "a claim")
        sender.send_signal(signal.SIGKILL)
        sender.communicate()
        killed_mid_way += 0 < len(fast.messages) < 200
        resend = ["--resend-uncertain"] if run % 2 else []
        finish = newsroom(site_dir, "send", "--resume", str(ident), *resend)
        output, _ = finish.communicate(timeout=60)
        assert finish.returncode == 0, output
        received = Counter(m.rcpt_tos[0] for m in fast.messages)
        twice = sum(n - 1 for n in received.values())
        if resend:
            uncertain = int(output.split(" uncertain deliveries will be sent again")[0])
            assert set(received) == set(emails), output
            assert twice <= uncertain <= connections, output
        else:
            left = in_status(opened, ident, "sending")  # uncertain: the resume left them be
            assert len(left) <= connections, output
            assert twice == 0, output
            assert set(emails) - set(received) <= set(left), output  # nobody lost
            assert len(in_status(opened, ident, "sent")) == 200 - len(left)
            if left:
                assert f"{len(left)} deliveries are uncertain" in output
    assert killed_mid_way >= 7


@pytest.mark.slow
def test_an_unsubscribe_mid_batch_stops_the_next_message(
    site_dir: Path, opened: Site, fast: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One-click unsubscribes committed while a batch is being sent: after the commit, at most
    one message per connection (those already on their way) still reaches those addresses."""
    connections = 4
    monkeypatch.setenv("NEWSROOM_SMTP_CONNECTIONS", str(connections))
    monkeypatch.setenv("NEWSROOM_SENDING_BATCH", "100")
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "200/second")  # a batch takes half a second
    emails = subscribe(opened, 300)
    created = make_mailing(opened)
    with opened.engine.connect() as connection:
        ids = dict(connection.execute(select(Subscriber.email, Subscriber.id)).all())
    sender = newsroom(site_dir, "send", "--resume", str(created.mailing_id))
    wait_for(partial(received_at_least, fast, 130), "messages")  # well into the second batch
    arrived = {m.rcpt_tos[0] for m in list(fast.messages)}
    leaving = [e for e in emails if e not in arrived]
    now = utcnow()
    requests = [
        Leaving(subscribers.unsubscribe_token(opened, ids[e], e, None, now=now), ONE_CLICK, now)
        for e in leaving
    ]
    answers = subscribers.unsubscribe_by_tokens(opened, requests)  # committed on return
    committed = len(fast.messages)
    assert all(answer == ["all-members"] for answer in answers)
    output, _ = sender.communicate(timeout=60)
    assert sender.returncode == 0, output
    late = [m.rcpt_tos[0] for m in fast.messages[committed:] if m.rcpt_tos[0] in set(leaving)]
    assert len(late) <= connections, late
    received = {m.rcpt_tos[0] for m in fast.messages}
    assert set(emails) - set(leaving) <= received
    skipped = in_status(opened, created.mailing_id, "skipped")
    assert set(skipped) == set(leaving) - received  # the rest of that batch too
    assert f"{len(skipped)} skipped" in output


@pytest.mark.slow
def test_ctrl_c_finishes_in_flight_and_pauses(
    site_dir: Path, opened: Site, fast: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "40/second")
    subscribe(opened, 200)
    created = make_mailing(opened)
    sender = newsroom(site_dir, "send", "--resume", str(created.mailing_id))
    wait_for(
        lambda: fast.messages, "the first message"
    )  # sending has begun: the interrupt lands mid-way
    sender.send_signal(signal.SIGINT)
    output, _ = sender.communicate(timeout=30)
    assert sender.returncode == 130, output
    assert f"mailing {created.mailing_id} paused" in output
    assert f"newsroom send --resume {created.mailing_id}" in output
    counts = mailings.counts(opened.engine, created.mailing_id)
    assert mailings.get(opened.engine, created.mailing_id).status == MailingStatus.PAUSED
    assert counts["sending"] == 0  # nothing left uncertain
    assert counts["sent"] == len(fast.messages) > 0
    assert counts["pending"] == 200 - len(fast.messages)


def test_dev_smtp_stores_messages_in_a_maildir(site_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "outbox"
    server = newsroom(site_dir, "dev-smtp", "--maildir", str(folder), "--port", str(port))
    try:
        for _ in range(100):
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        with client:
            client.ehlo()
            assert client.has_extn("pipelining")
            client.sendmail(
                "b@example.org", ["ann@example.net"], b"Subject: hi\r\n\r\n.dot\r\nok\r\n"
            )
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=10)
    assert server.returncode == 0, output
    assert "1 message(s) stored" in output
    [stored] = list(mailbox.Maildir(folder))
    assert stored["Subject"] == "hi" and stored["X-Envelope-To"] == "<ann@example.net>"
    assert stored.get_payload() == ".dot\nok\n"


def test_dev_smtp_port_in_use_is_one_line(cli: Run, fast: TestSMTPServer, tmp_path: Path) -> None:
    result = cli("dev-smtp", "--maildir", str(tmp_path / "m"), "--port", str(fast.port))
    assert "cannot listen on" in error_line(result)


def test_resend_uncertain_from_the_cli(cli: Run, opened: Site, fast: TestSMTPServer) -> None:
    subscribe(opened, 4)
    created = make_mailing(opened)
    mailings.claim(opened.engine, created.mailing_id, "gone:1:abc", 2, utcnow())
    result = cli("send", "--resume", str(created.mailing_id))
    assert result.exit_code == 0, result.output
    assert "2 deliveries are uncertain" in result.output and len(fast.messages) == 2
    shown = cli("mailings", "show", str(created.mailing_id))
    assert "2 uncertain" in shown.output
    result = cli("send", "--resume", str(created.mailing_id), "--resend-uncertain")
    assert "2 uncertain deliveries will be sent again" in result.output
    assert len(fast.messages) == 4 and os.path.exists(opened.root)


ISSUE = """---
title: Save our socialists
date: 2020-12-24
to: all-members
summary: MPs back the campaign.
---
Dear {{first_name|friend}},

Café — “quotes”.

.A line that starts with a dot.

::: only clp-secretaries
Secretaries only: the briefing.
:::
"""


@pytest.fixture
def issue(site_dir: Path) -> Path:
    path = site_dir / "issues" / "2020-12-24-save-our-socialists.md"
    path.write_text(ISSUE, encoding="utf-8")
    return path


def test_send_issue_end_to_end(cli: Run, opened: Site, fast: TestSMTPServer, issue: Path) -> None:
    subscribe(opened, 4)
    subscribe(opened, 2, "clp-secretaries", start=0)  # p0, p1 are on both lists
    dry = cli("send", "save-our-socialists", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "p0@example.net\temail+1" in dry.output and "p3@example.net\temail" in dry.output
    assert fast.messages == []
    refused = cli("send", "save-our-socialists", input="n\n")
    assert refused.exit_code == 0, refused.output
    assert refused.output == (
        "Send 'Save our socialists' to 'all-members': 4 recipient(s), from newsroom@example.org "
        f"through 127.0.0.1:{fast.port}? [y/N]: n\nNothing sent.\n"
    )
    assert fast.messages == []
    result = cli("send", "save-our-socialists", "--yes")
    assert result.exit_code == 0, result.output
    assert "done: 4 sent" in result.output
    assert len(fast.messages) == 4
    secret = fast.to("p0@example.net")[0].body()
    other = fast.to("p3@example.net")[0].body()
    assert "Secretaries only" in secret and "Secretaries only" not in other
    assert "Café — “quotes”." in other and ".A line that starts with a dot." in other
    assert "Dear Person," in other
    again = cli("send", "save-our-socialists", "--yes")
    assert error_line(again) == (
        "Error: nobody to send to: 'all-members' selects 4 subscriber(s); 4 addresses already "
        "had issue 'Save our socialists' (issues/2020-12-24-save-our-socialists.md) from "
        "mailing 1; --again sends to them too"
    )
    assert cli("send", "save-our-socialists", "--yes", "--again").exit_code == 0
    assert len(fast.messages) == 8


def test_send_answered_no_sends_nothing(
    cli: Run, opened: Site, fast: TestSMTPServer, issue: Path
) -> None:
    subscribe(opened, 2)
    for answer in ("n", ""):  # "n", or Enter (the default is no): the person chose
        result = cli("send", "save-our-socialists", input=answer + "\n")
        assert (result.exit_code, result.stderr) == (0, ""), result.output
        assert result.stdout.endswith(f"? [y/N]: {answer}\nNothing sent.\n")
    unanswered = cli("send", "save-our-socialists")  # the input ended: a script without --yes
    assert unanswered.exit_code == 1
    assert unanswered.stderr == (
        "Error: no answer: the input ended before one came (use --yes to go ahead without asking)\n"
    )
    assert cli("mailings").output.startswith("no mailings yet")
    assert fast.messages == []


def test_pausing_or_cancelling_a_finished_mailing(cli: Run, opened: Site, issue: Path) -> None:
    subscribe(opened, 1)
    assert cli("send", "save-our-socialists", "--yes").exit_code == 0
    assert error_line(cli("mailings", "pause", "1")) == (
        "Error: mailing 1 is done, not sending: nothing to pause"
    )
    assert error_line(cli("mailings", "cancel", "1")) == "Error: mailing 1 is already done"


def test_a_test_copy_the_relay_refuses(cli: Run, fast: TestSMTPServer, issue: Path) -> None:
    fast.fail("RCPT", 550, "5.1.1 No such user")
    assert error_line(cli("send", str(issue), "--test", "me@example.org")) == (
        "Error: the relay did not take the test copy: 550 5.1.1 No such user"
    )


def test_a_sender_without_an_address(
    cli: Run, issue: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SITE_SENDER", "Campaign News")
    assert "site.sender: 'Campaign News' has no email address (write Name <a@b.org>)" in (
        error_line(cli("send", str(issue), "--test", "me@example.org"))
    )


def test_send_test_copy(cli: Run, fast: TestSMTPServer, issue: Path) -> None:
    result = cli("send", str(issue), "--test", "me@example.org")
    assert result.exit_code == 0, result.output
    [copy] = fast.messages
    assert copy.message["Subject"] == "[TEST] Save our socialists"
    assert copy.rcpt_tos == ["me@example.org"]
    assert "Secretaries only" in copy.body()
    assert cli("mailings").output.startswith("no mailings yet")


def test_send_preflight_errors(
    cli: Run, opened: Site, issue: Path, monkeypatch: pytest.MonkeyPatch, site_dir: Path
) -> None:
    subscribe(opened, 1)
    bad = cli("send", "save-our-socialists", "--to", "nobody")  # segments.py points at the column
    assert bad.exit_code == 1 and bad.output.startswith("Error: segment: unknown list 'nobody'")
    assert "nobody to send to" in error_line(
        cli("send", "save-our-socialists", "--to", "disability-group", "--yes")
    )
    monkeypatch.setenv("NEWSROOM_DKIM_DOMAIN", "example.org")
    assert "dkim.selector and dkim.key_file" in error_line(
        cli("send", "save-our-socialists", "--dry-run")
    )
    monkeypatch.setenv("NEWSROOM_DKIM_SELECTOR", "news")
    monkeypatch.setenv("NEWSROOM_DKIM_KEY_FILE", "missing.pem")
    assert "dkim.key_file: cannot read" in error_line(
        cli("send", "save-our-socialists", "--dry-run")
    )
    (site_dir / "dkim.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n", "utf-8")
    monkeypatch.setenv("NEWSROOM_DKIM_KEY_FILE", "dkim.pem")
    assert "dkim.pem: not a PEM private key without a passphrase" in error_line(
        cli("send", "save-our-socialists", "--dry-run")
    )
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(site_dir / "dkim.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    assert "dkim.pem: not an RSA private key" in error_line(
        cli("send", "save-our-socialists", "--dry-run")
    )
    monkeypatch.delenv("NEWSROOM_DKIM_DOMAIN")
    monkeypatch.setenv("NEWSROOM_SENDING_DOMAIN_RATES", "gmail.com")
    assert "sending.domain_rates" in error_line(cli("send", "save-our-socialists", "--dry-run"))
    monkeypatch.delenv("NEWSROOM_SENDING_DOMAIN_RATES")
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(free_port()))
    assert "cannot reach the SMTP relay" in error_line(cli("send", "save-our-socialists", "--yes"))
    issue.write_text(ISSUE.replace("to: all-members\n", ""), encoding="utf-8")
    assert "no `to:` in the issue" in error_line(cli("send", "save-our-socialists"))
    issue.write_text(ISSUE.replace("title: Save our socialists\n", ""), encoding="utf-8")
    result = cli("send", "save-our-socialists")
    assert result.exit_code == 1 and "title" in result.output and "Traceback" not in result.output
    assert cli("mailings").output.startswith("no mailings yet")


@pytest.mark.slow
def test_helper_processes_share_a_mailing_without_doubles(
    cli: Run, opened: Site, fast: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SENDING_PROCESSES", "3")
    monkeypatch.setenv("NEWSROOM_SENDING_BATCH", "50")
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "600/second")  # for the three together
    emails = subscribe(opened, 6000)
    created = make_mailing(opened)
    started = time.monotonic()
    result = cli("send", "--resume", str(created.mailing_id))
    took = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert f"mailing {created.mailing_id} done: 6000 sent" in result.output
    assert took > 9.0, f"6000 messages at 600/s took {took:.1f} s: the processes overran the rate"
    received = Counter(m.rcpt_tos[0] for m in fast.messages)
    assert sorted(received) == sorted(emails) and set(received.values()) == {1}
    with opened.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT DISTINCT claimed_by FROM deliveries").all()
    claimants = {row[0] for row in rows}
    assert len(claimants) == 3  # the sender and its two helpers all took part


@pytest.mark.slow
def test_a_worker_starts_helper_processes_too(
    cli: Run, opened: Site, fast: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SENDING_PROCESSES", "2")
    monkeypatch.setenv("NEWSROOM_SENDING_BATCH", "50")
    # 10 s of sending: time enough for the helper to start on a loaded machine, whose worker
    # would otherwise finish all 4,000 alone at full speed before the helper has imported.
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "400/second")
    emails = subscribe(opened, 4000)
    make_mailing(opened)
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.output
    assert "worker stopped: 4000 sent" in result.output  # its own and its helper's
    received = Counter(m.rcpt_tos[0] for m in fast.messages)
    assert sorted(received) == sorted(emails) and set(received.values()) == {1}
    with opened.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT DISTINCT claimed_by FROM deliveries").all()
    assert len({row[0] for row in rows}) == 2


def interrupt_at(site_dir: Path, delay: float, *args: str) -> tuple[int, list[str], str]:
    """Start `newsroom ARGS` (its standard input open and never answered), wait until its own
    code runs — Python reports each finished import when asked (PYTHONPROFILEIMPORTTIME) — then
    DELAY seconds more, and press Ctrl-C. Returns the exit status, the lines the command wrote
    to stderr, and stdout."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    lines: list[str] = []
    started = threading.Event()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "newsroom", "--site", str(site_dir), *args],
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert process.stderr is not None and process.stdin is not None

        def read(stream: IO[str]) -> None:
            for line in stream:
                lines.append(line.rstrip("\n"))
                if line.rstrip().endswith("| newsroom.cli.console"):
                    started.set()

        reader = threading.Thread(target=read, args=(process.stderr,), daemon=True)
        reader.start()
        assert started.wait(60), "newsroom never started"
        time.sleep(delay)  # the moment of the interrupt is what is tested, drawn at random
        process.send_signal(signal.SIGINT)
        status = process.wait(60)
        reader.join(10)
        process.stdin.close()
        process.stderr.close()
        output.seek(0)
        said = [line for line in lines if not line.startswith("import time:")]
        return status, said, output.read()


@pytest.mark.slow
def test_ctrl_c_at_any_moment_is_one_line(site_dir: Path, opened: Site) -> None:
    """Ctrl-C while the command is still importing its libraries, reading its issue, or waiting
    at the "Send?" question: always the one line "Interrupted." and status 130."""
    subscribe(opened, 3)
    (site_dir / "issues" / "2026-11-20-news.md").write_text(
        "---\ntitle: News\ndate: 2026-11-20\nsummary: The news.\n---\nHello.\n", encoding="utf-8"
    )
    chance = random.Random(11)
    for _ in range(8):
        delay = chance.uniform(0.0, 1.5)
        status, said, stdout = interrupt_at(
            site_dir, delay, "send", "2026-11-20-news.md", "--to", "all-members"
        )
        assert "Traceback" not in stdout
        assert (status, said) == (130, ["Interrupted."]), (delay, said, stdout)


def no_smtputf8(server: TestSMTPServer) -> str:
    return (
        f"the relay 127.0.0.1:{server.port} does not offer SMTPUTF8 (RFC 6531), needed for an "
        "address with non-ASCII characters before the @"
    )


@pytest.mark.parametrize("smtputf8", [True, False], ids=["smtputf8", "no-smtputf8"])
def test_internationalised_addresses_and_counts_that_agree(
    cli: Run, opened: Site, fast: TestSMTPServer, issue: Path, tmp_path: Path, smtputf8: bool
) -> None:
    """The domain as an A-label (RFC 5890) in RCPT TO and To:; a UTF-8 local part with SMTPUTF8
    (RFC 6531, 6532) or, without it, failed with the reason; and `send`'s summary, `mailings
    show` and the database give the same counts."""
    fast.smtputf8 = smtputf8
    members = tmp_path / "members.csv"
    members.write_text(
        "email,name\nann@example.net,Ann Lee\nanna@münchen.de,Anna Lee\n"
        "josé@bücher.example,José Núñez\n",
        encoding="utf-8",
    )
    imported = cli(
        "subscribers", "import", str(members), "--list", "all-members",
        "--confirmed", "--consent", "Members' consent",
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    result = cli("send", "save-our-socialists", "--yes")
    assert result.exit_code == 0, result.output
    sent, failed = (3, 0) if smtputf8 else (2, 1)
    assert result.output.splitlines() == [
        "mailing 1: 3 deliveries frozen",
        f"mailing 1 done: {sent} sent, {failed} failed, 0 deferred, 0 skipped",
    ]
    shown = cli("mailings", "show", "1").output.splitlines()
    assert f"pending: 0  sending: 0  sent: {sent}  deferred: 0  failed: {failed}  skipped: 0" in (
        shown
    )
    with opened.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT email, status, last_response FROM deliveries WHERE mailing_id = 1"
        ).all()
    assert Counter(status for _email, status, _response in rows) == Counter(
        {"sent": sent, "failed": failed}
    )
    by_rcpt = {m.rcpt_tos[0]: m for m in fast.messages}
    anna = by_rcpt["anna@xn--mnchen-3ya.de"]
    assert anna.mail_options == []
    assert anna.raw_header(b"To") == b"To: Anna Lee <anna@xn--mnchen-3ya.de>\r\n"
    if smtputf8:
        jose = by_rcpt["josé@xn--bcher-kva.example"]
        assert jose.mail_options == ["SMTPUTF8"]
        assert jose.raw_header(b"To") == (
            "To: =?utf-8?b?Sm9zw6kgTsO6w7Fleg==?= <josé@xn--bcher-kva.example>\r\n".encode()
        )
    else:
        assert sorted(by_rcpt) == ["ann@example.net", "anna@xn--mnchen-3ya.de"]
        [response] = [r for email, _status, r in rows if email == "josé@bücher.example"]
        assert response == f"not sent: {no_smtputf8(fast)}"


def test_a_test_copy_to_an_internationalised_address(
    cli: Run, fast: TestSMTPServer, issue: Path
) -> None:
    result = cli("send", str(issue), "--test", "josé@bücher.example")
    assert (
        result.output
        == "sent a [TEST] copy of save-our-socialists to josé@bücher.example (250 OK queued)\n"
    )
    [copy] = fast.messages
    assert copy.rcpt_tos == ["josé@xn--bcher-kva.example"] and copy.mail_options == ["SMTPUTF8"]
    assert copy.raw_header(b"To") == "To: josé@xn--bcher-kva.example\r\n".encode()
    fast.reset()
    fast.smtputf8 = False
    assert error_line(cli("send", str(issue), "--test", "josé@bücher.example")) == (
        f"Error: the test copy to josé@bücher.example was not sent: {no_smtputf8(fast)}"
    )
    assert fast.messages == []
    assert cli("send", str(issue), "--test", "anna@münchen.de").exit_code == 0
    assert [m.rcpt_tos for m in fast.messages] == [["anna@xn--mnchen-3ya.de"]]


def bulletin(site_dir: Path, day: str, extra: str = "") -> Path:
    path = site_dir / "issues" / f"{day}-bulletin.md"
    path.write_text(
        f"---\ntitle: Bulletin of {day}\ndate: {day}\nto: all-members\n{extra}---\nNews.\n",
        encoding="utf-8",
    )
    return path


CLASH = (
    'issues/{0}-bulletin.md:1: the slug "bulletin" is also the slug of issues/{1}-bulletin.md: '
    'give one of them its own with "slug: ..." in its front matter (a slug is an issue\'s web '
    "address, and what sending goes by to know who already had it)"
)


def test_two_issues_with_one_slug_are_refused_by_check_build_and_send(
    cli: Run, opened: Site, fast: TestSMTPServer, tmp_path: Path
) -> None:
    subscribe(opened, 2)
    bulletin(opened.root, "2021-04-01")
    may = bulletin(opened.root, "2021-05-01")
    april_clash = CLASH.format("2021-04-01", "2021-05-01")
    may_clash = CLASH.format("2021-05-01", "2021-04-01")
    checked = cli("check")
    assert checked.exit_code == 1
    assert checked.stderr.splitlines() == [april_clash, may_clash]
    one = cli("check", str(may))
    assert (one.exit_code, one.stderr) == (1, may_clash + "\n")
    built = cli("build", "--out", str(tmp_path / "public"))
    assert (built.exit_code, built.stderr) == (1, f"{april_clash}\n{may_clash}\n")
    for args in (["send", str(may), "--dry-run"], ["send", str(may), "--yes"]):
        assert error_line(cli(*args)) == may_clash
    assert fast.messages == []


def test_dry_run_leaves_out_who_already_had_it_as_a_send_does(
    cli: Run, opened: Site, fast: TestSMTPServer, issue: Path
) -> None:
    subscribe(opened, 2)
    assert cli("send", "save-our-socialists", "--yes").exit_code == 0
    subscribe(opened, 2, start=2)
    had = (
        "2 addresses already had issue 'Save our socialists' "
        "(issues/2020-12-24-save-our-socialists.md) from mailing 1; --again sends to them too"
    )
    dry = cli("send", "save-our-socialists", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines() == ["p2@example.net\temail", "p3@example.net\temail"]
    assert dry.stderr.splitlines() == [
        had,
        "dry run: save-our-socialists to 'all-members': 2 get email; nothing sent",
    ]
    everyone = cli("send", "save-our-socialists", "--dry-run", "--again")
    assert len(everyone.stdout.splitlines()) == 4 and had not in everyone.output
    asked = cli("send", "save-our-socialists", input="n\n")
    assert asked.stdout.startswith(
        f"{had}\nSend 'Save our socialists' to 'all-members': 2 recipient(s), from "
        f"newsroom@example.org through 127.0.0.1:{fast.port}? [y/N]"
    )
    sent = cli("send", "save-our-socialists", "--yes")
    assert sent.exit_code == 0, sent.output
    assert sorted(m.rcpt_tos[0] for m in fast.messages[2:]) == ["p2@example.net", "p3@example.net"]


def test_a_slug_sent_from_another_issue_file_is_refused(
    cli: Run, opened: Site, fast: TestSMTPServer
) -> None:
    subscribe(opened, 2)
    april = bulletin(opened.root, "2021-04-01")
    assert cli("send", str(april), "--yes").exit_code == 0
    bulletin(opened.root, "2021-04-01", "slug: bulletin-april\n")  # the clash "fixed" the wrong way
    may = bulletin(opened.root, "2021-05-01")
    refused = cli("send", str(may), "--dry-run")
    assert error_line(refused) == (
        'Error: issues/2021-05-01-bulletin.md: mailing 1 sent the slug "bulletin" from '
        'issues/2021-04-01-bulletin.md, another issue: give this one its own with "slug: ..." in '
        "its front matter, or nobody who had that one would get this one"
    )
    bulletin(opened.root, "2021-05-01", "slug: bulletin-may\n")
    assert cli("send", str(may), "--yes").exit_code == 0
    assert len(fast.messages) == 4
