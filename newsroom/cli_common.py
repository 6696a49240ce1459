"""What every CLI command shares: the site it works on, --json output, and error handling."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from newsroom.errors import NewsroomError, ProblemsError
from newsroom.site import Site

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class State:
    """Global options, and the site opened on first use."""

    site_dir: Path
    debug: bool = False
    _site: Site | None = field(default=None, repr=False)

    @property
    def site(self) -> Site:
        if self._site is None:
            self._site = Site.open(self.site_dir)
        return self._site

    def database_problem(self, exc: Exception) -> str | None:
        """What to do when EXC is a database error because the site's database is not set up
        (no tables: a new PostgreSQL database, a deleted newsroom.db) or not up to date."""
        opened = self._site is not None and "engine" in self._site.__dict__
        if not opened or not type(exc).__module__.startswith("sqlalchemy"):
            return None
        from newsroom import database

        assert self._site is not None
        return database.setup_problem(self._site.engine)

    def close(self) -> None:
        """Close the database connections a command opened (psycopg warns about leaked ones)."""
        if self._site is not None:
            self._site.close()


pass_state = click.make_pass_decorator(State)


class Group(click.Group):
    """A click group that turns library errors into one clear line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except ProblemsError as exc:
            self._fail(ctx, exc, "\n".join(str(p) for p in exc.problems))
        except NewsroomError as exc:
            self._fail(ctx, exc, f"Error: {exc}")
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug of ours: still one line, the traceback with --debug
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


def json_option(function: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(
        function
    )


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
