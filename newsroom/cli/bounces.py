"""`newsroom bounces`: read bounce and complaint reports, list recent ones."""

from __future__ import annotations

from datetime import timedelta

import click

from newsroom import database
from newsroom.cli.common import Group, State, echo_json, json_option, pass_state
from newsroom.delivery import bounces


@click.group(cls=Group, invoke_without_command=True)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="How far back to list.",
)
@json_option
@pass_state
@click.pass_context
def bounces_group(ctx: click.Context, state: State, days: int, as_json: bool) -> None:
    """List recent bounces and complaints with their diagnostic codes.

    \b
    Example:
      newsroom bounces --days 7
    """
    if ctx.invoked_subcommand is not None:
        return
    with database.transaction(state.site.engine) as session:
        rows = bounces.recent(session, state.now() - timedelta(days=days))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"No bounces or complaints in the last {days} days.")
    for row in rows:
        click.echo(
            f"{row['at']:%Y-%m-%d %H:%M}  {row['kind']:9} {row['score']!s:4} {row['email']}  {row['diagnostic']}"
        )


@bounces_group.command()
@click.argument("source")
@click.option("--delete", is_flag=True, help="Delete each report once it is handled.")
@click.option(
    "--move-to",
    metavar="FOLDER",
    default="",
    help="Move each handled report to this Maildir (or IMAP folder).",
)
@json_option
@pass_state
def process(state: State, source: str, delete: bool, move_to: str, as_json: bool) -> None:
    """Read bounce and abuse reports from an mbox file, a Maildir or imaps://user@host/FOLDER.

    Messages to the List-Unsubscribe mailto address arrive there too and unsubscribe. Safe to
    run from cron: each report is handled once (remembered by its Message-ID). The IMAP
    password comes from NEWSROOM_BOUNCES_IMAP_PASSWORD.

    \b
    Example:
      newsroom bounces process imaps://bounces@mail.example.org/INBOX --move-to Processed
    """
    if delete and move_to:
        raise click.UsageError("choose one of --delete and --move-to")
    site = state.site
    outcome = bounces.process(
        site.engine, site.config, source, now=state.now(), delete=delete, move_to=move_to
    )
    if as_json:
        echo_json(outcome.__dict__)
        return
    click.echo(
        f"{outcome.hard} hard bounces, {outcome.soft} soft bounces, {outcome.complaints} complaints, "
        f"{outcome.unsubscribes} unsubscribes, {outcome.duplicates} already handled, "
        f"{sum(outcome.ignored.values())} ignored"
    )
    for reason, count in sorted(outcome.ignored.items()):
        click.echo(f"  ignored {count}: {reason}")
    for address in outcome.bounced:
        click.echo(f"  {address}: bounce score reached the threshold; subscriptions set to bounced")
    for address in outcome.unconfirmed:
        click.echo(
            f"  {address}: the confirmation email bounced; pending subscriptions set to bounced"
        )
