"""The `newsroom` command: a thin shell over the library. Each command group lives in a module
of its own in cli/ and is imported only when it runs: `newsroom --help` loads no database, web,
MJML or feed library (issue #13)."""

from __future__ import annotations

from pathlib import Path

import click

from newsroom import settings
from newsroom.cli.common import (
    CONTEXT,
    Group,
    Lazy,
    LazyGroup,
    State,
    echo_json,
    json_option,
    pass_state,
)
from newsroom.clock import utcnow

COMMANDS = {
    "bounces": Lazy(
        "newsroom.cli.bounces",
        "bounces_group",
        "List recent bounces and complaints with their diagnostic codes.",
    ),
    "build": Lazy(
        "newsroom.cli.web",
        "build",
        "Write the public archive and feeds as static files for any web host.",
    ),
    "check": Lazy(
        "newsroom.cli.compose",
        "check",
        "Check issues (default: all in issues/): errors, then preflight warnings.",
    ),
    "dev-smtp": Lazy(
        "newsroom.cli.sending",
        "dev_smtp",
        "Run a local SMTP server that keeps every message in a Maildir (nothing is delivered).",
    ),
    "doctor": Lazy(
        "newsroom.cli.doctor",
        "doctor",
        "Check whether the site is ready to send, each check with what to do.",
    ),
    "inbox": Lazy(
        "newsroom.cli.web",
        "inbox",
        "Show what `newsroom dev-smtp` received on a local web page: HTML, text and headers.",
    ),
    "lists": Lazy(
        "newsroom.cli.subscribers",
        "list_lists",
        "Show each list with its number of subscriptions per status.",
    ),
    "mailings": Lazy(
        "newsroom.cli.sending",
        "mailings_group",
        "List mailings with their deliveries per status (or show, pause, cancel one).",
    ),
    "new": Lazy(
        "newsroom.cli.compose",
        "new",
        "Write a dated skeleton issue in issues/ showing every block type.",
    ),
    "preview": Lazy(
        "newsroom.cli.compose",
        "preview",
        "Write an issue's HTML email, text part and web page to files, or show them on a local page.",
    ),
    "report": Lazy(
        "newsroom.cli.report",
        "report",
        "Show what came back from each mailing over time, beside the providers' thresholds.",
    ),
    "segment": Lazy(
        "newsroom.cli.subscribers",
        "segment",
        "Count the subscribers a segment expression selects and show the first few.",
    ),
    "segments": Lazy(
        "newsroom.cli.subscribers",
        "list_segments",
        "Show each saved segment with the number of subscribers it selects.",
    ),
    "send": Lazy(
        "newsroom.cli.sending",
        "send",
        "Send ISSUE to the subscribers an expression selects, or resume a mailing.",
    ),
    "serve": Lazy(
        "newsroom.cli.web",
        "serve",
        "Run the web side: archive, feeds, subscribe, confirm, unsubscribe, preferences.",
    ),
    "subscribers": Lazy(
        "newsroom.cli.subscribers",
        "subscribers_group",
        "Add, import, export, show, unsubscribe and erase subscribers.",
    ),
    "worker": Lazy(
        "newsroom.cli.sending",
        "worker",
        "Send every mailing that is under way, as one of any number of workers.",
    ),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings=CONTEXT)
@click.option(
    "--site",
    "site_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    envvar="NEWSROOM_SITE",
    show_default=True,
    help="The site folder (holding newsroom.toml).",
)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="newsroom")
@click.pass_context
def main(ctx: click.Context, site_dir: Path, debug: bool) -> None:
    """Newsletters for campaigning organisations: write issues in Markdown, send them to lists,
    publish them on the web and in feeds.

    \b
    Example:
      newsroom init my-site && cd my-site && newsroom settings
    """
    given = ctx.obj  # a clock, when a test runs the CLI in-process at a time of its choosing
    ctx.obj = State(site_dir, debug, clock=given if callable(given) else utcnow)
    ctx.call_on_close(ctx.obj.close)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--name", help="The organisation or newsletter name.")
