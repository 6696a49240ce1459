"""`newsroom db copy` (a SQLite site into an empty PostgreSQL database) and `newsroom db backup`
(SQLite's online backup while a writer holds a transaction), issue #17, item 5."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from newsroom.models import Base
from tests.conftest import Run
from tests.smtpserver import TestSMTPServer

ADMIN_URL = os.environ.get(
    "NEWSROOM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """These sites are on SQLite whatever database the suite runs on: SQLite is what is moved."""
    return f"sqlite:///{tmp_path / 'newsroom.db'}"


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A new, empty PostgreSQL database on the machine's server, dropped after the test."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"newsroom_copy_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL at {make_url(ADMIN_URL).render_as_string()}: {exc.orig}")
    yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


@pytest.fixture
def lived_in(cli: Run, site_dir: Path, smtp_server: TestSMTPServer, tmp_path: Path) -> Path:
    """A site with a history: members imported, a mailing sent (one address refused: a hard
    bounce), one member erased (a suppression); returns the SQLite file."""
    people = "".join(f"p{i}@example.net,Person {i}\n" for i in range(25))
    (tmp_path / "people.csv").write_text(
        "email,name\nann@example.org,Ann Lee\ngone@example.com,Gone Away\n" + people
    )
    imported = cli("subscribers", "import", str(tmp_path / "people.csv"), "--list", "all-members",
                   "--confirmed", "--consent", "Members' bulletin, agreed at joining")  # fmt: skip
    assert imported.exit_code == 0, imported.stderr
    (site_dir / "issues" / "2026-11-20-news.md").write_text(
        "---\ntitle: News\ndate: 2026-11-20\nsummary: The news.\n---\nHello {{first_name|friend}}.\n"
    )
    smtp_server.fail("RCPT", 550, "5.1.1 No such user here", match="gone@")
    sent = cli("send", "2026-11-20-news.md", "--to", "all-members", "--yes")
    assert sent.exit_code == 0, sent.stdout + sent.stderr
    assert len(smtp_server.messages) == 26
    erased = cli("subscribers", "erase", "p3@example.net", "--yes")
    assert erased.exit_code == 0, erased.stderr
    return tmp_path / "newsroom.db"


def test_copy_moves_every_row_and_newsroom_runs_on_the_copy(
    cli: Run, lived_in: Path, empty_postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = create_engine(f"sqlite:///{lived_in}")
    before = counts(source)
    assert before["bounce_events"] == 1 and before["suppressions"] == 1
    assert before["deliveries"] == 27 and before["consent_events"] > 27
    with_password = make_url(empty_postgres).set(password="s3cret-pw")
    copied = cli("db", "copy", "--to", make_url(empty_postgres).render_as_string(False))
    assert copied.exit_code == 0, copied.stdout + copied.stderr
    assert "the counts match" in copied.stdout
    assert f"NEWSROOM_DATABASE_URL={make_url(empty_postgres).render_as_string()}" in copied.stdout
    assert "deliveries                  27 rows" in copied.stdout
    target = create_engine(empty_postgres)
    assert counts(target) == before
    with source.connect() as a, target.connect() as b:
        for table in ("subscribers", "deliveries", "bounce_events", "suppressions"):
            model = Base.metadata.tables[table]
            query = select(model).order_by(*model.primary_key.columns)
            assert a.execute(query).all() == b.execute(query).all(), table
    target.dispose()
    source.dispose()

    monkeypatch.setenv("NEWSROOM_DATABASE_URL", empty_postgres)
    shown = cli("subscribers", "show", "gone@example.com")
    assert shown.exit_code == 0, shown.stderr
    assert "bounced" in shown.stdout and "5.1.1 No such user here" in shown.stdout
    listed = cli("mailings").stdout.splitlines()[1].split()
    assert listed == ["1", "done", "news", "26", "0", "1", "all-members"]
    # The sequences continue after the copied ids: a new member is numbered, not refused.
    added = cli("subscribers", "add", "new@example.org", "--list", "all-members")
    assert added.exit_code == 0, added.stderr
    assert "pending" in cli("subscribers", "show", "new@example.org").stdout
    again = cli("db", "copy", "--to", with_password.render_as_string(hide_password=False))
    assert again.exit_code == 1  # the site is on PostgreSQL now
    assert "copies a SQLite site" in again.stderr


def test_a_target_with_rows_is_refused_and_left_as_it_was(
    cli: Run, site_dir: Path, empty_postgres: str
) -> None:
    target = create_engine(empty_postgres)
    with target.begin() as conn:
        conn.execute(text("CREATE TABLE notes (body text)"))
        conn.execute(text("INSERT INTO notes VALUES ('keep me')"))
    password = make_url(empty_postgres).set(password="s3cret-pw")
    refused = cli("db", "copy", "--to", password.render_as_string(hide_password=False))
    assert refused.exit_code == 1
    assert "is not empty (table notes has rows)" in refused.stderr
    assert "s3cret-pw" not in refused.stdout + refused.stderr
    with target.connect() as conn:
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'"))
        assert tables.scalars().all() == ["notes"]
    target.dispose()


def test_a_failed_copy_leaves_no_table_behind(
    cli: Run, site_dir: Path, empty_postgres: str
) -> None:
    """A value SQLite kept but PostgreSQL refuses (a name longer than its column) fails the copy
    at that table, and the schema made before it is rolled back with it."""
    assert "all-members" in cli("lists").stdout
    with sqlite3.connect(site_dir.parent / "newsroom.db") as conn:
        conn.execute("UPDATE lists SET name = ?", ("n" * 5000,))
    failed = cli("db", "copy", "--to", empty_postgres)
    assert failed.exit_code == 1
    assert "lists: rows after the first 0 cannot be copied" in failed.stderr
    assert "nothing was copied" in failed.stderr
    target = create_engine(empty_postgres)
    with target.connect() as conn:
        tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname='public'"))
        assert tables.scalars().all() == []
    target.dispose()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite:///other.db", "sqlite:///other.db is not PostgreSQL"),
        ("mysql://root:hunter2@db/x", "mysql://root:***@db/x is not PostgreSQL"),
        ("not a url", "--to: not a database URL"),
        ("postgresql+psycopg://u:hunter2@127.0.0.1:1/", "names no database"),
        ("postgresql+psycopg://u:hunter2@127.0.0.1:1/x", "cannot open the database"),
    ],
)
def test_copy_refuses_what_is_not_an_empty_postgresql(cli: Run, url: str, words: str) -> None:
    refused = cli("db", "copy", "--to", url)
    assert refused.exit_code == 1
    assert words in refused.stderr
    assert "hunter2" not in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr


def test_backup_while_a_writer_holds_a_transaction(cli: Run, site_dir: Path) -> None:
    database = site_dir.parent / "newsroom.db"
    (site_dir.parent / "ann.csv").write_text("email,name\nann@example.org,Ann Lee\n")
    added = cli("subscribers", "import", str(site_dir.parent / "ann.csv"), "--list", "all-members",
                "--confirmed", "--consent", "Asked at the stall")  # fmt: skip
    assert added.exit_code == 0, added.stderr
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO subscribers (email, name, token_key, created_at) "
        "VALUES ('half@example.org', '', 'k', '2026-01-01 00:00:00')"
    )
    copy = site_dir.parent / "backup.db"
    backed = cli("db", "backup", str(copy))
    writer.execute("COMMIT")
    writer.close()
    assert backed.exit_code == 0, backed.stderr
    assert f"backed up the database to {copy}" in backed.stdout
    with sqlite3.connect(copy) as conn:
        emails = [e for (e,) in conn.execute("SELECT email FROM subscribers")]
        assert emails == ["ann@example.org"]  # committed, and not what was under way
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file
    assert sorted(p.name for p in copy.parent.glob("backup.db*")) == ["backup.db"]

    refused = cli("db", "backup", str(copy))
    assert refused.exit_code == 1
    assert f"{copy}: already exists; give --force to replace it" in refused.stderr
    forced = cli("db", "backup", str(copy), "--force")
    assert forced.exit_code == 0, forced.stderr
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT count(*) FROM subscribers").fetchone() == (2,)


@pytest.mark.parametrize(
    ("where", "words"),
    [
        ("missing/b.db", "the folder"),
        (".", "is a folder; give a file name"),
        ("newsroom.db", "is the site's database itself"),
    ],
)
def test_backup_error_paths(cli: Run, site_dir: Path, where: str, words: str) -> None:
    given = site_dir.parent / where
    for force in ([], ["--force"]):
        refused = cli("db", "backup", str(given), *force)
        assert refused.exit_code == 1
        assert words in refused.stderr, refused.stderr
    assert (site_dir.parent / "newsroom.db").stat().st_size > 0


def test_backup_on_postgresql_names_pg_dump(
    cli: Run, empty_postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_DATABASE_URL", empty_postgres)
    assert cli("db", "upgrade").exit_code == 0
    refused = cli("db", "backup", "out.db")
    assert refused.exit_code == 1
    libpq = make_url(empty_postgres).set(drivername="postgresql", password=None)
    assert f"pg_dump -Fc -f newsroom.dump '{libpq.render_as_string()}'" in refused.stderr
