"""Welcome emails (issue #16, item 3): a list's welcome issue sent once to each person confirmed
on it — after a real confirmation POST to a real `newsroom serve`, `subscribers import
--welcome` and `subscribers add --welcome` — through the sending path of every mailing (DKIM,
VERP, one-click headers, the list's own sender), never twice (a rule in the database), and a
broken welcome issue stopping no confirmation while `check`, `lists` and the worker say why."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.testclient import TestClient

from newsroom.database import transaction
from newsroom.delivery import welcomes
from newsroom.mail import verp
from newsroom.models import (
    Delivery,
    Mailing,
    MailingList,
    Subscriber,
    Subscription,
    Welcome,
    WelcomeStatus,
    utcnow,
)
from newsroom.people import lists, subscribers
from newsroom.site import Site
from newsroom.web.app import create_app, static_files
from tests.conftest import Run
from tests.sendhelp import run, sign_with_dkim
from tests.smtpserver import Received, TestSMTPServer
from tests.webserver import start

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DG = "Disability Group <disability@dg.example.net>"
LISTS = """\
[all-members]
name = "All members"

[disability-group]
name = "Disability Group"
public = true
sender = "Disability Group <disability@dg.example.net>"
welcome = "issues/2026-11-01-welcome-disability-group.md"

[newsletter]
name = "Newsletter"
public = true
opt_in = "single"
welcome = "issues/2026-11-01-welcome-newsletter.md"
"""
WELCOME_LINE = 8  # of disability-group's welcome in LISTS
WELCOME = """\
---
title: Welcome to the Disability Group
date: 2026-11-01
summary: How the group works, and when it meets.
---
Dear {{first_name|friend}}, welcome to the group.

::: only tag:access-needs
Large-print copies of every bulletin are on their way to you.
:::
"""
NEWSLETTER = "---\ntitle: Welcome to the newsletter\ndate: 2026-11-01\n---\nHello {{name}}.\n"


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(result: Result, words: str) -> str:
    assert result.exit_code == 1, result.output
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


@pytest.fixture
def welcoming(site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site whose Disability Group (double opt-in, its own sender) and newsletter (single
    opt-in) each name a welcome issue."""
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    (site_dir / "subscribers" / "lists.toml").write_text(LISTS, encoding="utf-8")
    (site_dir / "issues" / "2026-11-01-welcome-disability-group.md").write_text(
        WELCOME, encoding="utf-8"
    )
    (site_dir / "issues" / "2026-11-01-welcome-newsletter.md").write_text(
        NEWSLETTER, encoding="utf-8"
    )
    return site_dir


@pytest.fixture
def opened(welcoming: Path) -> Iterator[Site]:
    site = Site.open(welcoming)
    lists.sync(site)
    yield site
    site.close()


def welcomes_to(smtp_server: TestSMTPServer, address: str) -> list[Received]:
    return [m for m in smtp_server.to(address) if "Welcome" in m.message["Subject"]]


def wait_for_welcome(
    smtp_server: TestSMTPServer, address: str, log: Callable[[], str] = str
) -> list[Received]:
    """The welcomes to ADDRESS once there are any, polled as `wait_for` polls (a real server
    sends them after its answer; on a loaded machine that may take a while); LOG says why not."""
    deadline = time.monotonic() + 30.0
    while not (found := welcomes_to(smtp_server, address)):
        assert time.monotonic() < deadline, f"no welcome to {address} within 30 s:\n{log()}"
        time.sleep(0.02)
    return found


def rows(site: Site) -> list[tuple[str, str, str | None]]:
    """(address, list, delivery status) of every welcome."""
    with transaction(site.engine) as session:
        found = session.execute(
            select(Subscriber.email, MailingList.slug, Delivery.status)
            .select_from(Welcome)
            .join(Subscriber, Subscriber.id == Welcome.subscriber_id)
            .join(MailingList, MailingList.id == Welcome.list_id)
            .outerjoin(Delivery, Delivery.id == Welcome.delivery_id)
            .order_by(Subscriber.email, MailingList.slug)
        )
        return [tuple(row) for row in found]  # type: ignore[misc]


