"""Sending as library calls (issue #13): `newsroom send`, `--resume` and the worker are one call
each in delivery/dispatch.py, which the CLI only asks, shows and words; here they run without
the CLI, their events recorded, against a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsroom.delivery import dispatch, mailings, outbox
from newsroom.errors import NewsroomError
from newsroom.site import Site
from tests.sendhelp import subscribe
from tests.smtpserver import TestSMTPServer

NOW = datetime(2026, 11, 20, 13, 0, tzinfo=UTC)  # after the issues' date (noon)


class Recorded(dispatch.Quiet):
    """Every event a run reports, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def frozen(self, mailing_id: int, count: int) -> None:
        self.events.append(("frozen", count))

    def started(self, to_do: int) -> None:
        self.events.append(("started", to_do))

    def progressed(self, done: int) -> None:
        self.events.append(("progressed", done))

    def worker_started(self, name: str) -> None:
        self.events.append(("worker", name))


@pytest.fixture
def opened(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    (site_dir / "issues" / "2026-11-20-news.md").write_text(
        "---\ntitle: News\ndate: 2026-11-20\nto: all-members\nsummary: The news.\n---\n"
        "Dear {{first_name|friend}}, hello.\n",
        encoding="utf-8",
    )
    site = Site.open(site_dir)
    yield site
    site.close()


def test_send_is_prepare_propose_send(opened: Site, smtp_server: TestSMTPServer) -> None:
    emails = subscribe(opened, 5)
    prepared = dispatch.prepare(opened, "news", None, NOW)
    proposal = dispatch.propose(opened, prepared, again=False, now=NOW)
    assert (prepared.target, proposal.going, proposal.had) == ("all-members", 5, "")
    watch = Recorded()
    outcome = dispatch.send(opened, proposal, again=False, now=NOW, watch=watch)
    assert outcome.report.done and outcome.counts["sent"] == 5
    assert watch.events[:2] == [("frozen", 5), ("started", 5)]
    assert watch.events[-1] == ("progressed", 5)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == sorted(emails)
    assert "Dear Person, hello." in smtp_server.to("p0@example.net")[0].body()


def test_nobody_left_is_said_before_anything_is_made(opened: Site) -> None:
    subscribe(opened, 2)
    prepared = dispatch.prepare(opened, "news", None, NOW)
    dispatch.send(opened, dispatch.propose(opened, prepared, again=False, now=NOW), again=False,
                  now=NOW, watch=dispatch.Quiet())  # fmt: skip
    with pytest.raises(NewsroomError) as info:
        dispatch.propose(opened, prepared, again=False, now=NOW)
    assert str(info.value).startswith(
        "nobody to send to: 'all-members' selects 2 subscriber(s); 2 addresses already had"
    )


def test_a_cancelled_mailing_is_not_resumed(opened: Site) -> None:
    subscribe(opened, 2)
    prepared = dispatch.prepare(opened, "news", None, NOW)
    created = outbox.create(opened, prepared.planned, prepared.target, again=False, now=NOW)
    mailings.cancel(opened.engine, created.mailing_id, NOW)
    with pytest.raises(NewsroomError) as info:
        dispatch.resume(opened, created.mailing_id, now=NOW, resend_uncertain=False,
                        watch=dispatch.Quiet())  # fmt: skip
    assert str(info.value) == f"mailing {created.mailing_id} was cancelled; it cannot be resumed"


def test_the_worker_sends_what_is_under_way(opened: Site, smtp_server: TestSMTPServer) -> None:
    subscribe(opened, 3)
    prepared = dispatch.prepare(opened, "news", None, NOW)
    outbox.create(opened, prepared.planned, prepared.target, again=False, now=NOW)
    watch = Recorded()
    assert dispatch.work(opened, once=True, poll=0.1, watch=watch) == 3
    assert watch.events[0][0] == "worker" and len(smtp_server.messages) == 3
