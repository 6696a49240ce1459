"""`newsroom send`, `newsroom mailings ...`, `newsroom worker`, `newsroom dev-smtp`: thin shells."""

from __future__ import annotations

import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from newsroom.cli.common import Group, State, confirm, echo_json, json_option, pass_state
from newsroom.cli.report import returns_lines
from newsroom.delivery import dispatch, mailings, outbox, readiness, reputation, schedule
from newsroom.errors import NewsroomError
from newsroom.models import DeliveryStatus, MailingStatus
from newsroom.site import Site

D = DeliveryStatus


@click.command()
@click.argument("issue", required=False)
@click.option("--to", "expression", help="Segment expression (default: the issue's `to:`).")
@click.option(
    "--from",
    "sender",
    metavar="SENDER",
    help="Send as `site` or as a list with a sender of its own (its slug or address); "
    "default: the first list's own sender, else the site's.",
)
@click.option("--dry-run", is_flag=True, help="List who would get which variant; send nothing.")
@click.option("--test", "test_address", metavar="ADDRESS", help="Send one copy marked [TEST].")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--again", is_flag=True, help="Also send to addresses that already had the issue.")
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    help='Schedule it: "YYYY-MM-DD HH:MM" in site.timezone, or with an offset or zone; '
    "a `newsroom worker` sends it then. Again with the same issue and audience: moves it.",
)
@click.option(
    "--now", "early", is_flag=True, help="Send an issue dated in the future before its date."
)
@click.option("--resume", "resume_id", type=int, metavar="ID", help="Carry on mailing ID.")
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="With --resume: send again the deliveries in flight when a sender stopped.",
)
@pass_state
def send(
    state: State,
    issue: str | None,
    expression: str | None,
    sender: str | None,
    dry_run: bool,
    test_address: str | None,
    yes: bool,
    again: bool,
    at_text: str | None,
    early: bool,
    resume_id: int | None,
    resend_uncertain: bool,
) -> None:
    """Send ISSUE to the subscribers an expression selects, or resume a mailing.

    Preflight checks run first; a real send asks before it starts (unless --yes), and is
    refused while the settings are placeholders unless the relay is `newsroom dev-smtp`.
    Ctrl-C finishes the messages in flight and pauses the mailing; --resume carries on.
    With --at it is scheduled instead: nothing is frozen until a `newsroom worker` finds it
    due, reads the issue again and sends it. An issue is not sent before its date without --now.

    \b
    Example:
      newsroom send save-our-socialists --to "all-members and not clp-secretaries"
      newsroom send 2026-12-05-bulletin --at "2026-12-05 09:00"
    """
    site = state.site
    if resend_uncertain and resume_id is None:
        raise NewsroomError("--resend-uncertain goes with --resume ID")
    if resume_id is not None:
        if issue or expression or sender or dry_run or test_address or again or at_text or early:
            raise NewsroomError(
                "--resume ID takes no ISSUE, --to, --from, --dry-run, --test, --again, --at or "
                "--now: a mailing goes on as it began"
            )
        with _Shown() as shown:
            outcome = dispatch.resume(
                site, resume_id, now=state.now(), resend_uncertain=resend_uncertain, watch=shown
            )
        _say(outcome)
        return
    if not issue:
        raise NewsroomError("give an ISSUE to send (or --resume ID)")
    if at_text is not None and (dry_run or test_address):
        raise NewsroomError("--at schedules a real send: it does not go with --dry-run or --test")
    at = None if at_text is None else schedule.parse_at(at_text, _zone(site))
    prepared = dispatch.prepare(site, issue, expression, state.now(), sender)
    planned, target = prepared.planned, prepared.target
    for warning in planned.warnings:  # a list's own sender DMARC would not align, and such
        click.echo(str(warning), err=True)
    if dry_run:
        _dry_run(site, planned, prepared.expression, again)
        return
    if test_address:
        outbox.check_relay(site, mailing=False)
        answer = outbox.send_test(site, planned, test_address, target, state.now())
        click.echo(f"sent a [TEST] copy of {planned.slug} to {test_address} ({answer})")
        return
    proposal = dispatch.propose(site, prepared, again=again, now=state.now(), at=at, early=early)
    if proposal.had:
        click.echo(proposal.had)
    if at is not None:
        _schedule(site, proposal, sender, again=again, yes=yes, now=state.now())
        return
    question = (
        f"Send {planned.title!r} to {target!r}: {proposal.going} recipient(s), from "
        f"{proposal.sender} through {proposal.relay}?"
    )
    if not yes and not confirm(question):
        click.echo("Nothing sent.")  # the person chose so: not an error, status 0
        return
    with _Shown() as shown:
        outcome = dispatch.send(site, proposal, again=again, now=state.now(), watch=shown)
    _say(outcome)