def test_a_real_confirmation_post_brings_the_welcome_once(
    welcoming: Path,
    opened: Site,
    smtp_server: TestSMTPServer,
    dkim_key: tuple[bytes, bytes],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cli: Run,
) -> None:
    verifies = sign_with_dkim(welcoming, dkim_key, monkeypatch)
    server = start(welcoming, tmp_path / "serve.log")  # its own process: the environment above
    try:
        # the server reads links by its own clock: the link is made now, as its form makes them
        subscribers.add(
            opened, "ann@example.net", ["disability-group"], now=utcnow(), name="Ann Lee"
        )
        (confirmation,) = smtp_server.wait_for("ann@example.net", timeout=30)
        link = re.search(r"http://localhost:8000(/confirm/\S+)", confirmation.body())
        assert link
        answer = httpx.post(server.url + link.group(1), timeout=10)
        assert answer.status_code == 200 and "Disability Group" in answer.text
        (welcome,) = wait_for_welcome(smtp_server, "ann@example.net", server.log)
        again = httpx.post(server.url + link.group(1), timeout=10)  # confirming twice
        assert again.status_code == 200
    finally:
        log = server.stop()  # waits for what it sends after its answers
    assert "welcome: " not in log, log  # nothing was left over or waiting (web.app logs it)

    message = welcome.message
    assert message["Subject"] == "Welcome to the Disability Group"
    assert message["From"] == DG  # the list's own sender (issue #16, item 4)
    assert message["To"] == "Ann Lee <ann@example.net>"
    assert message["List-Id"] == "Disability Group <disability-group.localhost>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058
    unsubscribe = message["List-Unsubscribe"]
    assert re.fullmatch(
        r"<http://localhost:8000/unsubscribe/\S+>, <mailto:bounces\+\S+>", unsubscribe
    )
    assert verifies(welcome.data)  # DKIM-signed like every mailing's message
    with transaction(opened.engine) as session:
        delivery = session.scalars(
            select(Delivery).where(Delivery.email == "ann@example.net")
        ).one()
        mailing = session.get_one(Mailing, delivery.mailing_id)
    assert welcome.mail_from == verp.envelope_sender(opened.config, delivery.id)  # VERP
    assert delivery.status == "sent" and mailing.kind == "welcome"
    assert mailing.expression == "disability-group"
    assert "Dear Ann, welcome to the group." in welcome.body("plain")
    assert "Large-print" not in welcome.body("plain")  # an `only` block she does not match
    footer = "You get this email because you subscribed to Disability Group"
    assert footer in " ".join(welcome.body("plain").split())

    ok(cli("worker", "--once", now=NOW))  # anything left over would go now
    assert len(welcomes_to(smtp_server, "ann@example.net")) == 1
    assert rows(opened) == [("ann@example.net", "disability-group", "sent")]
    listed = json.loads(ok(cli("mailings", "--json")))
    assert [(m["kind"], m["to"], m["counts"]["sent"]) for m in listed] == [
        ("welcome", "disability-group", 1)
    ]


def test_import_welcome_sends_once_and_a_second_import_adds_nothing(
    opened: Site, smtp_server: TestSMTPServer, cli: Run, tmp_path: Path
) -> None:
    members = tmp_path / "members.csv"
    members.write_text(
        "email,name,tags\nbob@example.net,Bob,\ncat@example.net,Cat,access-needs\n",
        encoding="utf-8",
    )
    imported = ok(cli("subscribers", "import", str(members), "--list", "disability-group",
                      "--confirmed", "--consent", "Joined at the AGM", "--welcome", now=NOW))  # fmt: skip
    assert "2 welcome email(s) queued: `newsroom worker` sends them" in imported
    assert smtp_server.messages == []  # the worker sends them, not the import
    ok(cli("worker", "--once", now=NOW))
    assert len(welcomes_to(smtp_server, "bob@example.net")) == 1
    (cat,) = welcomes_to(smtp_server, "cat@example.net")
    assert "Large-print copies" in cat.body("plain")  # her variant: tag:access-needs

    again = ok(cli("subscribers", "import", str(members), "--list", "disability-group",
                   "--confirmed", "--consent", "Joined at the AGM", "--welcome", now=NOW))  # fmt: skip
    assert "queued" not in again and "2 unchanged" in again
    ok(cli("worker", "--once", now=NOW))
    assert len(smtp_server.messages) == 2
    assert [status for *_, status in rows(opened)] == ["sent", "sent"]


