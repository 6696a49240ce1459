"""Retention a group can state (issue #16, item 6): `newsroom subscribers prune` removes the
addresses from old deliveries and deletes old bounce records, while every mailing's counts and
report stay as they were and the consent ledger is untouched (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from newsroom.database import transaction
from newsroom.models import BounceEvent, ConsentEvent, Delivery, Subscriber
from newsroom.people import subscribers
from newsroom.site import Site
from tests.conftest import Run
from tests.sendhelp import make_mailing, run, subscribe, subscribe_people
from tests.smtpserver import TestSMTPServer
from tests.test_cli_sending import error_line

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=800)  # older than retention.deliveries_days (730) and bounces_days
RECENT = NOW - timedelta(days=10)


@pytest.fixture
def opened(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    monkeypatch.setenv("NEWSROOM_SITE_BASE_URL", "https://news.example.org")
    site = Site.open(site_dir)
    yield site
    site.close()


def returns(cli: Run, mailing_id: int) -> dict[str, Any]:
    shown = json.loads(cli("mailings", "show", str(mailing_id), "--json").output)
    return {"counts": shown["counts"], "returns": shown["returns"]}


def ledger(site: Site) -> list[tuple[Any, ...]]:
    with site.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(ConsentEvent)).all()]


def an_old_mailing(site: Site, smtp_server: TestSMTPServer) -> int:
    """A mailing of two years ago to four people: one refused with their address in the
    relay's answer (a hard bounce, recorded as sending met it), one reported by a soft bounce, one who unsubscribed from
    it with one click; and a bounce of a confirmation email, which names no delivery."""
    subscribe(site, 4)
    smtp_server.fail("RCPT", 550, "5.1.1 <p1@example.net>: Recipient address rejected", match="p1@")
    created = make_mailing(site, now=OLD)
    assert run(site, created.mailing_id, clock=lambda: OLD).sent == 3
    with transaction(site.engine) as session:
        delivery = session.scalars(select(Delivery).where(Delivery.email == "p2@example.net")).one()
        people = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
        session.add(
            BounceEvent(
                subscriber_id=people["p2@example.net"],
                delivery_id=delivery.id,
                kind="soft",
                score=0.5,
                at=OLD,
                diagnostic="452 4.2.2 <p2@example.net>: Mailbox full",
            )
        )
        session.add(BounceEvent(subscriber_id=people["p3@example.net"], delivery_id=None,
                                kind="hard", score=1.0, at=OLD,
                                diagnostic="550 5.1.1 <p3@example.net>: no such user"))  # fmt: skip
    [message] = smtp_server.to("p0@example.net")
    token = re.search(r"/unsubscribe/([^>]+)>", message.message["List-Unsubscribe"])
    assert token is not None
    subscribers.unsubscribe(site, token.group(1), method="one-click", now=OLD + timedelta(hours=1))
    return created.mailing_id


def personal_data(site: Site, mailing_id: int) -> list[str]:
    """Every trace of an address, or of a person, left in the mailing's deliveries and in the
    bounce records."""
    with site.engine.connect() as connection:
        deliveries = connection.execute(
            text(
                "SELECT email, last_response, subscriber_id FROM deliveries WHERE mailing_id = :m"
            ),
            {"m": mailing_id},
        ).all()
        bounced = connection.execute(text("SELECT diagnostic, subscriber_id FROM bounce_events"))
        found = [f"{e} {r} {s}" for e, r, s in deliveries if "@" in e + r or s is not None]
        return found + [f"{d} {s}" for d, s in bounced if "@" in d or s is not None]


def test_prune_removes_addresses_and_keeps_every_count(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    old = an_old_mailing(opened, smtp_server)
    smtp_server.reset()
    recent = make_mailing(opened, slug="recent", now=RECENT).mailing_id
    assert run(opened, recent, clock=lambda: RECENT).sent == 3
    before, events = returns(cli, old), ledger(opened)
    assert before["counts"]["sent"] == 3 and before["counts"]["failed"] == 1
    assert [before["returns"][k]["count"] for k in ("hard_bounces", "soft_bounces",
            "unsubscribes")] == [1, 1, 1]  # fmt: skip
    assert len(personal_data(opened, old)) == 7  # 4 deliveries, 3 bounce records

    pruned = cli("subscribers", "prune", now=NOW)
    assert pruned.exit_code == 0, pruned.output
    assert pruned.output.splitlines() == [
        "removed 0 unconfirmed subscriptions; forgot 0 people who never confirmed",
        "delivery records: removed the address from 4 deliveries of 1 mailing frozen before "
        "2024-12-02 (retention.deliveries_days = 730); their counts stay",
        "bounce records: deleted 3 from before 2026-06-05 (retention.bounces_days = 180); 2 of "
        "them stay as counts in their mailing's report, without the person or the diagnostic",
    ]
    assert personal_data(opened, old) == []
    assert returns(cli, old) == before  # counts, bounces and unsubscribes all still there
    assert ledger(opened) == events  # the consent ledger's evidence untouched
    with opened.engine.connect() as connection:
        responses = connection.execute(
            text(
                "SELECT last_response FROM deliveries WHERE mailing_id = :m AND status = 'failed'"
            ),
            {"m": old},
        ).scalars()
        assert list(responses) == ["550 5.1.1 <[address]>: Recipient address rejected"]
        kept = connection.execute(
            text("SELECT email FROM deliveries WHERE mailing_id = :m"), {"m": recent}
        ).scalars()
        assert sorted(kept) == [f"p{i}@example.net" for i in (1, 2, 3)]  # too recent to prune
    again = cli("subscribers", "prune", now=NOW).output.splitlines()
    assert again[1].startswith("delivery records: removed the address from 0 deliveries of 0")
    assert again[2].startswith("bounce records: deleted 0 from before")


def test_erased_addresses_in_relay_answers_go_too(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    old = an_old_mailing(opened, smtp_server)
    assert cli("subscribers", "erase", "p1@example.net", "--yes", now=NOW).exit_code == 0
    assert "p1@example.net" in " ".join(personal_data(opened, old))  # erasure left the answer
    assert cli("subscribers", "prune", now=NOW).exit_code == 0
    assert personal_data(opened, old) == []
    with opened.engine.connect() as connection:
        emails = connection.execute(
            text("SELECT email FROM deliveries WHERE status = 'failed'")
        ).scalars()
        assert [e.split("-")[0] for e in emails] == ["erased"]


def test_retention_off_keeps_everything(
    cli: Run, opened: Site, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = an_old_mailing(opened, smtp_server)
    monkeypatch.setenv("NEWSROOM_RETENTION_DELIVERIES_DAYS", "0")
    monkeypatch.setenv("NEWSROOM_RETENTION_BOUNCES_DAYS", "0")
    pruned = cli("subscribers", "prune", now=NOW)
    assert pruned.output.splitlines()[1:] == [
        "delivery records: kept for good (retention.deliveries_days = 0)",
        "bounce records: kept for good (retention.bounces_days = 0)",
    ]
    assert len(personal_data(opened, old)) == 7


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        (
            "NEWSROOM_RETENTION_BOUNCES_DAYS",
            "10",
            "Error: retention.bounces_days (10) is shorter than bounces.window_days (30): bounce "
            "scores add up over that window, so bounce records must live at least 30 days (or "
            "set 0 to keep them)",
        ),
        (
            "NEWSROOM_RETENTION_DELIVERIES_DAYS",
            "-1",
            "Error: NEWSROOM_RETENTION_DELIVERIES_DAYS: retention.deliveries_days must be a "
            "number of days, or 0 to keep them for good",
        ),
        (
            "NEWSROOM_RETENTION_BOUNCES_DAYS",
            "half a year",
            "Error: NEWSROOM_RETENTION_BOUNCES_DAYS: retention.bounces_days must be a whole "
            "number, not 'half a year'",
        ),
    ],
)
def test_a_retention_setting_that_cannot_hold_is_refused_and_nothing_is_pruned(
    cli: Run,
    opened: Site,
    smtp_server: TestSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    words: str,
) -> None:
    old = an_old_mailing(opened, smtp_server)
    monkeypatch.setenv(variable, value)
    assert error_line(cli("subscribers", "prune", now=NOW)) == words
    assert len(personal_data(opened, old)) == 7


def test_an_address_that_looks_like_a_placeholder_goes_too(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    """`erased-…` and `pruned-…` are placeholders only without an @: a real address starting
    so (pruned-roses@example.net) is removed like any other."""
    subscribe_people(opened, {"pruned-roses@example.net": "", "erased-7@example.net": ""})
    created = make_mailing(opened, now=OLD)
    assert run(opened, created.mailing_id, clock=lambda: OLD).sent == 2
    assert cli("subscribers", "prune", now=NOW).exit_code == 0
    assert personal_data(opened, created.mailing_id) == []
