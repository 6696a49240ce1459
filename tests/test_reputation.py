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
from newsroom.site import Site
from newsroom.web.app import create_app
from tests.conftest import Run
from tests.sendhelp import subscribe
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
    subscribe(site, 8)
    fast.fail("RCPT", 550, "5.1.1 <p7@example.net>: no such user", match="p7@")
    sent = cli("send", "save-our-socialists", "--yes", now=NOW)
    assert sent.exit_code == 0, sent.output
    to = {m.rcpt_tos[0].split("@")[0]: m for m in fast.messages}
    assert sorted(to) == [f"p{i}" for i in range(7)]  # p7 refused: failed, a hard bounce
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
    shown = cli("mailings", "show", "1")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[-5:] == [
        "pending: 0  sending: 0  sent: 7  deferred: 0  failed: 1  skipped: 0",
        "hard bounces: 4 of 8 sent or refused (50.00 %) — over the limit: relays such as "
        "Amazon SES review a sender at 5 % hard bounces: aim below 2 %",
        "soft bounces: 1 of 8 sent or refused (12.50 %)",
        "complaints:   1 of 7 sent (14.29 %) — over the limit: Gmail and Yahoo: keep "
        "complaints under 0.3 %, aiming below 0.1 %",
        "unsubscribes: 2 of 7 sent (28.57 %)",
    ]
    returns = json.loads(cli("mailings", "show", "1", "--json").stdout)["returns"]
    assert returns == {
        "hard_bounces": {
            "count": 4, "of": 8, "rate": 0.5, "aim": 0.02, "limit": 0.05,
            "verdict": "over the limit", "source": reputation.BOUNCES.source,
        },
        "soft_bounces": {"count": 1, "of": 8, "rate": 0.125},
        "complaints": {
            "count": 1, "of": 7, "rate": 1 / 7, "aim": 0.001, "limit": 0.003,
            "verdict": "over the limit", "source": reputation.COMPLAINTS.source,
        },
        "unsubscribes": {"count": 2, "of": 7, "rate": 2 / 7},
    }  # fmt: skip
    with site.engine.connect() as connection:  # the ledger says where each came from
        left = connection.execute(
            select(ConsentEvent.method, ConsentEvent.detail).where(
                ConsentEvent.kind == "unsubscribed"
            )
        ).all()
    assert sorted(left) == [
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
    assert shown[-4:] == [
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