def _zone(site: Site) -> str:
    return site.config.text("site.timezone")


def _schedule(
    site: Site,
    proposal: dispatch.Proposal,
    sender: str | None,
    *,
    again: bool,
    yes: bool,
    now: datetime,
) -> None:
    """`send --at`: ask, then record (or move) the scheduled mailing."""
    assert proposal.at is not None
    planned, target = proposal.prepared.planned, proposal.prepared.target
    when = schedule.shown(proposal.at, _zone(site))
    question = (
        f"Schedule {planned.title!r} to {target!r} for {when}: {proposal.going} recipient(s) "
        f"today, from {proposal.sender} through {proposal.relay}?"
    )
    if not yes and not confirm(question):
        click.echo("Nothing scheduled.")
        return
    recorded = dispatch.schedule_mailing(site, proposal, again=again, now=now, sender=sender)
    m = recorded.mailing_id
    if recorded.moved_from is not None:
        click.echo(
            f"mailing {m} moved from {schedule.shown(recorded.moved_from, _zone(site))} to {when}"
        )
    else:
        click.echo(f"mailing {m} scheduled for {when}")
    click.echo(
        "A `newsroom worker` (running, or `newsroom worker --once` from cron) reads the issue "
        f"again then, freezes its audience and sends it; `newsroom mailings cancel {m}` cancels it."
    )


def _dry_run(site: Site, planned: outbox.Plan, target: str, again: bool) -> None:
    """Who a real send would freeze, leaving out (unless --again) the same people it would."""
    counts: dict[str, int] = {}
    had = None if again else mailings.AlreadyHad(planned.slug)
    for addressee in outbox.dry_run(site, planned, target, had):
        click.echo(f"{addressee.email}\t{addressee.variant_key}")
        counts[addressee.variant_key] = counts.get(addressee.variant_key, 0) + 1
    summary = ", ".join(f"{n} get {key}" for key, n in sorted(counts.items())) or "nobody"
    if had is not None and had.count:
        click.echo(outbox.already_had(site, had), err=True)
    for warning in readiness.warnings(site.config):  # a dry run asks no relay: warn, exit 0
        click.echo(str(warning), err=True)
    head = planned.letterhead
    own = head is not None and head.sender != site.config.text("site.sender")
    sender = f" from {head.sender}" if head is not None and own else ""  # a list's own
    click.echo(f"dry run: {planned.slug} to {target!r}{sender}: {summary}; nothing sent", err=True)


class _Shown(dispatch.Quiet):
    """A run as a volunteer sees it: a progress bar on a terminal (on stderr), and a line for
    each thing that happens along the way."""

    COLUMNS = (
        TextColumn("sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
    )

    progress: Progress | None = None

    def __enter__(self) -> _Shown:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)

    def frozen(self, mailing_id: int, count: int) -> None:
        click.echo(f"mailing {mailing_id}: {count} deliveries frozen")

    def resending(self, count: int) -> None:
        click.echo(f"{count} uncertain deliveries will be sent again")

    def started(self, to_do: int) -> None:
        console = Console(stderr=True)
        self.progress = Progress(*self.COLUMNS, console=console, disable=not console.is_terminal)
        self.progress.__enter__()
        self.task = self.progress.add_task("send", total=to_do, rate=0.0)
        self.began = time.monotonic()

    def progressed(self, done: int) -> None:
        if self.progress is not None:
            rate = done / max(time.monotonic() - self.began, 1e-6)
            self.progress.update(self.task, completed=done, rate=rate)


