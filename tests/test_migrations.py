"""The migrations build exactly the schema that models.py describes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError

from newsroom import tokens
from newsroom.database import transaction
from newsroom.models import (
    Base,
    BounceEvent,
    ConsentEvent,
    Delivery,
    Mailing,
    MailingList,
    Subscriber,
    Subscription,
    Welcome,
)
from newsroom.people import erasure, lists, subscribers
from newsroom.site import Site
from tests.smtpserver import TestSMTPServer


def test_migrated_database_matches_the_models(site: Site) -> None:
    with site.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def alembic_config(site: Site) -> Config:
    config = Config()
    config.set_main_option("script_location", "newsroom:migrations")
    config.attributes["engine"] = site.engine
    return config


def test_0002_gives_each_subscriber_a_token_key_and_keeps_links_already_sent(
    smtp_server: TestSMTPServer, site: Site
) -> None:
    """Rows from before 0002 get a random token key each and `old_links`: the links in emails
    already sent (a digest of the address alone) keep working for them, until an erasure. The
    columns are added in place: copying the table would have cascaded into the subscriptions."""
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    lists.sync(site, now)
    command.downgrade(alembic_config(site), "0001")
    try:
        with site.engine.begin() as connection:
            list_id = connection.scalar(text("SELECT id FROM lists WHERE slug = 'all-members'"))
            for email in ("ann@example.org", "bob@example.org"):
                person = connection.scalar(
                    text(
                        "INSERT INTO subscribers (email, name, created_at) "
                        "VALUES (:email, '', :now) RETURNING id"
                    ),
                    {"email": email, "now": now.replace(tzinfo=None)},
                )
                connection.execute(
                    text(
                        "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, "
                        "updated_at) VALUES (:s, :l, 'confirmed', :now, :now)"
                    ),
                    {"s": person, "l": list_id, "now": now.replace(tzinfo=None)},
                )
    finally:
        command.upgrade(alembic_config(site), "head")
    with transaction(site.engine) as session:
        people = {p.email: p for p in session.scalars(select(Subscriber))}
        kept = session.scalars(select(Subscription.status)).all()
    assert kept == ["confirmed", "confirmed"]
    keys = [p.token_key for p in people.values()]
    assert len(set(keys)) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", k) for k in keys)
    assert all(p.old_links for p in people.values())

    ann = people["ann@example.org"]
    sent_before = tokens.make(
        site.config, "unsubscribe", {"s": ann.id, "a": tokens.address_digest(ann.email)}, now=now
    )
    assert subscribers.unsubscribe(site, sent_before, method="one-click", now=now) == [
        "all-members"
    ]
    erasure.erase(site, ann.email, now=now)
    subscribers.add(site, ann.email, ["all-members"], now=now, allow_suppressed=True)
    with transaction(site.engine) as session:
        again = session.scalars(select(Subscriber).where(Subscriber.email == ann.email)).one()
        assert not again.old_links and again.token_key not in keys
    with pytest.raises(tokens.TokenError):
        subscribers.unsubscribe(site, sent_before, method="one-click", now=now)


def test_0005_gives_ledger_events_room_for_imported_evidence(site: Site) -> None:
    """The events already there keep everything and have no evidence; new ones can."""
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    command.downgrade(alembic_config(site), "0004")
    try:
        with site.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO consent_events (kind, method, source, at, detail) "
                    "VALUES ('imported', 'admin', 'import', :now, 'from old.csv')"
                ),
                {"now": now.replace(tzinfo=None)},
            )
    finally:
        command.upgrade(alembic_config(site), "head")
    with transaction(site.engine) as session:
        (event,) = session.scalars(select(ConsentEvent))
        assert (event.detail, event.evidence) == ("from old.csv", None)
        event.evidence = '{"optin_ip": "192.0.2.1"}'


def test_0009_keeps_what_points_at_deliveries_both_ways(site: Site) -> None:
    """0009 changes the constraints of `deliveries`, which SQLite does by copying the table:
    the welcomes and bounce events pointing at deliveries keep pointing at the same ones (the
    copy's drop would have set them to NULL), and one delivery per address per mailing holds
    before and after."""
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    lists.sync(site, now)
    with transaction(site.engine) as session:
        person = Subscriber(email="ann@example.org")
        session.add(person)
        mailing = Mailing(
            issue_slug="x", issue_path="issues/x.md", subject="X", expression="all-members"
        )
        session.add(mailing)
        session.flush()
        made = [
            Delivery(mailing_id=mailing.id, subscriber_id=person.id, email=email, variant_key="")
            for email in ("ann@example.org", "bob@example.org", "cy@example.org")
        ]
        session.add_all(made)
        session.flush()
        list_id = session.scalar(select(MailingList.id).where(MailingList.slug == "all-members"))
        welcome = Welcome(list_id=list_id, subscriber_id=person.id, confirmed_at=now)
        session.add(welcome)
        welcome.delivery_id = made[1].id
        session.add(BounceEvent(subscriber_id=person.id, delivery_id=made[2].id, kind="hard"))
        ids = (mailing.id, [d.id for d in made])

    def pointing() -> tuple[object, ...]:
        with site.engine.connect() as connection:
            return (
                connection.scalar(text("SELECT delivery_id FROM welcomes")),
                connection.scalar(text("SELECT delivery_id FROM bounce_events")),
                connection.execute(text("SELECT id FROM deliveries ORDER BY id")).scalars().all(),
            )

    def twice_refused() -> None:
        with pytest.raises(IntegrityError), site.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO deliveries (mailing_id, email, variant_key, status, attempts, "
                    "last_response) VALUES (:m, 'ann@example.org', '', 'pending', 0, '')"
                ),
                {"m": ids[0]},
            )

    expected = (ids[1][1], ids[1][2], ids[1])
    assert pointing() == expected
    twice_refused()
    command.downgrade(alembic_config(site), "0008")
    try:
        assert pointing() == expected
        twice_refused()
    finally:
        command.upgrade(alembic_config(site), "head")
    assert pointing() == expected
    twice_refused()


def test_0009_on_sqlite_takes_time_in_step_with_the_references_it_keeps(site: Site) -> None:
    """Putting back what points at deliveries looks each reference up by id: twice the
    welcomes and bounce events take about twice the work, not four times (a lookup scanning
    every reference kept took 24 s for 40,000 welcomes, and hours for a large site's bounces).
    The work is counted in SQLite's virtual machine steps, the same on any machine."""
    if site.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL changes the constraints in place")
    lists.sync(site, datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    work = [_upgrade_steps(site, size) for size in (1500, 3000)]
    assert work[1] < 2.5 * work[0], work


def _upgrade_steps(site: Site, size: int) -> int:
    """Thousands of SQLite VM steps 0009 takes with SIZE welcomes and bounce events, each
    pointing at a delivery of its own (made at 0008, emptied first)."""
    command.downgrade(alembic_config(site), "0008")
    numbers = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :size) "
        "SELECT i FROM n"
    )
    with site.engine.begin() as connection:
        for table in ("bounce_events", "welcomes", "deliveries", "mailings", "subscribers"):
            connection.execute(text(f"DELETE FROM {table}"))
        connection.execute(
            text(
                "INSERT INTO subscribers (id, email, name, created_at, token_key, old_links) "
                f"SELECT i, 'p' || i || '@example.net', '', '2026-03-02', 'k' || i, 0 "
                f"FROM ({numbers})"
            ),
            {"size": size},
        )
        connection.execute(
            text(
                "INSERT INTO mailings (id, issue_slug, issue_path, subject, expression, "
                "status, paused_reason, created_at, kind) "
                "VALUES (1, 'x', 'issues/x.md', 'X', 'all-members', 'done', '', "
                "'2026-03-02', 'issue')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO deliveries (id, mailing_id, subscriber_id, email, variant_key, "
                "status, attempts, last_response) "
                "SELECT id, 1, id, email, '', 'sent', 1, '' FROM subscribers"
            )
        )
        list_id = connection.scalar(text("SELECT id FROM lists WHERE slug = 'all-members'"))
        connection.execute(
            text(
                "INSERT INTO welcomes (list_id, subscriber_id, confirmed_at, status, "
                "delivery_id, reason) SELECT :list, id, '2026-03-02', 'queued', id, '' "
                "FROM subscribers"
            ),
            {"list": list_id},
        )
        connection.execute(
            text(
                "INSERT INTO bounce_events (subscriber_id, delivery_id, kind, score, "
                "diagnostic, at) SELECT id, id, 'soft', 0.5, '', '2026-03-02' FROM subscribers"
            )
        )
    steps = [0]

    def counted(dbapi_connection: Any, _record: Any) -> None:
        def step() -> int:
            steps[0] += 1
            return 0

        dbapi_connection.set_progress_handler(step, 1000)

    site.engine.dispose()  # the migration's connection is a new one, counted
    event.listen(site.engine, "connect", counted)
    try:
        command.upgrade(alembic_config(site), "head")
    finally:
        event.remove(site.engine, "connect", counted)
        site.engine.dispose()
    with site.engine.connect() as connection:
        pointing = "SELECT count(*) FROM {} WHERE delivery_id = subscriber_id"
        assert connection.scalar(text(pointing.format("welcomes"))) == size
        assert connection.scalar(text(pointing.format("bounce_events"))) == size
    return steps[0]