def test_the_database_refuses_a_second_welcome_to_one_list(opened: Site) -> None:
    subscribers.add(opened, "dan@example.net", ["newsletter"], now=NOW, welcome=True)
    with pytest.raises(IntegrityError), transaction(opened.engine) as session:
        person = session.scalar(select(Subscriber.id))
        newsletter = session.scalar(select(MailingList.id).where(MailingList.slug == "newsletter"))
        session.add(Welcome(list_id=newsletter, subscriber_id=person, confirmed_at=NOW))


def test_add_welcome_sends_it_now_and_never_again(
    opened: Site, smtp_server: TestSMTPServer, cli: Run
) -> None:
    added = ok(cli("subscribers", "add", "eve@example.net", "--list", "newsletter", "--welcome"))
    assert "eve@example.net newsletter: confirmed" in added
    assert "sent 1 welcome email(s)" in added
    (welcome,) = welcomes_to(smtp_server, "eve@example.net")
    assert welcome.message["Subject"] == "Welcome to the newsletter"
    assert welcome.message["From"] == "Newsroom <newsroom@example.org>"  # the site's
    again = ok(cli("subscribers", "add", "eve@example.net", "--list", "newsletter", "--welcome"))
    assert "already confirmed" in again and "welcome" not in again
    quiet = ok(cli("subscribers", "add", "fay@example.net", "--list", "newsletter"))
    assert "welcome" not in quiet  # without --welcome an administrator's add welcomes nobody
    ok(cli("worker", "--once", now=NOW))
    assert len(smtp_server.messages) == 1
    assert "--welcome" in ok(cli("subscribers", "add", "--help"))


def test_the_web_form_on_a_single_opt_in_list_welcomes_at_once(
    opened: Site, smtp_server: TestSMTPServer
) -> None:
    with TestClient(create_app(opened, clock=lambda: NOW)) as client:
        form = client.get("/subscribe").text
        token = re.search(r'name="form_token" value="([^"]+)"', form)
        assert token
        answer = client.post(
            "/subscribe",
            data={"form_token": token.group(1), "email": "gus@example.net", "lists": "newsletter"},
        )
        assert "Check your inbox" in answer.text
    (welcome,) = welcomes_to(smtp_server, "gus@example.net")
    assert welcome.message["Subject"] == "Welcome to the newsletter"


SERMON = 'unknown block type "sermon"'
BROKEN = "---\ntitle: Welcome\ndate: 2026-11-01\n---\n::: sermon\nHello.\n:::\n"


def test_a_broken_welcome_issue_blocks_no_confirmation_and_check_says_why(
    welcoming: Path, opened: Site, smtp_server: TestSMTPServer, cli: Run
) -> None:
    issue = welcoming / "issues" / "2026-11-01-welcome-disability-group.md"
    issue.write_text(BROKEN, encoding="utf-8")
    subscribers.add(opened, "hal@example.net", ["disability-group"], now=NOW)
    (confirmation,) = smtp_server.wait_for("hal@example.net")
    link = re.search(r"http://localhost:8000(/confirm/\S+)", confirmation.body())
    assert link
    with TestClient(create_app(opened, clock=lambda: NOW)) as client:
        answer = client.post(link.group(1))
    assert answer.status_code == 200 and "Disability Group" in answer.text
    with transaction(opened.engine) as session:
        assert session.scalars(select(Subscription.status)).all() == ["confirmed"]
        (waiting,) = session.scalars(select(Welcome)).all()
    assert waiting.status == WelcomeStatus.WAITING
    assert (
        'issues/2026-11-01-welcome-disability-group.md:5: unknown block type "sermon"'
        in waiting.reason
    )
    assert len(smtp_server.messages) == 1  # the confirmation only

    checked = fails(cli("check"), SERMON)
    assert (
        f"subscribers/lists.toml:{WELCOME_LINE}: [disability-group] welcome "
        "issues/2026-11-01-welcome-disability-group.md: 1 error(s) above; nobody is welcomed to "
        "disability-group until they are fixed"
    ) in checked
    assert checked.count(SERMON) == 1  # the issue's error said once
    listed = cli("lists")
    assert (
        "disability-group welcomes with issues/2026-11-01-welcome-disability-group.md: 0 queued, 1 waiting"
        in ok(listed)
    )
    assert SERMON in listed.stderr
    worked = cli("worker", "--once", now=NOW)
    assert (
        "worker: 1 welcome(s) to disability-group wait: issues/2026-11-01-welcome-disability-group.md:5"
        in worked.stderr
    )
    doctor = json.loads(cli("doctor", "--json").stdout)
    (check,) = [c for c in doctor["checks"] if c["name"] == "welcome disability-group"]
    assert check["status"] == "warning" and "cannot be sent" in check["detail"]

    issue.write_text(WELCOME, encoding="utf-8")  # fixed: it goes at the next look
    ok(cli("check"))
    ok(cli("worker", "--once", now=NOW))
    assert len(welcomes_to(smtp_server, "hal@example.net")) == 1


