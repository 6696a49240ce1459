"""`newsroom mailings show`: the bounces, complaints and unsubscribes that came back from a
mailing, from real reports through `bounces process`, a real one-click POST and a mailto
request, counted per delivery and shown beside the providers' thresholds."""

from __future__ import annotations

import json
import mailbox
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from newsroom.delivery import reputation
from newsroom.models import ConsentEvent
from newsroom.people import consent
from newsroom.site import Site
from newsroom.web.app import create_app
from tests.conftest import Run
from tests.sendhelp import subscribe, subscribe_people
from tests.smtpserver import Received, TestSMTPServer

DATA = Path(__file__).parent / "data" / "bounces"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ISSUE = "---\ntitle: Save our socialists\ndate: 2020-12-24\nto: all-members\n---\nNews.\n"


@pytest.fixture
def fast(smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch) -> TestSMTPServer:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    return smtp_server


def report(name: str, message: Received, number: int) -> bytes:
    """The corpus report NAME about MESSAGE (its VERP envelope sender and recipient), with a
    Message-ID of its own: reports are handled once per Message-ID."""
    text = (DATA / name).read_text()
    text = text.replace("{VERP}", message.mail_from).replace("{RCPT}", message.rcpt_tos[0])
    text = text.replace("{MSGID}", f"r{number}")
    text = re.sub(
        r"(?im)^Message-ID: <[^>]*>", f"Message-ID: <report-{number}@example.com>", text, count=1
    )
    return text.replace("\n", "\r\n").encode()


def one_click(message: Received) -> str:
    """The https address of the message's List-Unsubscribe field (RFC 8058), as a path."""
    header = message.raw_header(b"List-Unsubscribe").decode()
    [url] = re.findall(r"<(https?://[^>]+)>", header)
    return url.split("localhost:8000", 1)[1]


def test_mailings_show_counts_what_came_back_beside_the_thresholds(
    cli: Run, site_dir: Path, fast: TestSMTPServer, tmp_path: Path
) -> None:
    (site_dir / "issues" / "2020-12-24-save-our-socialists.md").write_text(ISSUE)
    site = Site.open(site_dir)
    subscribe(site, 9)
    fast.fail("RCPT", 550, "5.1.1 <p7@example.net>: no such user", match="p7@")
    sent = cli("send", "save-our-socialists", "--yes", now=NOW)
    assert sent.exit_code == 0, sent.output
    to = {m.rcpt_tos[0].split("@")[0]: m for m in fast.messages}
    assert sorted(to) == [f"p{i}" for i in (0, 1, 2, 3, 4, 5, 6, 8)]  # p7 refused: failed, hard
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    for number, (name, who) in enumerate(
        [
            ("postfix-hard.eml", "p0"),
            ("postfix-hard.eml", "p0"),  # a second report about one message: one bounce
            ("exim-hard.eml", "p1"),
            ("postfix-delayed.eml", "p2"),  # soft only
            ("postfix-delayed.eml", "p3"),  # soft, then hard: counted as hard
            ("gmail-hard.eml", "p3"),
            ("arf-abuse.eml", "p4"),
            ("mailto-client.eml", "p6"),
        ]
    ):
        box.add(report(name, to[who], number))
    box.close()
    processed = cli("bounces", "process", str(tmp_path / "bounces.mbox"), now=NOW)
    assert processed.stdout == (
        "4 hard bounces, 2 soft bounces, 1 complaints, 1 unsubscribes, 0 already handled, "
        "0 ignored\n"
    ), processed.output
    with TestClient(create_app(site, clock=lambda: NOW)) as client:
        answer = client.post(one_click(to["p5"]), data={"List-Unsubscribe": "One-Click"})
        assert (answer.status_code, answer.text) == (200, "Unsubscribed.\n")
        # the footer's page: a person's POST from the page the link opens (method "link")
        assert client.post(one_click(to["p8"])).status_code == 200
    shown = cli("mailings", "show", "1")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[-15:] == [
        "pending: 0  sending: 0  sent: 8  deferred: 0  failed: 1  skipped: 0",
        "sent:         8 of 9 deliveries (88.89 %)",
        "failed:       1 of 9 deliveries (11.11 %)",
        "deferred:     0 of 9 deliveries (0.00 %)",
        "hard bounces: 4 of 9 sent or refused (44.44 %) — over the limit: relays such as "
        "Amazon SES review a sender at 5 % hard bounces: aim below 2 %",
        "soft bounces: 1 of 9 sent or refused (11.11 %)",
        "complaints:   1 of 8 sent (12.50 %) — over the limit: Gmail and Yahoo: keep "
        "complaints under 0.3 %, aiming below 0.1 %",
        "unsubscribes: 3 of 8 sent (37.50 %)",
        "  one-click:  1 of 8 sent (12.50 %)",
        "  link:       1 of 8 sent (12.50 %)",
        "  mailto:     1 of 8 sent (12.50 %)",
        "warning: hard bounces 44.44 % is over the limit of 5 % — relays such as Amazon SES "
        "review a sender at 5 % hard bounces: aim below 2 %",
        "warning: complaints 12.50 % is over the limit of 0.3 % — Gmail and Yahoo: keep "
        "complaints under 0.3 %, aiming below 0.1 %",
        "hint: hard bounces: often old or mistyped addresses; check where the list came from "
        "before the next mailing",
        "hint: complaints: often people who do not remember asking for it; check where the "
        "addresses came from, and that the sender's name is one they know",
    ]
    shown = json.loads(cli("mailings", "show", "1", "--json").stdout)
    assert shown["returns"] == {
        "sent": {"count": 8, "of": 9, "rate": 8 / 9},
        "failed": {"count": 1, "of": 9, "rate": 1 / 9},
        "deferred": {"count": 0, "of": 9, "rate": 0.0},
        "hard_bounces": {
            "count": 4, "of": 9, "rate": 4 / 9, "aim": 0.02, "limit": 0.05,
            "verdict": "over the limit", "source": reputation.BOUNCES.source,
        },
        "soft_bounces": {"count": 1, "of": 9, "rate": 1 / 9},
        "complaints": {
            "count": 1, "of": 8, "rate": 1 / 8, "aim": 0.001, "limit": 0.003,
            "verdict": "over the limit", "source": reputation.COMPLAINTS.source,
        },
        "unsubscribes": {
            "count": 3, "of": 8, "rate": 3 / 8,
            "by_method": {
                "one-click": {"count": 1, "of": 8, "rate": 1 / 8},
                "link": {"count": 1, "of": 8, "rate": 1 / 8},
                "mailto": {"count": 1, "of": 8, "rate": 1 / 8},
            },
        },
    }  # fmt: skip
    assert [w.split(" is ")[0] for w in shown["warnings"]] == [
        "hard bounces 44.44 %", "complaints 12.50 %",
    ]  # fmt: skip
    with site.engine.connect() as connection:  # the ledger says where each came from
        left = connection.execute(
            select(ConsentEvent.method, ConsentEvent.detail).where(
                ConsentEvent.kind == "unsubscribed"
            )
        ).all()
    assert sorted(left) == [
        ("link", "mailing 1"),
        ("mailto", "mailing 1 (save-our-socialists): email to the List-Unsubscribe address"),
        ("one-click", "mailing 1"),
    ]
    site.close()


