"""The engine, sessions and migrations: SQLite by default (WAL, foreign keys), PostgreSQL at scale."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from newsroom.errors import NewsroomError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# Alembic is imported by the functions below, not here: it costs a command 0.3–1.1 s of start-up
# (its DDL modules for every dialect), and only `init`, `db upgrade` and an error about a
# database without tables use it (issue #13).


def connect(url: str) -> Engine:
    """An engine for URL; raises NewsroomError naming the URL when it cannot be reached."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise NewsroomError(f"database.url: {url!r} is not a database URL") from None
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        with engine.connect():
            pass
    except (OperationalError, ImportError, ArgumentError) as exc:
        raise NewsroomError(
            f"cannot open the database {parsed.render_as_string()}: {said(exc)}"
        ) from None
    return engine


# PostgreSQL's SQLSTATEs for a server going away or not taking connections yet (PostgreSQL
# manual, appendix A): class 08 connection exceptions, admin_shutdown, crash_shutdown,
# cannot_connect_now. Anything else is a real error and is not waited out.
GONE_STATES = ("57P01", "57P02", "57P03")


def lost(exc: BaseException) -> bool:
    """Whether EXC says the PostgreSQL server went away or cannot be reached (restarted,
    stopped, starting up), rather than that a statement went wrong: what `newsroom worker`
    waits out. Never true on SQLite."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is installed with newsroom
        return False
    if isinstance(exc, psycopg.InterfaceError):
        return True  # a connection already closed under us
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in GONE_STATES


def said(exc: BaseException) -> str:
    """The first line of what the driver said (SQLAlchemy wraps it in EXC), for one line of
    output; the error's type when it said nothing."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return lines[0] if lines else type(inner).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web side read while a mailing writes; NORMAL is durable across app crashes
    # (measured here: 2,000 committed inserts in 86 ms), foreign keys are off in SQLite by default.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back on any error."""
    with sessions(engine).begin() as session:
        yield session


class Prepared:
    """A Core statement compiled once per dialect, to run straight on a DB-API cursor (`Raw`).

    For the one hot path where SQLAlchemy's work on each execution (cache key, execution
    context, result wrapping: ~0.07 ms a statement) costs more than the database itself: the
    one-click unsubscribe. Values go through each column type's bind processor, so rows are
    stored exactly as the ORM stores them, but Python-side column defaults are not applied (a
    statement that would need them is refused); results come back as the driver gives them, so
    return plain integers and strings only."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._forms: dict[Dialect, _Form] = {}

    def form(self, dialect: Dialect) -> _Form:
        form = self._forms.get(dialect)
        if form is None:
            form = self._forms[dialect] = _Form(self.statement, dialect)
        return form


class _Form:
    """One statement's SQL for one dialect, and how to turn named values into its parameters."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        missing = [c.key for c in [*compiled.insert_prefetch, *compiled.update_prefetch]]
        if missing:  # SQLAlchemy's execution context would fill them in; nothing does here
            raise ValueError(f"give {', '.join(missing)} a value: column defaults are not applied")
        self.sql = compiled.string
        self.positions = compiled.positiontup  # None when the driver takes named parameters
        # The values the statement carries itself, such as the statuses in a WHERE.
        self.literals = {name: b.value for name, b in compiled.binds.items() if not b.required}
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        merged = {**self.literals, **values}
        for name, processor in self.processors.items():
            merged[name] = processor(merged[name])
        if self.positions is None:
            return merged
        return tuple(merged[name] for name in self.positions)


class Raw:
    """A DB-API cursor in a transaction, running `Prepared` statements (see `raw_transaction`)."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def execute(self, statement: Prepared, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run STATEMENT with VALUES; the rows it returns (RETURNING or SELECT), else []."""
        form = statement.form(self.dialect)
        self.cursor.execute(form.sql, form.parameters(values))
        return list(self.cursor.fetchall()) if self.cursor.description else []

    def execute_many(self, statement: Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
        form = statement.form(self.dialect)
        self.cursor.executemany(form.sql, [form.parameters(row) for row in rows])


class Busy(NewsroomError):
    """Another connection holds SQLite's write lock, and the caller would rather not wait."""


@contextmanager
def raw_transaction(engine: Engine, *, wait: bool = True) -> Iterator[Raw]:
    """A pooled DB-API connection's transaction: commits when the block ends, rolls back on
    any error (the SQLite connection keeps the pragmas `connect` set). On SQLite without WAIT
    it takes the write lock first, and raises Busy at once if another writer holds it."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if not wait and engine.dialect.name == "sqlite":
            _begin_now(cursor)
        yield Raw(cursor, engine.dialect)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.close()


def _begin_now(cursor: Any) -> None:
    """BEGIN IMMEDIATE (the write lock, now) with SQLite's busy handler off for that statement
    only: it would otherwise wait up to the connection's timeout, in whatever thread called."""
    cursor.execute("PRAGMA busy_timeout")
    (patience,) = cursor.fetchone()
    cursor.execute("PRAGMA busy_timeout = 0")
    try:
        cursor.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorname != "SQLITE_BUSY":
            raise
        raise Busy("another writer holds the database") from None
    finally:
        cursor.execute(f"PRAGMA busy_timeout = {int(patience)}")


def _alembic_config(engine: Engine | None = None) -> AlembicConfig:
    """Alembic's configuration in code (no alembic.ini); env.py takes the engine from it."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", "newsroom:migrations")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> list[str]:
    """Apply every pending migration; returns the revisions applied (empty: already current)."""
    from alembic import command
    from alembic.script import ScriptDirectory

    before = current_revision(engine)
    config = _alembic_config(engine)
    command.upgrade(config, "head")
    script = ScriptDirectory.from_config(config)
    applied = []
    for rev in script.iterate_revisions("head", before or "base"):
        if rev.revision != before:
            applied.append(rev.revision)
    return list(reversed(applied))


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def setup_problem(engine: Engine) -> str | None:
    """Why ENGINE's database cannot be used as it is, if migrations are missing; else None."""
    try:
        revision = current_revision(engine)
    except SQLAlchemyError:
        return None  # unreachable or broken some other way: the original error says more
    if revision is None:
        return "the database is not set up: run `newsroom db upgrade`"
    if revision != head_revision():
        return f"the database is not up to date (at {revision}): run `newsroom db upgrade`"
    return None


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    head = script.get_current_head()
    assert head is not None
    return head
