"""`newsroom lists`, `newsroom subscribers ...`, `newsroom segment` and `newsroom segments`: thin
shells over the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from newsroom.cli.common import Group, State, confirm, echo_json, json_option, pass_state
from newsroom.database import transaction
from newsroom.errors import NewsroomError
from newsroom.people import (
    confirmation,
    erasure,
    exportformats,
    imports,
    lists,
    listsync,
    savedsegments,
    selection,
    subscribers,
)
from newsroom.people.retention import RetentionReport
from newsroom.site import Site

SHOWN_MATCHES = 10


def _synced(state: State) -> Site:
    """The site with its lists in step with lists.toml (every command here needs them)."""
    lists.sync(state.site, state.now())
    return state.site


@click.command(name="lists")
@json_option
@pass_state
def list_lists(state: State, as_json: bool) -> None:
    """Show each list with its number of subscriptions per status.

    Brings the database in step with subscribers/lists.toml first: new lists are added; a removed
    list that people are still on is refused. A list with a welcome issue shows how many
    welcomes were queued (sent, or still to be sent), wait or were dropped, and what stops its
    welcome issue being sent, if anything does.

    \b
    Example:
      newsroom lists
    """
    from newsroom.delivery import welcomes
    from newsroom.people import welcomes as owed

    site = _synced(state)
    specs = lists.read_lists(site.lists_file)
    with transaction(site.engine) as session:
        given = owed.counts(session)
        rows: list[dict[str, Any]] = [
            {
                "slug": row.slug,
                "name": row.name,
                "opt_in": row.opt_in,
                "public": row.public,
                "counts": counts,
                "welcome": specs[row.slug].welcome if row.slug in specs else "",
                "welcomes": given.get(row.id, {}),
            }
            for row, counts in lists.counts(session)
        ]
    problems = welcomes.problems(site, specs)
    if as_json:
        for row in rows:
            row["welcome_problems"] = [str(p) for p in problems.get(row["slug"], [])]
        echo_json(rows)
        return
    click.echo(
        f"{'list':24} {'opt-in':7} {'public':6} confirmed pending unsubscribed bounced complained"
    )
    for r in rows:
        c = r["counts"]
        click.echo(
            f"{r['slug']:24} {r['opt_in']:7} {'yes' if r['public'] else 'no':6} "
            f"{c['confirmed']:9} {c['pending']:7} {c['unsubscribed']:12} {c['bounced']:7} "
            f"{c['complained']:10}"
        )
    for r in rows:
        if r["welcome"]:
            w = r["welcomes"]
            click.echo(
                f"{r['slug']} welcomes with {r['welcome']}: {w.get('queued', 0)} queued, "
                f"{w.get('waiting', 0)} waiting, {w.get('dropped', 0)} dropped"
            )
    for found in problems.values():
        for problem in found:
            click.echo(str(problem), err=True)


@click.group(cls=Group, name="subscribers")
def subscribers_group() -> None:
    """Add, import, export, show, unsubscribe and erase subscribers.

    \b
    Example:
      newsroom subscribers add ann@example.org --list all-members --name "Ann Lee"
    """


@subscribers_group.command()
@click.argument("email")
@click.option(
    "--list", "list_slugs", multiple=True, required=True, help="A list slug (repeat for more)."
)
@click.option("--name", default="", help="The person's name.")
@click.option("--tag", "tags", multiple=True, help="A tag such as access-needs (repeat for more).")
@click.option(
    "--welcome",
    is_flag=True,
    help="Send the welcome issue of each single opt-in list this confirms at once (`welcome` "
    "in lists.toml), as the web form does; people who confirm by the link get theirs anyway.",
)
@pass_state
def add(
    state: State,
    email: str,
    list_slugs: tuple[str, ...],
    name: str,
    tags: tuple[str, ...],
    welcome: bool,
) -> None:
    """Subscribe EMAIL to lists (double opt-in lists send one confirmation email).

    \b
    Example:
      newsroom subscribers add ann@example.org --list all-members --list disability-group
      newsroom subscribers add bob@example.org --list newsletter --welcome
    """
    site = _synced(state)
    report = subscribers.add(
        site, email, list_slugs, now=state.now(), name=name, tags=tags, welcome=welcome
    )
    for slug, outcome in report.outcomes.items():
        click.echo(f"{report.email} {slug}: {outcome}")
    if report.confirmation_sent:
        click.echo(f"sent a confirmation email to {report.email}")
    elif report.confirmation_held:
        click.echo(
            f"no new confirmation email: one was sent to {report.email} less than 24 hours ago"
        )
    if report.welcomes:
        _send_welcomes(state)


def _send_welcomes(state: State) -> None:
    """Send the welcomes just owed now, or say who will."""
    from newsroom.delivery import welcomes
    from newsroom.mail.smtp import RelayError

    try:
        done = welcomes.send_now(state.site, state.now())
    except (NewsroomError, RelayError) as exc:
        click.echo(f"welcome email queued, not sent yet ({exc}): `newsroom worker` sends it")
        return
    _waiting(done.queued)
    if done.sent:
        click.echo(f"sent {done.sent} welcome email(s)")


def _waiting(queued: Any) -> None:
    """The welcomes that wait or were dropped, and why (`welcomes.Queued`)."""
    for slug, (count, reason) in queued.waiting.items():
        click.echo(f"{count} welcome(s) to {slug} wait: {reason}", err=True)
    for mailing_id in queued.paused:
        click.echo(
            f"welcome mailing {mailing_id} is paused: `newsroom send --resume {mailing_id}` "
            "sends the welcomes it holds",
            err=True,
        )


@subscribers_group.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--list",
    "list_slugs",
    multiple=True,
    help="Subscribe every row to this list too (repeat for more; --sync: the one list).",
)
@click.option(
    "--confirmed",
    is_flag=True,
    help="These people already consented: confirm at once (needs --consent).",
)
@click.option("--consent", "consent_text", help="The consent they gave, recorded in the ledger.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(exportformats.FORMATS)),
    help="The tool the file comes from (default: recognised by its header).",
)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="COLUMN=FIELD",
    help=f"What a column is (repeat for more); fields: {', '.join(exportformats.ALL_FIELDS)}.",
)
@click.option("--sheet", help="The sheet of an .xlsx workbook to read (default: the first).")
@click.option(
    "--sync", is_flag=True, help="The file is the whole --list now: unsubscribe the rest."
)
@click.option("--dry-run", is_flag=True, help="Say what the import would change; change nothing.")
@click.option("--yes", is_flag=True, help="Let --sync unsubscribe more than the setting allows.")
@click.option("--skip-invalid", is_flag=True, help="Import the good rows even if some are wrong.")
@click.option(
    "--no-email", is_flag=True, help="Do not send confirmation emails to pending people now."
)
@click.option(
    "--welcome",
    is_flag=True,
    help="With --confirmed: each person confirmed now on a list that names a welcome issue "
    "(lists.toml) gets it, once; `newsroom worker` sends them.",
)
@pass_state
def import_(
    state: State,
    file: Path,
    list_slugs: tuple[str, ...],
    confirmed: bool,
    consent_text: str | None,
    fmt: str | None,
    mapping: tuple[str, ...],
    sheet: str | None,
    sync: bool,
    dry_run: bool,
    yes: bool,
    skip_invalid: bool,
    no_email: bool,
    welcome: bool,
) -> None:
    """Import subscribers from a CSV or .xlsx file, or another tool's export.

    Recognises exports from Mailchimp, listmonk, Mailman 3, Action Network and NationBuilder by
    their header (or --format), and spreadsheets with columns email, name, tags, lists (first and
    last names are joined; tags and lists separated by spaces or commas). Other columns are
    dropped, never stored: --map says what one is. Every row is checked first; if any is wrong
    nothing is written (unless --skip-invalid) and each wrong row is reported as FILE:LINE.
    --sync --list SLUG makes the file the whole list: whoever is on it and not in the file is
    unsubscribed (try --dry-run first).

    \b
    Examples:
      newsroom subscribers import members.csv --list all-members --confirmed --consent "Joined as a member in 2024"
      newsroom subscribers import subscribed_members_export.csv --list all-members --confirmed --consent "Mailchimp sign-up form"
      newsroom subscribers import secretaries.xlsx --sync --list clp-secretaries --dry-run
      newsroom subscribers import dg.csv --list disability-group --confirmed --consent "Signed up at the AGM" --welcome
    """
    site = _synced(state)
    report = imports.import_file(
        site,
        file,
        list_slugs=list_slugs,
        confirmed=confirmed,
        consent_text=consent_text,
        skip_invalid=skip_invalid,
        now=state.now(),
        send_confirmations=not no_email,
        welcome=welcome,
        fmt=fmt,
        mapping=mapping,
        sheet=sheet,
        sync=sync,
        dry_run=dry_run,
        yes=yes,
    )
    _show_import(report, confirmed)
    if report.welcomes and not report.dry_run:
        from newsroom.delivery import welcomes

        queued = welcomes.queue(site, state.now())
        _waiting(queued)
        if queued.queued:
            click.echo(
                f"{queued.queued} welcome email(s) queued: `newsroom worker` sends them "
                "(`newsroom worker --once` from cron, or keep one running)"
            )


def _show_import(report: imports.ImportReport, confirmed: bool) -> None:
    click.echo(f"{report.file}: {report.read_as}")
    if report.dropped:
        click.echo(f"{report.file}: columns dropped, never stored (newsroom keeps only what it needs): {', '.join(report.dropped)}")  # fmt: skip
    for problem in report.duplicates + report.skipped:
        click.echo(str(problem), err=True)
    for problem in report.rejected:
        click.echo(f"{problem} (row not imported)", err=True)
    counts = [
        f"{report.new} new",
        f"{report.updated} updated",
        f"{report.unchanged} unchanged",
        f"{len(report.duplicates)} duplicate{'' if len(report.duplicates) == 1 else 's'}",
        f"{report.skipped_rows} skipped",
        f"{len(report.rejected)} rejected",
    ]
    done = f"{report.subscribed} subscriptions {'confirmed' if confirmed else 'pending'}"
    if not confirmed and not report.dry_run:
        done += f", {report.confirmations_sent} confirmation emails sent"
    head = f"{report.file} (dry run: nothing changed)" if report.dry_run else report.file
    click.echo(f"{head}: {report.rows} rows: {', '.join(counts)}; {done}")
    if report.sync is not None:
        _show_sync(report.sync, report.dry_run)


def _show_sync(sync: listsync.SyncReport, dry_run: bool) -> None:
    click.echo(
        f"{sync.slug}: {sync.added} added, {sync.removed} unsubscribed (not in the file), "
        f"{sync.kept} kept"
    )
    if sync.added_sample:
        more = sync.added - len(sync.added_sample)
        click.echo(f"  added: {', '.join(sync.added_sample)}" + (f" and {more} more" if more else ""))  # fmt: skip
    if sync.removed_sample:
        more = sync.removed - len(sync.removed_sample)
        click.echo(f"  unsubscribed: {', '.join(sync.removed_sample)}" + (f" and {more} more" if more else ""))  # fmt: skip
    if dry_run and sync.needs_yes:
        click.echo(
            f"  a real sync would be refused without --yes: it unsubscribes {sync.removed} of "
            f"{sync.before}, more than subscribe.sync_max_removal allows"
        )


@subscribers_group.command()
@click.option("--list", "list_slug", help="Only subscribers confirmed on this list.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="Output format.",
)
@pass_state
def export(state: State, list_slug: str | None, fmt: str) -> None:
    """Print confirmed subscribers as CSV (the import's columns) or JSON lines.

    In the CSV, a cell a spreadsheet would run as a formula (starting with = + - @) gets a
    single quote before it; an import reads it back without. The JSON is exact.

    \b
    Example:
      newsroom subscribers export --list all-members > all-members.csv
    """
    site = _synced(state)
    rows = imports.export(site, list_slug)
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    imports.write_csv(rows, sys.stdout)


@subscribers_group.command()
@click.argument("email")
@json_option
@pass_state
def show(state: State, email: str, as_json: bool) -> None:
    """Show a subscriber: tags, subscriptions and the full consent ledger.

    \b
    Example:
      newsroom subscribers show ann@example.org --json > ann.json
    """
    data = erasure.export_subscriber(_synced(state), email)
    if as_json:
        echo_json(data)
        return
    person = data["subscriber"]
    click.echo(f"{person['email']}  {person['name']}".rstrip())
    click.echo(f"  since {person['created_at']}; tags: {' '.join(person['tags']) or '-'}")
    click.echo("subscriptions:")
    for sub in data["subscriptions"]:
        click.echo(f"  {sub['list']:24} {sub['status']:13} since {sub['updated_at']}")
    click.echo("consent ledger:")
    for event in data["ledger"]:
        how = " ".join(x for x in (event["source"], event["method"]) if x)
        line = f"  {event['at']}  {event['kind']:12} {event['list'] or '-':20} {how}"
        if event["consent_version"]:
            line += (
                f"  consent text {event['consent_version']!r} sha256:{event['consent_sha256'][:12]}"
            )
        if event["ip"]:
            line += f"  ip {event['ip']}"
        if event["detail"]:
            line += f"  ({event['detail']})"
        click.echo(line)
        if event["evidence"]:  # an import's original evidence of consent (issue #15)
            shown = ", ".join(f"{k} {v}" for k, v in event["evidence"].items())
            click.echo(f"    evidence from the export: {shown}")


@subscribers_group.command()
@click.argument("email", required=False)
@click.option(
    "--list",
    "list_slugs",
    multiple=True,
    help="Only from this list (repeat for more; default: every list).",
)
@click.option(
    "--all", "everyone", is_flag=True, help="Unsubscribe everyone from the one --list given."
)
@pass_state
def remove(state: State, email: str | None, list_slugs: tuple[str, ...], everyone: bool) -> None:
    """Unsubscribe EMAIL (from every list, or the --list ones); recorded in the ledger.

    \b
    Example:
      newsroom subscribers remove ann@example.org --list clp-secretaries
    """
    site = _synced(state)
    if everyone:
        if email or len(list_slugs) != 1:
            raise NewsroomError("--all takes exactly one --list and no EMAIL")
        count = subscribers.remove_all(site, list_slugs[0], now=state.now())
        click.echo(f"unsubscribed {count} from {list_slugs[0]}")
        return
    if not email:
        raise NewsroomError("give the EMAIL to unsubscribe (or --all --list SLUG)")
    left = subscribers.remove(site, email, list_slugs, now=state.now())
    if left:
        click.echo(f"unsubscribed {email} from {', '.join(left)}")
    else:
        click.echo(
            f"{email} was not subscribed to {', '.join(list_slugs) or 'any list'}: nothing to do"
        )


@subscribers_group.command()
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def erase(state: State, email: str, yes: bool) -> None:
    """Erase EMAIL (GDPR): personal data gone, a keyed hash kept so it is not re-added.

    \b
    Example:
      newsroom subscribers erase ann@example.org --yes
    """
    site = _synced(state)
    if not yes and not confirm(f"Erase everything held about {email}? This cannot be undone"):
        click.echo("Nothing erased.")  # the person chose so: not an error, status 0
        return
    erasure.erase(site, email, now=state.now())
    click.echo(f"erased {email}: it is on the suppression list and will not be imported again")


@subscribers_group.command()
@pass_state
def prune(state: State) -> None:
    """Remove pending subscriptions older than the confirmation link's life, and enforce the
    site's [retention] periods (UK GDPR Art. 5(1)(e), storage limitation).

    Deliveries of mailings older than retention.deliveries_days lose their address (each
    mailing keeps its counts); bounce records older than retention.bounces_days are deleted
    (a mailing's report keeps their count, without the person). The consent ledger is kept.
    Safe to run from cron every day.

    \b
    Example:
      newsroom subscribers prune
    """
    report = erasure.prune(_synced(state), now=state.now())
    click.echo(
        f"removed {report.subscriptions} unconfirmed subscriptions; "
        f"forgot {report.subscribers} people who never confirmed"
    )
    for line in _retention_lines(report.retention):
        click.echo(line)


def _retention_lines(kept: RetentionReport) -> list[str]:
    """What pruning did to delivery and bounce records, naming the setting behind it."""
    days = f"retention.deliveries_days = {kept.deliveries_days}"
    if kept.deliveries_before is None:
        deliveries = f"delivery records: kept for good ({days})"
    else:
        mailings = f"{len(kept.mailings)} mailing{'s' if len(kept.mailings) != 1 else ''}"
        deliveries = (
            f"delivery records: removed the address from {kept.deliveries} deliveries of "
            f"{mailings} frozen before {kept.deliveries_before:%Y-%m-%d} ({days}); "
            "their counts stay"
        )
    days = f"retention.bounces_days = {kept.bounces_days}"
    if kept.bounces_before is None:
        bounces = f"bounce records: kept for good ({days})"
    else:
        bounces = (
            f"bounce records: deleted {kept.bounces_deleted} from before "
            f"{kept.bounces_before:%Y-%m-%d} ({days}); {kept.bounces_counted} of them stay as "
            "counts in their mailing's report, without the person or the diagnostic"
        )
    return [deliveries, bounces]


@subscribers_group.command(name="send-confirmations")
@pass_state
def send_confirmations(state: State) -> None:
    """Send the confirmation email to every pending person who was never sent one.

    For an import made with --no-email or one whose relay failed partway, and for web requests
    made while the relay was down. Nobody who already had a confirmation email is sent another.
    Safe to run again.

    \b
    Example:
      newsroom subscribers send-confirmations
    """
    sent = confirmation.send_due(_synced(state), state.now())
    click.echo(f"sent {sent} confirmation emails")


@click.command(name="segment")
@click.argument("expression")
@click.option("--limit", default=SHOWN_MATCHES, show_default=True, help="How many matches to show.")
@json_option
@pass_state
def segment(state: State, expression: str, limit: int, as_json: bool) -> None:
    """Count the subscribers a segment expression selects and show the first few.

    A saved segment of subscribers/segments.toml stands anywhere as segment:NAME.

    \b
    Example:
      newsroom segment "all-members and not clp-secretaries"
      newsroom segment "segment:north-and-access and not tag:press"
    """
    site = _synced(state)
    saved = savedsegments.expressions(_saved(site))
    with transaction(site.engine) as session:
        found = selection.resolve(session, expression, saved)
        count = found.count(session)
        first = session.execute(found.select().limit(limit)).all()
    if as_json:
        data: dict[str, Any] = {"expression": expression, "count": count}
        if found.plain != expression:
            data["expanded"] = found.plain  # saved segments replaced by what they stand for
        echo_json(data | {"first": [e for _, e, _ in first]})
        return
    click.echo(f"{count} subscriber{'s' if count != 1 else ''} match {expression!r}")
    if found.plain != expression:
        click.echo(f"  (= {found.plain})")
    for _, email, name in first:
        click.echo(f"  {email}  {name}".rstrip())
    if count > len(first):
        click.echo(f"  ... and {count - len(first)} more")


def _saved(site: Site) -> dict[str, savedsegments.SavedSegment]:
    return savedsegments.read(site.segments_file, set(lists.read_lists(site.lists_file)))


@click.command(name="segments")
@json_option
@pass_state
def list_segments(state: State, as_json: bool) -> None:
    """Show each saved segment with the number of subscribers it selects.

    Saved segments are named in subscribers/segments.toml, one table each:

    \b
      [north-and-access]
      expr = "tag:north or tag:access-needs"
      description = "Members in the north, and those who asked for accessible formats"

    and used as segment:NAME wherever an expression goes (to:, only, --to, newsroom segment).

    \b
    Example:
      newsroom segments
    """
    site = _synced(state)
    found = _saved(site)
    saved = savedsegments.expressions(found)
    rows: list[dict[str, Any]] = []
    with transaction(site.engine) as session:
        for name, entry in found.items():
            row: dict[str, Any] = {"name": name, "expr": entry.expr}
            row["description"] = entry.description
            try:
                row["count"] = selection.resolve(session, f"segment:{name}", saved).count(session)
            except NewsroomError as exc:  # a tag nobody has yet: say so, list the others
                row["count"], row["problem"] = None, str(exc).splitlines()[0]
            rows.append(row)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no saved segments: name some in {site.segments_file} (see --help)")
        return
    width = max(len(r["name"]) for r in rows) + 2
    for r in rows:
        count = r["problem"] if r["count"] is None else f"{r['count']:>6}"
        click.echo(f"{r['name']:{width}} {count}  {r['expr']}")
        if r["description"]:
            click.echo(f"{'':{width + 9}}{r['description']}")  # under the expression