def test_a_mailing_with_nothing_back_yet(cli: Run, site_dir: Path, fast: TestSMTPServer) -> None:
    """Nothing sent yet: counts without rates, rather than a division by zero."""
    assert reputation.Rate("complaints", 0, 0, reputation.SENT, reputation.COMPLAINTS).as_dict() == {
        "count": 0, "of": 0, "rate": None, "aim": 0.001, "limit": 0.003, "verdict": "",
        "source": reputation.COMPLAINTS.source,
    }  # fmt: skip
    (site_dir / "issues" / "2020-12-24-save-our-socialists.md").write_text(ISSUE)
    site = Site.open(site_dir)
    subscribe(site, 400)
    assert cli("send", "save-our-socialists", "--yes", now=NOW).exit_code == 0
    site.close()
    shown = cli("mailings", "show", "1").stdout.splitlines()
    assert shown[-7:-3] == [
        "hard bounces: 0 of 400 sent or refused (0.00 %) — ok: relays such as Amazon SES review "
        "a sender at 5 % hard bounces: aim below 2 %",
        "soft bounces: 0 of 400 sent or refused (0.00 %)",
        "complaints:   0 of 400 sent (0.00 %) — ok: Gmail and Yahoo: keep complaints under "
        "0.3 %, aiming below 0.1 %",
        "unsubscribes: 0 of 400 sent (0.00 %)",
    ]


@pytest.mark.parametrize(
    ("count", "verdict"), [(0, "ok"), (1, "ok"), (4, "above the aim"), (12, "over the limit")]
)
def test_verdicts_beside_the_complaint_thresholds(count: int, verdict: str) -> None:
    """Gmail: aim below 0.1 %, never 0.3 % or more — of 4,000 messages, 4 is 0.1 %, 12 is 0.3 %."""
    rate = reputation.Rate("complaints", count, 4000, reputation.SENT, reputation.COMPLAINTS)
    assert rate.verdict == verdict


def test_a_person_counts_once_however_many_lists_they_left(
    cli: Run, site_dir: Path, fast: TestSMTPServer
) -> None:
    """p0, on both lists of the expression, leaves both by one click (two ledger events), then
    tries the page and the mailto address too (nothing left to leave): one unsubscribe."""
    (site_dir / "issues" / "2020-12-24-save-our-socialists.md").write_text(ISSUE)
    site = Site.open(site_dir)
    subscribe(site, 3)
    subscribe_people(site, {"p0@example.net": "Person 0"}, "disability-group")
    to = "all-members or disability-group"
    assert cli("send", "save-our-socialists", "--to", to, "--yes", now=NOW).exit_code == 0
    sent = {m.rcpt_tos[0].split("@")[0]: m for m in fast.messages}
    with TestClient(create_app(site, clock=lambda: NOW)) as client:
        client.post(one_click(sent["p0"]), data={"List-Unsubscribe": "One-Click"})
        client.post(one_click(sent["p0"]))
        client.post(one_click(sent["p1"]))  # the footer's page
    with site.engine.connect() as connection:
        events = connection.execute(
            select(ConsentEvent.subscriber_id, ConsentEvent.method).where(
                ConsentEvent.kind == "unsubscribed"
            )
        ).all()
    assert sorted(method for _, method in events) == ["link", "one-click", "one-click"]
    returns = reputation.mailing_returns(site.engine, 1)
    site.close()
    assert returns.unsubscribes.count == 2
    assert {r.name: r.count for r in returns.by_method} == {"one-click": 1, "link": 1, "mailto": 0}


@pytest.mark.parametrize(
    ("detail", "mailing"),
    [
        ("mailing 1", 1),
        ("mailing 12", 12),
        ("mailing 12 (save-our-socialists): email to the List-Unsubscribe address", 12),
        ("mailing 1x", None),
        ("mailing ", None),
        ("the mailing 3", None),
        ("", None),
    ],
)
def test_the_mailing_a_ledger_event_names(detail: str, mailing: int | None) -> None:
    assert consent.mailing_of(detail) == mailing
    if mailing is not None:
        assert consent.mailing_of(consent.from_mailing(mailing, "(x)")) == mailing