@pass_state
def init(state: State, folder: Path | None, name: str | None) -> None:
    """Create a new site in FOLDER (default: the --site folder).

    Writes newsroom.toml (every setting, commented), subscribers/lists.toml, issues/, a .env with
    a fresh secret key (mode 0600), and the migrated database. Running it again changes nothing.

    \b
    Example:
      newsroom init campaign-news --name "Campaign News"
    """
    from newsroom import site as sites

    root = folder or state.site_dir
    report = sites.init(root, name)
    if not report.changed:
        click.echo(f"{root} is already a newsroom site: nothing to do.")
        return
    for path in report.created:
        click.echo(f"created {root / path}")
    for revision in report.migrations:
        click.echo(f"database migrated to {revision}")
    click.echo(f'Done. Next: cd {root} and write an issue with `newsroom new "Title"`.')


@main.group(cls=Group)
def db() -> None:
    """The database: migrations, backups, and the move from SQLite to PostgreSQL.

    \b
    Example:
      newsroom db upgrade
    """


@db.command()
@pass_state
def upgrade(state: State) -> None:
    """Apply pending migrations to the site's database.

    \b
    Example:
      NEWSROOM_DATABASE_URL=postgresql+psycopg://newsroom@db/newsroom newsroom db upgrade
    """
    from newsroom import database

    applied = database.upgrade(state.site.engine)
    if applied:
        click.echo(f"applied {', '.join(applied)}; the database is at {applied[-1]}")
    else:
        click.echo(f"the database is up to date ({database.head_revision()})")


@db.command(name="copy")
@click.option("--to", "to", required=True, metavar="URL", help="An empty PostgreSQL database.")
@pass_state
def copy_database(state: State, to: str) -> None:
    """Copy this SQLite site's database into an empty PostgreSQL database, in one transaction.

    Stop newsroom first (serve, worker, cron jobs): what changes after the copy began is not
    in it. The target gets the schema, every row with its id, and its counts checked.

    \b
    Example:
      newsroom db copy --to postgresql+psycopg://newsroom@db.example.org/newsroom
    """
    from newsroom import dbcopy

    report = dbcopy.copy(
        state.site.engine, to, progress=lambda t, n: click.echo(f"{t:20} {n:>9,} rows")
    )
    total = sum(report.counts.values())
    click.echo(
        f"copied {total:,} rows in {len(report.counts)} tables into {report.target}; the counts match."
    )
    click.echo(
        "Next: point the site at it, in newsroom.toml ([database] url = ...) or the environment:"
    )
    click.echo(f"  NEWSROOM_DATABASE_URL={report.target}  (with the password you gave)")
    click.echo("and keep the SQLite file as a backup until the site runs well on PostgreSQL.")


@db.command(name="backup")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@pass_state
def backup_database(state: State, file: Path, force: bool) -> None:
    """Write a consistent copy of the site's SQLite database to FILE, while newsroom runs.

    To restore: stop newsroom, copy FILE over the database file, start newsroom.

    \b
    Example:
      newsroom db backup backups/newsroom-$(date +%F).db
    """
    from newsroom import dbcopy

    size = dbcopy.backup(state.site.engine, file, force=force)
    click.echo(f"backed up the database to {file} ({size:,} bytes)")


@main.command(name="settings")
@json_option
@pass_state
def show_settings(state: State, as_json: bool) -> None:
    """Show every setting with its value and where it came from.

    Secrets are shown only as set or not set.

    \b
    Example:
      newsroom settings --json
    """
    config = state.site.config
    rows = []
    for setting in settings.SETTINGS:
        value = config[setting.name]
        if setting.secret:
            value = "(set)" if value else "(not set)"
        rows.append(
            {
                "name": setting.name,
                "value": value,
                "source": config.sources[setting.name],
                "env": setting.env,
                "help": setting.help,
            }
        )
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:32} {row['value']!s:40} ({row['source']})")
