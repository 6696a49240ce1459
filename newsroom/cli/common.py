"""What every CLI command shares: the site it works on, --json output, and error handling."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from newsroom.cli.console import check, interrupted, pressed
from newsroom.clock import Clock, utcnow
from newsroom.errors import NewsroomError, ProblemsError

if TYPE_CHECKING:
    from logging import LogRecord

    from newsroom.site import Site

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def told_already(record: LogRecord) -> bool:
    """False for psycopg's "error ignored terminating …" (and "… in rollback", "… exiting"):
    it logs one while cleaning up after an error it raises anyway (the server gone mid-batch),
    which the command says in one line of its own (`State.database_problem`, the worker's
    wait); logging's last resort would print the driver's second telling on stderr."""
    return not str(record.msg).startswith("error ignored ")


@dataclass
class State:
    """Global options, and the site opened on first use."""

    site_dir: Path
    debug: bool = False
    clock: Clock = utcnow  # a test gives the CLI another (click's `obj`)
    _site: Site | None = field(default=None, repr=False)

    @property
    def site(self) -> Site:
        if self._site is None:
            import logging  # loaded by SQLAlchemy already, unlike a command without a site

            from newsroom.site import Site  # the database layer, loaded by commands that use it

            self._site = Site.open(self.site_dir)
            logging.getLogger("psycopg").addFilter(told_already)
        return self._site

    def now(self) -> datetime:
        return self.clock()

    def database_problem(self, exc: Exception) -> str | None:
        """What to do when EXC is a database error because the site's database is not set up
        (no tables: a new PostgreSQL database, a deleted newsroom.db) or not up to date."""
        opened = self._site is not None and "engine" in self._site.__dict__
        if not opened or not type(exc).__module__.startswith("sqlalchemy"):
            return None
        from newsroom import database

        if database.lost(exc):  # only `newsroom worker` waits for it to come back
            return (
                f"the database stopped answering ({database.said(exc)}); once it is back, run "
                "the command again (a mailing: newsroom send --resume ID, which settles what "
                "was in flight)"
            )
        assert self._site is not None
        return database.setup_problem(self._site.engine)

    def close(self) -> None:
        """Close the database connections a command opened (psycopg warns about leaked ones)."""
        if self._site is not None:
            self._site.close()


pass_state = click.make_pass_decorator(State)


class OutputClosed(Exception):
    """What newsroom wrote has no reader any more (`newsroom … | head`). Not an OSError, so
    that click passes it on instead of ending with status 1 (console.py ends quietly)."""


class Group(click.Group):
    """A click group that turns library errors into one clear line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, OutputClosed):
            raise
        except BrokenPipeError:
            raise OutputClosed from None
        except ProblemsError as exc:
            self._fail(ctx, exc, "\n".join(str(p) for p in exc.problems))
        except NewsroomError as exc:
            self._fail(ctx, exc, f"Error: {exc}")
        except KeyboardInterrupt:
            interrupted()
        except Exception as exc:  # a bug of ours: still one line, the traceback with --debug
            if pressed():  # unless it is a Ctrl-C that came wrapped (console._on_interrupt)
                interrupted()
            state = ctx.find_object(State)
            problem = state.database_problem(exc) if state is not None else None
            if problem:
                self._fail(ctx, exc, f"Error: {problem}")
            self._fail(
                ctx,
                exc,
                f"Error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)",
            )

    @staticmethod
    def _fail(ctx: click.Context, exc: BaseException, message: str) -> None:
        state = ctx.find_object(State)
        if state is not None and state.debug:
            raise exc
        click.echo(message, err=True)
        sys.exit(1)


@dataclass(frozen=True)
class Lazy:
    """A command loaded only when it runs (or its own help is asked for): MODULE's ATTRIBUTE.
    HELP is its one-line summary for the group's --help, which must not import the command:
    its module brings in the database, the web stack or the renderer (issue #13). A test keeps
    HELP equal to the first paragraph of the command's own help."""

    module: str
    attribute: str
    help: str


class LazyGroup(Group):
    """A group whose commands are imported on first use, so that `newsroom --help` and each
    command pay only for the libraries they need."""

    def __init__(self, *args: Any, lazy: Mapping[str, Lazy], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        command = getattr(importlib.import_module(entry.module), entry.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry.module}.{entry.attribute} is not a click command")
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, with the lazy commands' summaries taken from the table unloaded."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows: list[tuple[str, str]] = []
        for name in names:
            entry = self.lazy.get(name)
            loaded = self.commands.get(name)
            if loaded is None and entry is not None:
                summary = click.Command(name, help=entry.help)  # click's own shortening
                rows.append((name, summary.get_short_help_str(limit)))
            elif loaded is not None and not loaded.hidden:
                rows.append((name, loaded.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def confirm(question: str) -> bool:
    """Ask QUESTION (default no): False for "n" or Enter, which the caller says in a plain line
    and exit status 0 (the person chose; nothing went wrong). No answer at all, because the
    input ended (a script without --yes), is an error. A Ctrl-C pressed before the question is
    asked still ends the command."""
    check()
    try:
        return click.confirm(question, default=False)
    except click.Abort as exc:
        if not isinstance(exc.__context__, EOFError):
            raise  # Ctrl-C at the question: console.py says "Interrupted."
        click.echo()  # end the question's line
        raise NewsroomError(
            "no answer: the input ended before one came (use --yes to go ahead without asking)"
        ) from None


def json_option(function: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(
        function
    )


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
