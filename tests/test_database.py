"""Prepared statements on the DB-API cursor, and their transactions (database.py), on SQLite and
on PostgreSQL alike."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import bindparam, insert, select

from newsroom.cli.common import State
from newsroom.cli.main import main
from newsroom.database import Busy, Prepared, raw_transaction, transaction
from newsroom.models import ConsentEvent
from newsroom.people import consent
from newsroom.site import Site

AT = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
EVENT = Prepared(
    insert(ConsentEvent)
    .values({key: bindparam(key) for key in consent.EVENT_COLUMNS if key != "method"})
    .values(method="one-click")  # a value the statement carries itself
    .returning(ConsentEvent.id)
)
VALUES: dict[str, Any] = {key: None for key in consent.EVENT_COLUMNS if key != "method"}
VALUES |= {"kind": "unsubscribed", "at": AT}
VALUES |= {"source": "web", "detail": ""}


def test_values_are_stored_as_the_orm_stores_them(site: Site) -> None:
    with raw_transaction(site.engine) as raw:
        [(event_id,)] = raw.execute(EVENT, VALUES)
    with transaction(site.engine) as session:
        event = session.get_one(ConsentEvent, event_id)
        assert (event.kind, event.method, event.at) == ("unsubscribed", "one-click", AT)


def test_a_statement_that_needs_column_defaults_is_refused(site: Site) -> None:
    leaves_out_defaults = Prepared(insert(ConsentEvent).values(kind=bindparam("kind")))
    refused = pytest.raises(ValueError, match="column defaults are not applied")
    with refused, raw_transaction(site.engine) as raw:
        raw.execute(leaves_out_defaults, {"kind": "unsubscribed"})


def test_an_error_rolls_the_whole_transaction_back(site: Site) -> None:
    with pytest.raises(RuntimeError), raw_transaction(site.engine) as raw:
        raw.execute(EVENT, VALUES)
        raise RuntimeError("the next statement failed")
    with transaction(site.engine) as session:
        assert session.scalars(select(ConsentEvent)).all() == []


def test_without_wait_a_held_write_lock_is_busy_at_once(site: Site) -> None:
    if site.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's single writer")
    other = sqlite3.connect(site.engine.url.database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Busy), raw_transaction(site.engine, wait=False) as raw:
            raw.execute(EVENT, VALUES)
    finally:
        other.rollback()
        other.close()
    with raw_transaction(site.engine, wait=False) as raw:  # free again: carried out at once
        raw.execute(EVENT, VALUES)
    connection = site.engine.raw_connection()  # the pool's one, its patience given back
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone() == (30000,)
    finally:
        connection.close()


def test_a_database_never_migrated_says_how_to_set_it_up(
    site_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    runner = CliRunner()
    for args in (["lists"], ["mailings"], ["subscribers", "show", "a@example.org"], ["serve"]):
        result = runner.invoke(main, ["--site", str(site_dir), *args])
        assert (result.exit_code, result.output) == (
            1,
            "Error: the database is not set up: run `newsroom db upgrade`\n",
        ), args
    assert runner.invoke(main, ["--site", str(site_dir), "db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["--site", str(site_dir), "lists"]).exit_code == 0


def test_the_drivers_cleanup_after_a_lost_server_is_not_told_twice(
    site_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """psycopg logs "error ignored terminating …" while cleaning up after an error it raises
    anyway, which a command says in one line of its own: once a command has opened its site,
    that record is dropped, and every other record of the driver still comes through."""
    state = State(site_dir)
    state.site.close()  # opening it is what matters
    driver = logging.getLogger("psycopg")
    with caplog.at_level(logging.WARNING, logger="psycopg"):
        driver.warning("error ignored terminating %r: %s", "<Pipeline [BAD]>", "server closed")
        driver.warning("error ignored in rollback on %s: %s", "<Connection>", "server closed")
        driver.warning("a notice from the server")
    assert [record.getMessage() for record in caplog.records] == ["a notice from the server"]
