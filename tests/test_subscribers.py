"""Subscribers: validation, add, the web's subscribe, unsubscribe, remove, erase, prune, export."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select, text

from newsroom import tokens
from newsroom.database import transaction
from newsroom.delivery import mailings
from newsroom.delivery.mailings import Addressee, Content
from newsroom.errors import NewsroomError
from newsroom.models import (
    ConsentEvent,
    Delivery,
    Mailing,
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
)
from newsroom.people import erasure, lists, subscribers, suppression
from newsroom.people.subscribers import InvalidInput, Suppressed
from newsroom.site import Site
from tests.sendhelp import wait_for
from tests.smtpserver import TestSMTPServer

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def ready(site: Site, smtp_server: TestSMTPServer) -> Iterator[Site]:
    fresh = Site.open(site.root)  # with the SMTP server's settings
    text = (
        fresh.lists_file.read_text()
        + '\n[press]\nname = "Press"\npublic = true\nopt_in = "single"\n'
    )
    fresh.lists_file.write_text(text)
    lists.sync(fresh, NOW)
    yield fresh
    fresh.close()


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (" Ann@Example.ORG ", "ann@example.org"),
        ("josé@bücher.example", "josé@bücher.example"),
        ("user+tag@xn--bcher-kva.example", "user+tag@bücher.example"),
    ],
)
def test_addresses_are_normalised(raw: str, normal: str) -> None:
    assert subscribers.normalise_email(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ann",
        "ann@",
        "@example.org",
        "ann@example",
        "a b@example.org",
        "ann@example.org\r\nBcc: x@y.z",
        "a..b@example.org",
        ".ann@example.org",
        "ann@-example.org",
        "ann@exa_mple.org",
        "x" * 65 + "@example.org",
        "ann@" + "a" * 64 + ".org",
        "ann@localhost",
        '"ann lee"@example.org',  # quoted local parts are refused (email-validator's default)
    ],
)
def test_invalid_addresses(raw: str) -> None:
    with pytest.raises(InvalidInput):
        subscribers.normalise_email(raw)


@pytest.mark.parametrize(
    "name", ["Ann\r\nBcc: victim@example.net", "Ann\nLee", "Ann\x00", "x" * 201]
)
def test_names_that_could_inject_headers_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        subscribers.clean_name(name)


def test_add_records_tags_and_events(ready: Site) -> None:
    report = subscribers.add(
        ready,
        "ann@example.org",
        ["press", "all-members"],
        now=NOW,
        name="Ann",
        tags=["Access-Needs"],
    )
    assert report.outcomes == {"press": "confirmed", "all-members": "pending"}
    data = erasure.export_subscriber(ready, "ann@example.org")
    assert data["subscriber"]["tags"] == ["access-needs"]
    kinds = [(e["kind"], e["list"]) for e in data["ledger"]]
    assert kinds == [("requested", "press"), ("confirmed", "press"), ("requested", "all-members")]
    assert all(e["consent_version"] == "1" for e in data["ledger"])


def test_add_errors(ready: Site) -> None:
    with pytest.raises(InvalidInput, match="unknown list 'nope' \\(lists: all-members"):
        subscribers.add(ready, "ann@example.org", ["nope"], now=NOW)
    with pytest.raises(InvalidInput, match="no list given"):
        subscribers.add(ready, "ann@example.org", [], now=NOW)
    with pytest.raises(InvalidInput, match="tag 'bad tag'"):
        subscribers.add(ready, "ann@example.org", ["press"], tags=["bad tag"], now=NOW)


def test_someone_who_left_must_confirm_again_even_on_single_opt_in(ready: Site) -> None:
    subscribers.add(ready, "ann@example.org", ["press"], now=NOW)
    assert subscribers.remove(ready, "ann@example.org", now=NOW) == ["press"]
    report = subscribers.add(ready, "ann@example.org", ["press"], now=NOW + timedelta(days=2))
    assert report.outcomes == {"press": "pending"} and report.confirmation_sent


def test_web_subscribe_answers_the_same_whatever_the_state(
    ready: Site, smtp_server: TestSMTPServer
) -> None:
    args: dict[str, Any] = {"ip": "192.0.2.7", "user_agent": "Mozilla/5.0", "now": NOW}
    # subscribe() returns nothing at all, so nothing can differ: new, pending, or erased
    subscribers.subscribe(ready, "ann@example.org", "Ann", ["all-members"], **args)
    subscribers.subscribe(ready, "ann@example.org", "Ann", ["all-members"], **args)
    erasure.erase(ready, "ann@example.org", now=NOW)
    subscribers.subscribe(ready, "ann@example.org", "", ["all-members"], **args)
    with pytest.raises(InvalidInput, match="unknown list 'clp-secretaries'"):  # not public
        subscribers.subscribe(ready, "bob@example.org", "", ["clp-secretaries"], **args)
    data = erasure.export_subscriber(ready, "ann@example.org")
    assert data["ledger"][0]["ip"] == "192.0.2.7"
    assert data["ledger"][0]["user_agent"] == "Mozilla/5.0"


def test_unsubscribe_by_token_and_by_subscription(ready: Site) -> None:
    subscribers.add(ready, "ann@example.org", ["press"], now=NOW)
    with transaction(ready.engine) as session:
        person = session.scalars(select(Subscriber)).one()
        sub_id = session.scalars(select(Subscription.id)).one()
    token = subscribers.unsubscribe_token(ready, person.id, person.email, None, now=NOW)
    args: dict[str, Any] = {
        "method": "one-click",
        "ip": "192.0.2.9",
        "user_agent": "Gmail",
        "now": NOW,
    }
    assert subscribers.unsubscribe(ready, token, **args) == ["press"]
    assert subscribers.unsubscribe(ready, token, **args) == []  # twice changes nothing
    assert subscribers.unsubscribe(ready, sub_id, **args) == []
    ledger = erasure.export_subscriber(ready, "ann@example.org")["ledger"]
    assert ledger[-1]["kind"] == "unsubscribed" and ledger[-1]["method"] == "one-click"
    with pytest.raises(tokens.TokenError):
        subscribers.unsubscribe(ready, token[:-3], **args)
    with pytest.raises(NewsroomError, match="no subscription 999"):
        subscribers.unsubscribe(ready, 999, **args)


def statuses(site: Site, email: str) -> dict[str, str]:
    with transaction(site.engine) as session:
        rows = session.execute(
            select(MailingList.slug, Subscription.status)
            .join(Subscription, Subscription.list_id == MailingList.id)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email == email)
        )
        return {slug: status for slug, status in rows}


def test_unsubscribe_token_of_a_mailing_leaves_only_its_lists(ready: Site) -> None:
    subscribers.add(ready, "ann@example.org", ["press", "all-members"], now=NOW)
    subscribers.add(ready, "bob@example.org", ["press"], now=NOW)
    with transaction(ready.engine) as session:
        ann = session.scalars(select(Subscriber).where(Subscriber.email.startswith("ann"))).one()
        press = session.scalars(select(MailingList.id).where(MailingList.slug == "press")).one()
    before = statuses(ready, "ann@example.org")
    assert before["press"] == "confirmed" and before["all-members"] in ("pending", "confirmed")
    args: dict[str, Any] = {"method": "one-click", "now": NOW}
    forged = tokens.make(
        ready.config, "unsubscribe", {**tokens.for_subscriber(ann.id, "bob@example.org", ann.token_key),
                                      "l": [press]}, now=NOW,
    )  # fmt: skip
    with pytest.raises(tokens.TokenError):
        subscribers.unsubscribe(ready, forged, **args)
    assert statuses(ready, "ann@example.org") == before
    token = subscribers.unsubscribe_token(ready, ann.id, ann.email, [press], now=NOW)
    assert subscribers.unsubscribe(ready, token, **args) == ["press"]
    assert statuses(ready, "ann@example.org") == dict(before, press="unsubscribed")
    assert statuses(ready, "bob@example.org") == {"press": "confirmed"}
    with transaction(ready.engine) as session:
        event = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
        assert event is not None
        assert (event.kind, event.list_id, event.at) == ("unsubscribed", press, NOW)
        changed = session.scalars(select(Subscription).where(Subscription.list_id == press))
        assert {s.updated_at for s in changed if s.status == "unsubscribed"} == {NOW}


def test_remove_from_some_lists_and_everyone(ready: Site) -> None:
    subscribers.add(ready, "ann@example.org", ["press", "all-members"], now=NOW)
    subscribers.add(ready, "bob@example.org", ["press"], now=NOW)
    assert subscribers.remove(ready, "ann@example.org", ["all-members"], now=NOW) == ["all-members"]
    assert subscribers.remove_all(ready, "press", now=NOW) == 2
    with pytest.raises(NewsroomError, match="no subscriber with the address carol@example.org"):
        subscribers.remove(ready, "carol@example.org", now=NOW)


def test_erase_leaves_no_personal_data(ready: Site) -> None:
    args: dict[str, Any] = {"ip": "192.0.2.7", "user_agent": "Mozilla/5.0", "now": NOW}
    subscribers.subscribe(ready, "ann@example.org", "Ann Lee", ["all-members", "press"], **args)
    erasure.erase(ready, "ann@example.org", now=NOW)
    with transaction(ready.engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0
        events = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
        assert [e.kind for e in events][-1] == "erased"
        for event in events:
            assert event.subscriber_id is None and event.ip is None and event.user_agent is None
            assert "ann" not in event.detail.lower()
        (row,) = session.scalars(select(Suppression)).all()
        assert "ann" not in row.sha256 and row.reason == "erased"
        assert suppression.is_suppressed(session, ready.config, "ann@example.org")
    with pytest.raises(Suppressed, match="erased at the person's request"):
        subscribers.add(ready, "Ann@example.org", ["press"], now=NOW)
    with pytest.raises(NewsroomError, match="no subscriber"):
        erasure.erase(ready, "ann@example.org", now=NOW)


def test_a_dump_of_the_database_does_not_reveal_erased_addresses(ready: Site) -> None:
    subscribers.add(ready, "ann@example.org", ["press"], now=NOW)
    erasure.erase(ready, "ann@example.org", now=NOW)
    with transaction(ready.engine) as session:
        stored = session.scalars(select(Suppression.sha256)).one()
    import hashlib

    assert stored != hashlib.sha256(b"ann@example.org").hexdigest()  # keyed, not a plain hash


def test_an_erasure_during_a_freeze_leaves_no_address_in_the_mailing(ready: Site) -> None:
    """deliveries.subscriber_id has no foreign key (models.Delivery): a freeze holds erasure
    off until it commits, and the erasure then replaces the address it wrote. On PostgreSQL the
    erasure is seen waiting on the lock first; SQLite writes one transaction at a time."""
    subscribers.add(ready, "ann@example.org", ["press"], now=NOW)  # single opt-in: confirmed
    with transaction(ready.engine) as session:
        ann = session.scalars(select(Subscriber)).one()
    erasing = threading.Thread(
        target=erasure.erase, args=(ready, "ann@example.org"), kwargs={"now": NOW}
    )
    with transaction(ready.engine) as session:
        mailing = Mailing(issue_slug="x", issue_path="issues/x.md", subject="X", expression="press")
        session.add(mailing)
        session.flush()
        content = {"": Content("X", "<p>X</p>", "X")}
        mailings.fill(session, mailing, content, [Addressee(ann.id, ann.email, "")], again=False)
        session.flush()
        erasing.start()
        if ready.engine.dialect.name != "sqlite":
            wait_for(partial(waiting_for_an_advisory_lock, ready), "the erasure to wait")
    erasing.join(60)
    assert not erasing.is_alive()
    with transaction(ready.engine) as session:
        (delivery,) = session.scalars(select(Delivery)).all()
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert delivery.subscriber_id is None and "ann" not in delivery.email


def waiting_for_an_advisory_lock(site: Site) -> bool:
    with site.engine.connect() as connection:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return bool(connection.scalar(text(query)))


def test_confirming_again_after_erasure_lifts_the_suppression(
    ready: Site, smtp_server: TestSMTPServer
) -> None:
    subscribers.add(ready, "ann@example.org", ["press"], now=NOW)
    erasure.erase(ready, "ann@example.org", now=NOW)
    subscribers.subscribe(
        ready, "ann@example.org", "", ["all-members"], ip=None, user_agent=None, now=NOW
    )
    body = smtp_server.messages[-1].body()
    token = body.split("/confirm/")[1].split()[0]
    subscribers.confirm(ready, token, ip=None, user_agent=None, now=NOW)
    with transaction(ready.engine) as session:
        assert not suppression.is_suppressed(session, ready.config, "ann@example.org")


def test_suppression_survives_a_key_rotation(ready: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    subscribers.add(ready, "ann@example.org", ["press"], now=NOW)
    erasure.erase(ready, "ann@example.org", now=NOW)
    old = ready.config.secret_key
    monkeypatch.setenv("NEWSROOM_SECRET_KEY", "a-brand-new-key")
    monkeypatch.setenv("NEWSROOM_SECRET_OLD_KEYS", old)
    rotated = Site.open(ready.root)
    try:
        with pytest.raises(Suppressed):
            subscribers.add(rotated, "ann@example.org", ["press"], now=NOW)
    finally:
        rotated.close()


def test_prune_removes_stale_pending_and_forgets_people_with_nothing_left(ready: Site) -> None:
    subscribers.add(ready, "ann@example.org", ["all-members"], now=NOW)  # pending only
    subscribers.add(ready, "bob@example.org", ["all-members", "press"], now=NOW)  # keeps press
    subscribers.add(ready, "carol@example.org", ["all-members"], now=NOW + timedelta(hours=60))
    report = erasure.prune(ready, now=NOW + timedelta(hours=73))
    assert (report.subscriptions, report.subscribers) == (2, 1)
    with transaction(ready.engine) as session:
        emails = set(session.scalars(select(Subscriber.email)))
        orphan = session.scalar(
            select(func.count()).where(
                ConsentEvent.subscriber_id.is_(None), ConsentEvent.ip.is_not(None)
            )
        )
    assert emails == {"bob@example.org", "carol@example.org"}
    assert orphan == 0
    assert erasure.prune(ready, now=NOW + timedelta(hours=73)).subscriptions == 0


def test_export_subscriber_is_json_ready(ready: Site) -> None:
    import json

    subscribers.add(ready, "ann@example.org", ["press"], now=NOW, name="Ann")
    data = erasure.export_subscriber(ready, "ann@example.org")
    assert json.loads(json.dumps(data)) == data
    assert data["subscriptions"] == [
        {
            "list": "press",
            "list_name": "Press",
            "status": "confirmed",
            "created_at": NOW.isoformat(),
            "updated_at": NOW.isoformat(),
        }
    ]


def test_an_erasure_during_a_prune_waits_for_it(ready: Site) -> None:
    """A prune enforces retention (rewriting old deliveries, row locks to its commit) before it
    forgets whoever is left with nothing; an erasure meanwhile takes the erasure lock and then
    rewrites its person's deliveries. Had the prune taken the lock only when it came to forget,
    each would wait for the other (PostgreSQL: deadlock detected, one of them fails)."""
    if ready.engine.dialect.name == "sqlite":
        pytest.skip("SQLite writes one transaction at a time")
    old = NOW - timedelta(days=800)  # before retention.deliveries_days (730)
    subscribers.add(ready, "ann@example.org", ["press"], now=old)  # erased
    subscribers.subscribe(ready, "bob@example.org", "", ["all-members"], ip=None,
                          user_agent=None, now=old)  # fmt: skip  # never confirms: pruned
    with transaction(ready.engine) as session:
        ann = session.scalars(select(Subscriber).where(Subscriber.email == "ann@example.org"))
        ann_id = ann.one().id
        mailing = Mailing(issue_slug="x", issue_path="issues/x.md", subject="X",
                          expression="press", created_at=old, frozen_at=old)  # fmt: skip
        session.add(mailing)
        session.flush()
        session.add(Delivery(mailing_id=mailing.id, subscriber_id=ann_id,
                             email="ann@example.org", variant_key="", status="sent"))  # fmt: skip
    failed: list[BaseException] = []

    def running(work: Any) -> threading.Thread:
        def target() -> None:
            try:
                work()
            except BaseException as exc:  # reported by the test below
                failed.append(exc)

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    with ready.engine.connect() as blocker, blocker.begin():
        # Bob's stale subscription locked: the prune stops there, retention already enforced.
        blocker.execute(text("SELECT id FROM subscriptions WHERE status = 'pending' FOR UPDATE"))
        pruning = running(partial(erasure.prune, ready, now=NOW))
        wait_for(partial(waiting_on_locks, ready, 1), "the prune to wait")
        erasing = running(partial(erasure.erase, ready, "ann@example.org", now=NOW))
        wait_for(partial(waiting_on_locks, ready, 2), "the erasure to wait")
    pruning.join(60)
    erasing.join(60)
    assert not failed, failed
    with transaction(ready.engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
        (delivery,) = session.scalars(select(Delivery)).all()
    assert delivery.subscriber_id is None and "ann" not in delivery.email


def waiting_on_locks(site: Site, count: int) -> bool:
    """Whether COUNT connections to the site's database wait on a lock (row or advisory)."""
    with site.engine.connect() as connection:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(connection.scalar(text(query)) >= count)