def _say(outcome: dispatch.Outcome) -> None:
    """The outcome of a run, its tally the mailing's deliveries as the database holds them: the
    same counts as `newsroom mailings show`, whichever sender or run did the work."""
    report, counts = outcome.report, outcome.counts
    m = report.mailing_id
    tally = ", ".join(f"{counts[s]} {s}" for s in (D.SENT, D.FAILED, D.DEFERRED, D.SKIPPED))
    if report.interrupted:
        click.echo(
            f"Interrupted: mailing {m} paused ({tally}). Carry on: newsroom send --resume {m}"
        )
        sys.exit(130)
    if report.paused:
        raise NewsroomError(f"mailing {m} paused ({tally}): {report.paused}")
    if report.done:
        click.echo(f"mailing {m} done: {tally}")
    elif report.next_retry is not None:
        click.echo(
            f"mailing {m}: {tally}; the relay deferred some, next retry after "
            f"{report.next_retry:%Y-%m-%d %H:%M} UTC: run `newsroom send --resume {m}` then, "
            "or keep a `newsroom worker` running"
        )
    else:
        click.echo(f"mailing {m}: {tally}; other senders are finishing the rest")
    if report.uncertain:
        click.echo(
            f"{report.uncertain} deliveries are uncertain (in flight when a sender stopped): they "
            f"may have arrived. To send them again: newsroom send --resume {m} --resend-uncertain"
        )


# --- mailings --------------------------------------------------------------------------------