def test_a_missing_or_outside_welcome_issue_is_an_error_at_its_line(
    welcoming: Path, cli: Run
) -> None:
    lists_file = welcoming / "subscribers" / "lists.toml"
    lists_file.write_text(
        LISTS.replace("2026-11-01-welcome-disability-group.md", "gone.md"), "utf-8"
    )
    fails(cli("check"), f"subscribers/lists.toml:{WELCOME_LINE}: [disability-group] welcome "
                        "'issues/gone.md': no such file")  # fmt: skip
    lists_file.write_text(
        LISTS.replace("issues/2026-11-01-welcome-disability-group.md", ".env"), "utf-8"
    )
    fails(cli("check"), "welcome '.env': not a Markdown file in issues/")
    ok(cli("lists"))  # a wrong welcome stops no command


def test_a_welcome_that_is_not_text_is_an_error_of_lists_toml(welcoming: Path, cli: Run) -> None:
    lists_file = welcoming / "subscribers" / "lists.toml"
    lists_file.write_text(LISTS.replace('"issues/2026-11-01-welcome-newsletter.md"', "3"), "utf-8")
    fails(cli("lists"), "subscribers/lists.toml:14: [newsletter] welcome must be text in quotes")


def test_import_welcome_needs_confirmed(opened: Site, cli: Run, tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_text("email\nivy@example.net\n", encoding="utf-8")
    fails(cli("subscribers", "import", str(members), "--list", "newsletter", "--welcome"),
          "--welcome is only for --confirmed imports")  # fmt: skip


def test_a_welcome_waiting_a_week_is_dropped(welcoming: Path, opened: Site) -> None:
    (welcoming / "issues" / "2026-11-01-welcome-newsletter.md").write_text(BROKEN, encoding="utf-8")
    subscribers.add(opened, "jo@example.net", ["newsletter"], now=NOW, welcome=True)
    assert welcomes.queue(opened, NOW + timedelta(days=6)).waiting["newsletter"][0] == 1
    assert welcomes.queue(opened, NOW + timedelta(days=8)).dropped == 1
    with transaction(opened.engine) as session:
        (dropped,) = session.scalars(select(Welcome)).all()
    assert dropped.status == "dropped" and "too late to welcome" in dropped.reason


def test_a_later_welcome_has_retries_of_its_own_and_an_edit_starts_a_new_mailing(
    welcoming: Path, opened: Site, smtp_server: TestSMTPServer
) -> None:
    subscribers.add(opened, "kim@example.net", ["newsletter"], now=NOW, welcome=True)
    welcomes.queue(opened, NOW)
    (first,) = welcomes.under_way(opened.engine)
    assert run(opened, first, clock=lambda: NOW).sent == 1
    later = NOW + timedelta(days=5)  # long after the mailing's own retries ran out (48 h)
    subscribers.add(opened, "lee@example.net", ["newsletter"], now=later, welcome=True)
    assert welcomes.queue(opened, later).queued == 1
    smtp_server.fail("RCPT", 451, "4.3.0 Try later", times=1)
    report = run(opened, first, clock=lambda: later)
    assert report.deferred == 1 and report.failed == 0  # not "out of retries"
    assert welcomes.under_way(opened.engine) == [first]  # the same mailing took her

    (welcoming / "issues" / "2026-11-01-welcome-newsletter.md").write_text(
        NEWSLETTER.replace("Hello", "Hello again"), encoding="utf-8"
    )
    subscribers.add(opened, "max@example.net", ["newsletter"], now=later, welcome=True)
    welcomes.queue(opened, later)
    with transaction(opened.engine) as session:
        made = session.scalars(select(Mailing.id).where(Mailing.kind == "welcome")).all()
    assert len(made) == 2  # the edited issue began a new welcome mailing


def test_a_welcome_issue_is_never_published(opened: Site) -> None:
    files = static_files(opened, NOW)
    assert not any("welcome" in name for name in files)
    feed = files["feed.xml"]
    assert isinstance(feed, bytes) and b"Welcome to the Disability Group" not in feed


def test_lists_and_mailings_show_the_welcomes(
    opened: Site, smtp_server: TestSMTPServer, cli: Run
) -> None:
    ok(cli("subscribers", "add", "ned@example.net", "--list", "newsletter", "--welcome", now=NOW))
    (row,) = [r for r in json.loads(ok(cli("lists", "--json"))) if r["slug"] == "newsletter"]
    assert row["welcome"] == "issues/2026-11-01-welcome-newsletter.md"
    assert row["welcomes"] == {"queued": 1} and row["welcome_problems"] == []
    assert "newsletter welcomes with issues/2026-11-01-welcome-newsletter.md: 1 queued" in ok(
        cli("lists")
    )
    assert "newsletter (welcome)" in ok(cli("mailings"))
    assert "— the welcome of newsletter" in ok(cli("mailings", "show", "1"))


def test_an_erased_person_is_forgotten_by_the_welcomes_too(
    opened: Site, smtp_server: TestSMTPServer, cli: Run
) -> None:
    ok(cli("subscribers", "add", "oz@example.net", "--list", "newsletter", "--welcome", now=NOW))
    ok(cli("subscribers", "erase", "oz@example.net", "--yes", now=NOW))
    assert rows(opened) == []  # the welcome went with the subscriber (ON DELETE CASCADE)
    with transaction(opened.engine) as session:
        assert session.scalars(select(Delivery.email)).all() == ["erased-1"]


def test_two_lists_sharing_a_welcome_issue_send_it_once(
    welcoming: Path, opened: Site, smtp_server: TestSMTPServer, cli: Run
) -> None:
    lists_file = welcoming / "subscribers" / "lists.toml"
    lists_file.write_text(
        LISTS.replace("2026-11-01-welcome-newsletter.md", "2026-11-01-welcome-disability-group.md"),
        "utf-8",
    )
    ok(cli("subscribers", "add", "pat@example.net", "--list", "newsletter", "--welcome", now=NOW))
    subscribers.add(opened, "pat@example.net", ["disability-group"], now=NOW)
    (confirmation,) = [
        m for m in smtp_server.to("pat@example.net") if "Confirm" in m.message["Subject"]
    ]
    link = re.search(r"http://localhost:8000(/confirm/\S+)", confirmation.body())
    assert link
    subscribers.confirm(
        opened, link.group(1).removeprefix("/confirm/"), ip=None, user_agent=None, now=NOW
    )
    queued = welcomes.queue(opened, NOW)
    assert queued.dropped == 1 and queued.queued == 0
    with transaction(opened.engine) as session:
        reasons = session.scalars(select(Welcome.reason).where(Welcome.status == "dropped")).all()
    assert reasons == [
        "already had the issue 'welcome-disability-group' (1 address already had issue "
        "'Welcome to the Disability Group' (issues/2026-11-01-welcome-disability-group.md) "
        "from mailing 1)"
    ]
    assert len(welcomes_to(smtp_server, "pat@example.net")) == 1
