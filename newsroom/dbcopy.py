"""Moving and keeping a site's database: a SQLite site copied into PostgreSQL, SQLite backed up."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, insert, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from newsroom import database
from newsroom.errors import NewsroomError
from newsroom.models import Base

BATCH = 2_000  # rows read and inserted at once: memory stays flat whatever the table's size


@dataclass
class CopyReport:
    """What `copy` did: the rows of each table, in the order they were copied."""

    target: str  # the target URL with its password hidden
    counts: dict[str, int] = field(default_factory=dict)


def safe_url(url: URL) -> str:
    """URL as it may be shown: its password, if any, hidden."""
    return url.render_as_string(hide_password=True)


def target_url(url: str) -> URL:
    """The PostgreSQL URL a site is copied to; NewsroomError for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise NewsroomError(
            "--to: not a database URL (postgresql+psycopg://USER@HOST/DBNAME)"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise NewsroomError(
            f"--to: {safe_url(parsed)} is not PostgreSQL; give postgresql+psycopg://USER@HOST/DBNAME"
        )
    if not parsed.database:
        raise NewsroomError(f"--to: {safe_url(parsed)} names no database")
    return parsed


def copy(
    source: Engine,
    to: str,
    *,
    batch: int = BATCH,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy SOURCE (a SQLite site's database) into the empty PostgreSQL database TO in one
    transaction: the schema by Alembic, then every table in foreign-key order, then each id
    sequence set past the largest id; the counts of both sides compared before it commits. On
    any failure the transaction rolls back and the target is left as it was."""
    if source.dialect.name != "sqlite":
        raise NewsroomError(
            f"db copy copies a SQLite site; this site's database is {source.dialect.name}"
        )
    problem = database.setup_problem(source)
    if problem:
        raise NewsroomError(f"the site's {problem}, then copy")
    url = target_url(to)
    report = CopyReport(safe_url(url))
    target = database.connect(url.render_as_string(hide_password=False))
    try:
        with _snapshot(source) as reading, target.connect() as writing:
            _refuse_rows(writing, report.target)
            with writing.begin():
                _create_schema(writing)
                for table in Base.metadata.sorted_tables:
                    report.counts[table.name] = _copy_table(reading, writing, table, batch)
                    if progress:
                        progress(table.name, report.counts[table.name])
                _reset_sequences(writing)
                _verify(reading, writing, report.counts)
    finally:
        target.dispose()
    return report


@contextmanager
def _snapshot(source: Engine) -> Iterator[Connection]:
    """A connection to SOURCE reading in one transaction, so that every table is copied as of
    one moment even while newsroom writes (WAL readers see the last commit before they began).
    Python's sqlite3 opens no transaction for a SELECT, hence the explicit BEGIN."""
    engine = create_engine(source.url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    try:
        with engine.connect() as connection, connection.begin():
            yield connection
    finally:
        engine.dispose()


def _refuse_rows(connection: Connection, shown: str) -> None:
    """NewsroomError when any table of the target's schema holds a row: a copy goes only into an
    empty database, so that nothing of another site is mixed in or overwritten."""
    names = connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    ).scalars()
    quote = connection.dialect.identifier_preparer.quote
    for name in sorted(names):
        if name == "alembic_version":
            continue
        if connection.execute(text(f"SELECT EXISTS (SELECT 1 FROM {quote(name)})")).scalar():
            connection.rollback()
            raise NewsroomError(
                f"{shown} is not empty (table {name} has rows): copy into a new database "
                "(createdb NAME), never over one in use"
            )
    connection.rollback()


def _create_schema(connection: Connection) -> None:
    """Alembic's upgrade to head, inside the copy's transaction (PostgreSQL's DDL is
    transactional: a failed copy leaves no table behind)."""
    from alembic import command

    config = database._alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _copy_table(reading: Connection, writing: Connection, table: Table, batch: int) -> int:
    """Stream TABLE's rows from READING into WRITING BATCH at a time; the number copied."""
    copied = 0
    rows = reading.execute(select(table).order_by(*table.primary_key.columns))
    statement = insert(table)
    for part in rows.mappings().partitions(batch):
        try:
            writing.execute(statement, [dict(row) for row in part])
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            raise NewsroomError(
                f"{table.name}: rows after the first {copied} cannot be copied: {reason}; "
                "nothing was copied"
            ) from None
        copied += len(part)
    return copied


def _reset_sequences(connection: Connection) -> None:
    """Each table's id sequence set past the largest id copied: rows came with their ids, and
    the next row PostgreSQL numbers itself must not collide with one of them."""
    for table in Base.metadata.sorted_tables:
        column = table.columns.get("id")
        if column is None or column.autoincrement is False or not column.primary_key:
            continue
        connection.execute(
            text(
                "SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {connection.dialect.identifier_preparer.quote(table.name)}), 0) + 1, false)"
            ),
            {"table": table.name},
        )


def _verify(reading: Connection, writing: Connection, counts: dict[str, int]) -> None:
    """NewsroomError unless every table has as many rows in the target as in the source."""
    for table in Base.metadata.sorted_tables:
        count = select(func.count()).select_from(table)
        have, want = writing.execute(count).scalar_one(), reading.execute(count).scalar_one()
        if have != want or have != counts[table.name]:
            raise NewsroomError(f"{table.name}: {have} rows copied of {want}; nothing was copied")


def pg_dump_command(url: URL) -> str:
    """The pg_dump command that backs up URL's database (libpq's URL form, no password)."""
    libpq = url.set(drivername="postgresql", password=None)
    return f"pg_dump -Fc -f newsroom.dump '{libpq.render_as_string(hide_password=False)}'"


def backup(engine: Engine, destination: Path, *, force: bool = False) -> int:
    """Write a consistent copy of ENGINE's SQLite database to DESTINATION with SQLite's online
    backup API, while newsroom may be writing (https://sqlite.org/backup.html); the number of
    bytes written. The copy goes to a temporary file renamed into place at the end, so a failed
    backup leaves no half-written file, and never over an existing file unless FORCE."""
    if engine.dialect.name != "sqlite":
        raise NewsroomError(
            "db backup copies a SQLite database; this site's is PostgreSQL: back it up with "
            f"{pg_dump_command(engine.url)} (restore with pg_restore into an empty database)"
        )
    source = Path(engine.url.database or "")
    if not source.is_file():
        raise NewsroomError(f"{source}: the site's database file does not exist")
    _check_destination(source, destination, force)
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        _online_backup(source, partial)
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return destination.stat().st_size


def _check_destination(source: Path, destination: Path, force: bool) -> None:
    if not destination.parent.is_dir():
        raise NewsroomError(f"{destination}: the folder {destination.parent} does not exist")
    if destination.is_dir():
        raise NewsroomError(f"{destination}: is a folder; give a file name")
    if destination.exists():
        if destination.resolve() == source.resolve():
            raise NewsroomError(f"{destination}: is the site's database itself")
        if not force:
            raise NewsroomError(f"{destination}: already exists; give --force to replace it")


def _online_backup(source: Path, destination: Path) -> None:
    """Copy SOURCE's pages to DESTINATION in one step (a read transaction: a writer goes on, as
    WAL allows), then make the copy a single file (rollback journal) that can be moved."""
    reading = sqlite3.connect(source, timeout=30)
    try:
        writing = sqlite3.connect(destination)
        try:
            reading.backup(writing)
            writing.execute("PRAGMA journal_mode=DELETE")
            (verdict,) = writing.execute("PRAGMA quick_check").fetchone()
            if verdict != "ok":
                raise NewsroomError(f"{destination}: the copy fails SQLite's check: {verdict}")
        finally:
            writing.close()
    finally:
        reading.close()