@click.group(cls=Group, name="mailings", invoke_without_command=True)
@json_option
@click.pass_context
def mailings_group(ctx: click.Context, as_json: bool) -> None:
    """List mailings with their deliveries per status (or show, pause, cancel one).

    \b
    Example:
      newsroom mailings
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_mailings, as_json=as_json)


@mailings_group.command(name="list")
@json_option
@pass_state
def list_mailings(state: State, as_json: bool) -> None:
    """List every mailing with its deliveries per status.

    \b
    Example:
      newsroom mailings list --json
    """
    zone = _zone(state.site)
    found = list(mailings.listing(state.site.engine))
    rows = [_row(m, c) for m, c in found]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no mailings yet: `newsroom send ISSUE --to EXPR` makes one")
        return
    click.echo(f"{'id':>4} {'status':9} {'issue':28} {'sent':>7} {'to do':>7} {'failed':>6}  to")
    for (mailing, _counts), r in zip(found, rows, strict=True):
        c = r["counts"]
        to_do = c["pending"] + c["deferred"] + c["sending"]
        click.echo(
            f"{r['id']:>4} {r['status']:9} {r['issue'][:28]:28} {c['sent']:>7} {to_do:>7} "
            f"{c['failed']:>6}  {r['to']}" + (" (welcome)" if r["kind"] == "welcome" else "")
        )
        for line in _notes(mailing, zone):
            click.echo(f"{'':14}{line}")


def _notes(mailing: mailings.Mailing, zone: str) -> list[str]:
    """The lines under a mailing in the list: when a scheduled one goes and from which file,
    and why a paused one is paused."""
    notes = []
    if mailing.scheduled_at is not None and mailing.frozen_at is None:
        at = schedule.shown(mailing.scheduled_at, zone)
        due = "at" if mailing.status == MailingStatus.SCHEDULED else "was due"
        notes.append(f"{due} {at}, from {mailing.issue_path}")
    if mailing.status == MailingStatus.PAUSED and mailing.paused_reason:
        notes.append(f"paused: {mailing.paused_reason}")
    return notes


def _row(mailing: mailings.Mailing, counts: mailings.Counts) -> dict[str, Any]:
    return {
        "id": mailing.id,
        "kind": mailing.kind,  # issue, or a list's welcome (issue #16, item 3)
        "issue": mailing.issue_slug,
        "issue_path": mailing.issue_path,
        "to": mailing.expression_given or mailing.expression,
        "expression": mailing.expression,  # saved segments expanded, as it was frozen
        "from": mailing.sender,
        "status": mailing.status,
        "paused_reason": mailing.paused_reason,
        "created_at": mailing.created_at.isoformat(timespec="seconds"),
        "scheduled_at": _iso(mailing.scheduled_at),
        "frozen_at": _iso(mailing.frozen_at),
        "counts": {s.value: counts[s] for s in D},
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


@mailings_group.command(name="show")
@click.argument("mailing_id", type=int, metavar="ID")
@json_option
@pass_state
def show_mailing(state: State, mailing_id: int, as_json: bool) -> None:
    """Show one mailing: its issue, audience, status, deliveries per status, and what came back
    from it (bounces, complaints, unsubscribes by method) beside the providers' thresholds.

    \b
    Example:
      newsroom mailings show 3
    """
    engine = state.site.engine
    mailing = mailings.get(engine, mailing_id)
    counts = mailings.counts(engine, mailing_id)
    returns = reputation.mailing_returns(engine, mailing_id)
    row = _row(mailing, counts) | {"returns": returns.as_dict(), "warnings": returns.warnings}
    if as_json:
        echo_json(row)
        return
    welcome = f" — the welcome of {mailing.expression}" if mailing.kind == "welcome" else ""
    click.echo(f"mailing {mailing.id}: {mailing.issue_slug} ({mailing.issue_path}){welcome}")
    click.echo(f"subject: {mailing.subject}")
    expanded = f" (= {mailing.expression})" if mailing.expression_given else ""
    click.echo(f"to:      {mailing.expression_given or mailing.expression}{expanded}")
    if mailing.sender:
        click.echo(f"from:    {mailing.sender}")
    click.echo(
        f"status:  {mailing.status}"
        + (f" — {mailing.paused_reason}" if mailing.paused_reason else "")
    )
    click.echo(f"created: {row['created_at']}")
    if mailing.scheduled_at is not None:
        due = "frozen and sent" if mailing.frozen_at is not None else "not frozen yet"
        click.echo(f"at:      {schedule.shown(mailing.scheduled_at, _zone(state.site))} ({due})")
    click.echo("  ".join(f"{s.value}: {counts[s]}" for s in D))
    if counts[D.SENDING] and mailing.status != MailingStatus.SENDING:
        click.echo(
            f"{counts[D.SENDING]} uncertain (in flight when a sender stopped): "
            f"newsroom send --resume {mailing.id} --resend-uncertain sends them again"
        )
    for line in returns_lines(returns):
        click.echo(line)


@mailings_group.command(name="pause")
@click.argument("mailing_id", type=int, metavar="ID")
@pass_state
def pause_mailing(state: State, mailing_id: int) -> None:
    """Pause a mailing: senders finish their current batch and stop.

    \b
    Example:
      newsroom mailings pause 3
    """
    engine = state.site.engine
    mailing = mailings.get(engine, mailing_id)
    if not mailings.pause(engine, mailing_id, "paused by hand (`newsroom mailings pause`)"):
        raise NewsroomError(
            f"mailing {mailing_id} is {mailing.status}, not sending: nothing to pause"
        )
    click.echo(f"mailing {mailing_id} paused; carry on with: newsroom send --resume {mailing_id}")


@mailings_group.command(name="cancel")
@click.argument("mailing_id", type=int, metavar="ID")
@pass_state
def cancel_mailing(state: State, mailing_id: int) -> None:
    """Cancel a mailing: deliveries not yet sent are skipped for good (a scheduled one: it never goes).

    \b
    Example:
      newsroom mailings cancel 3
    """
    frozen = mailings.get(state.site.engine, mailing_id).frozen_at is not None
    skipped = mailings.cancel(state.site.engine, mailing_id, state.now())
    if frozen:
        click.echo(f"mailing {mailing_id} cancelled; {skipped} deliveries will not be sent")
    else:
        click.echo(f"mailing {mailing_id} cancelled: it was scheduled and will not be sent")


# --- worker and dev-smtp ---------------------------------------------------------------------


@click.command()
@click.option("--once", is_flag=True, help="Work through what is due now, then stop.")
@click.option("--poll", default=5.0, show_default=True, help="Seconds between looks for work.")
@pass_state
def worker(state: State, once: bool, poll: float) -> None:
    """Send every mailing that is under way, as one of any number of workers.

    Scheduled mailings (`send --at`) are frozen and sent when they fall due: the issue is read
    and checked again first, and one that no longer passes is paused with the reason. From
    cron, `newsroom worker --once` sends what is due and stops. It also sends the welcome
    emails owed to people just confirmed on a list that names a welcome issue (each look for
    work queues them first).

    On PostgreSQL run as many as you like, on as many machines; on SQLite one at a time. Like
    `send`, it starts helper processes for a big mailing when sending.processes says so.

    \b
    Example:
      NEWSROOM_DATABASE_URL=postgresql+psycopg://newsroom@db/newsroom newsroom worker
    """
    sent = dispatch.work(state.site, once=once, poll=poll, watch=_WorkerShown(), clock=state.clock)
    click.echo(f"worker stopped: {sent} sent")


class _WorkerShown(dispatch.Quiet):
    """A worker's lines on stderr: what it holds, the relay down and back, a mailing paused."""

    def worker_started(self, name: str) -> None:
        click.echo(f"worker {name} started (Ctrl-C to stop)", err=True)

    def frozen(self, mailing_id: int, count: int) -> None:
        click.echo(f"mailing {mailing_id} fell due: {count} deliveries frozen", err=True)

    def relay_down(self, reason: str, poll: float) -> None:
        click.echo(
            f"worker: {reason}; trying again in {poll:g} s, then less often "
            f"(at most every {dispatch.RELAY_WAIT_MAX:g} s)",
            err=True,
        )

    def relay_up(self) -> None:
        click.echo("worker: the relay answers again", err=True)

    def paused(self, mailing_id: int, reason: str) -> None:
        click.echo(f"mailing {mailing_id} paused: {reason}", err=True)

    def database_down(self, reason: str, wait: float) -> None:
        click.echo(
            f"worker: the database does not answer ({reason}); trying again in {wait:g} s, "
            f"then less often (at most every {dispatch.DATABASE_WAIT_MAX:g} s)",
            err=True,
        )

    def database_up(self, settled: int) -> None:
        click.echo(
            f"worker: the database answers again; {settled} of this worker's deliveries "
            "settled from its journal",
            err=True,
        )

    def welcomes_wait(self, list_slug: str, count: int, reason: str) -> None:
        click.echo(f"worker: {count} welcome(s) to {list_slug} wait: {reason}", err=True)


@click.command(name="dev-smtp")
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where messages are kept (default: maildir/ in the site folder).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, help="Port to listen on (default: the smtp.port setting).")
@pass_state
def dev_smtp(state: State, maildir: Path | None, host: str, port: int | None) -> None:
    """Run a local SMTP server that keeps every message in a Maildir (nothing is delivered).

    \b
    Example:
      newsroom dev-smtp --maildir /tmp/outbox --port 8025
    """
    from newsroom.mail.devsmtp import DevSMTP

    config = state.site.config
    folder = maildir or state.site.root / "maildir"
    stops = {signal.SIGINT, signal.SIGTERM}
    # Block the signals before the server thread starts (it inherits the mask), then wait.
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        server = DevSMTP(folder, host, port or config.integer("smtp.port")).start()
        click.echo(
            f"dev-smtp listening on {host}:{server.port}; messages go to {folder}/new "
            "(Ctrl-C to stop)"
        )
        signal.sigwait(stops)
        server.stop()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    click.echo(f"dev-smtp stopped: {server.handler.count} message(s) stored")
