"""Sending as use cases, one library call each: `newsroom send` (`prepare`, `propose`, `send`),
`send --at` (`prepare`, `propose`, `schedule`), `send --resume` (`resume`) and `newsroom worker`
(`work`, which also freezes the scheduled mailings that fall due: `freeze_due`), for the CLI,
the demo and tests alike.

The rules live here and below; whoever calls gets what happened as values and as events on a
`Watch` (progress, a frozen mailing, the relay down or back), and words them itself. Ctrl-C or
SIGTERM finishes the messages in flight and pauses (sending.running).

A worker outlasts its PostgreSQL server restarting (`database.lost`): it waits, looking again
with backoff, takes its sender lock again on a new connection, settles its own claims from its
journal (mailings.settle_own) and carries on. `send` and its helpers stop with the error instead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Protocol

from newsroom import database
from newsroom.clock import Clock, utcnow
from newsroom.delivery import (
    audience,
    journal,
    letterhead,
    mailings,
    outbox,
    readiness,
    schedule,
    welcomes,
)
from newsroom.delivery.processes import Helpers
from newsroom.delivery.senders import SenderLock
from newsroom.delivery.sending import Sender, SenderReport, drive, running
from newsroom.errors import NewsroomError, ProblemsError
from newsroom.mail.smtp import Pool, RelayError
from newsroom.people import lists
from newsroom.site import Site

INTERRUPTED = "paused with Ctrl-C"
# How long a worker waits between looks at a relay that does not answer: from the first, twice
# as long each time, at most the last: soon back after a restart, never hammering a dead host.
RELAY_WAIT_FIRST, RELAY_WAIT_MAX = 0.5, 30.0
# The same for a database that went away: a restart takes seconds, so look again sooner.
DATABASE_WAIT_FIRST, DATABASE_WAIT_MAX = 0.5, 10.0


class Watch(Protocol):
    """What a run tells whoever started it, as it happens."""

    def frozen(self, mailing_id: int, count: int) -> None:
        """The mailing exists, its COUNT deliveries frozen."""

    def resending(self, count: int) -> None:
        """COUNT uncertain deliveries go again (`--resend-uncertain`)."""

    def started(self, to_do: int) -> None:
        """Sending begins, with TO_DO deliveries left."""

    def progressed(self, done: int) -> None:
        """DONE deliveries settled so far, by this sender and its helpers."""

    def worker_started(self, name: str) -> None:
        """A worker holds the sender lock NAME."""

    def relay_down(self, reason: str, poll: float) -> None:
        """The relay does not answer; the worker looks again in POLL seconds, then twice as
        long each time, up to RELAY_WAIT_MAX."""

    def relay_up(self) -> None:
        """The relay answers again."""

    def database_down(self, reason: str, wait: float) -> None:
        """The database went away; the worker looks again in WAIT seconds, then less often."""

    def database_up(self, settled: int) -> None:
        """The database answers again; SETTLED claims of this worker settled from its journal."""

    def paused(self, mailing_id: int, reason: str) -> None:
        """A mailing the worker was sending paused itself (not by Ctrl-C)."""

    def welcomes_wait(self, list_slug: str, count: int, reason: str) -> None:
        """COUNT welcomes to LIST_SLUG cannot be queued, for REASON (said once per reason)."""


class Quiet:
    """A Watch that shows nothing."""

    def frozen(self, mailing_id: int, count: int) -> None:
        pass

    def resending(self, count: int) -> None:
        pass

    def started(self, to_do: int) -> None:
        pass

    def progressed(self, done: int) -> None:
        pass

    def worker_started(self, name: str) -> None:
        pass

    def relay_down(self, reason: str, poll: float) -> None:
        pass

    def relay_up(self) -> None:
        pass

    def database_down(self, reason: str, wait: float) -> None:
        pass

    def database_up(self, settled: int) -> None:
        pass

    def paused(self, mailing_id: int, reason: str) -> None:
        pass

    def welcomes_wait(self, list_slug: str, count: int, reason: str) -> None:
        pass


@dataclass(frozen=True)
class Prepared:
    """An issue rendered and checked for sending to TARGET (the expression as given), which is
    EXPRESSION with its saved segments expanded (what the mailing keeps)."""

    planned: outbox.Plan
    target: str
    expression: str = ""

    @property
    def sender(self) -> str:
        """The From: of the mailing."""
        head = self.planned.letterhead
        return head.sender if head else ""


@dataclass(frozen=True)
class Proposal:
    """What a real send would do, for the question asked before it."""

    prepared: Prepared
    going: int  # recipients
    had: str  # who already had the issue and is left out (empty: nobody, or --again)
    sender: str  # the From address
    relay: str  # the relay's name, "(newsroom dev-smtp)" after it when it is that
    at: datetime | None = None  # `--at`: when a worker is to freeze and send it
    early: bool = False  # `--now`: before the issue's date all the same


@dataclass(frozen=True)
class Outcome:
    """What a run did (the sender's report) and the mailing's deliveries as the database holds
    them, whichever sender or run did the work."""

    report: SenderReport
    counts: mailings.Counts


def prepare(
    site: Site, issue: str, expression: str | None, now: datetime, sender: str | None = None
) -> Prepared:
    """ISSUE rendered, the lists in step with lists.toml, and every preflight check passed for
    sending it to EXPRESSION (default: its `to:`) from SENDER (`--from`; default: its first
    list's own, or the site's); raises NewsroomError saying what to fix."""
    planned = outbox.plan(site, issue, expression, sender)
    lists.sync(site, now)  # lists.toml is the truth about which lists exist
    target = planned.target
    if not target:
        raise NewsroomError(f"{planned.path.name}: no `to:` in the issue; say who with --to EXPR")
    plain = outbox.preflight(site, planned)
    outbox.check_history(site, planned)
    return Prepared(planned, target, plain)


def propose(
    site: Site,
    prepared: Prepared,
    *,
    again: bool,
    now: datetime,
    at: datetime | None = None,
    early: bool = False,
) -> Proposal:
    """Check the relay takes a real mailing and count who it goes to (raises when nobody).
    It goes NOW, or AT (`--at`: no earlier than NOW); either way not before the issue's date
    unless EARLY (`--now`), and not now while a mailing of the issue is scheduled."""
    zone = site.config.text("site.timezone")
    if at is not None:
        schedule.check_time(at, now, zone)
    check_date(site, prepared.planned, at or now, early=early, scheduling=at is not None)
    if at is None:
        _not_scheduled(site, prepared.planned)
    relay = outbox.check_relay(site, mailing=True, sender=prepared.sender)
    target, slug = prepared.expression, prepared.planned.slug
    total, had, sentence = audience.size(site.engine, target, slug)
    going = total if again else total - had
    if going == 0:
        raise NewsroomError(mailings.nobody_to_send_to(prepared.target, sentence, selected=total))
    sender = parseaddr(prepared.sender)[1]
    return Proposal(prepared, going, "" if again else sentence, sender, relay, at, early)


def check_date(
    site: Site, planned: outbox.Plan, when: datetime, *, early: bool, scheduling: bool = False
) -> None:
    """Refuse to send PLANNED at WHEN, before its date, unless EARLY: its email links to its
    page in the archive, which appears only then (issue #16)."""
    if early or planned.published <= when:
        return
    zone = site.config.text("site.timezone")
    dated, wall = schedule.shown(planned.published, zone), schedule.wall(planned.published, zone)
    if scheduling:
        raise NewsroomError(
            f"{planned.shown} is dated {dated}: --at {schedule.shown(when, zone)} is before its "
            "date, and its email links to its page in the archive, which appears only then. "
            f'Give --at "{wall}" or later, or add --now to send it early all the same'
        )
    raise NewsroomError(
        f"{planned.shown} is dated {dated}, which has not come yet: its email links to its page "
        f'in the archive, which appears only then. Schedule it with --at "{wall}", or add --now '
        "to send it now all the same"
    )


def _not_scheduled(site: Site, planned: outbox.Plan) -> None:
    """Refuse to send PLANNED now while a mailing of it waits for its time: both would go."""
    for waiting in schedule.scheduled(site.engine, planned.slug):
        assert waiting.scheduled_at is not None
        when = schedule.shown(waiting.scheduled_at, site.config.text("site.timezone"))
        raise NewsroomError(
            f"mailing {waiting.id} is scheduled to send {waiting.issue_path} to "
            f"{waiting.expression!r} at {when}: move it with --at TIME, or cancel it with "
            f"`newsroom mailings cancel {waiting.id}` before sending it now"
        )


def schedule_mailing(
    site: Site, proposal: Proposal, *, again: bool, now: datetime, sender: str | None = None
) -> schedule.Recorded:
    """Record PROPOSAL (made with `at`) as a scheduled mailing, or move the one already
    scheduled for that issue and audience; nothing is frozen until a worker finds it due.
    It keeps the audience as given and SENDER (`--from`) as typed: saved segments are
    expanded, and the letterhead chosen, when it is frozen, as for a mailing sent then."""
    assert proposal.at is not None
    planned = proposal.prepared.planned
    return schedule.record(
        site.engine,
        issue_slug=planned.slug,
        issue_path=planned.shown,
        subject=outbox.subject(planned),
        expression=proposal.prepared.target,
        sender=sender or "",
        at=proposal.at,
        again=again,
        early=proposal.early,
        now=now,
    )


def freeze_due(site: Site, now: datetime, watch: Watch) -> int:
    """Freeze every scheduled mailing due at NOW, its issue read and checked again: one that
    no longer passes (or whose file is gone, or that has nobody left to send to) is paused
    with the reason instead. Returns how many were frozen."""
    frozen = 0
    for mailing in schedule.due(site.engine, now):
        try:
            prepared = _recheck(site, mailing, now)
            created = outbox.freeze(site, prepared.planned, prepared.expression, mailing.id, now)
        except NewsroomError as exc:
            reason = _reason(mailing, exc)
            if schedule.hold(site.engine, mailing.id, reason):
                watch.paused(mailing.id, reason)
            continue
        if created is not None:  # None: another worker froze it first
            watch.frozen(created.mailing_id, created.count)
            frozen += 1
    return frozen


def _recheck(site: Site, mailing: mailings.Mailing, now: datetime) -> Prepared:
    """The issue of scheduled MAILING read again, with the checks `send` runs before a send;
    its audience as given then (the row keeps it unexpanded) and its `--from`, if one."""
    path = site.root / mailing.issue_path
    if not path.is_file():
        raise NewsroomError(
            f"{mailing.issue_path} is gone (moved or deleted since it was scheduled)"
        )
    prepared = prepare(site, str(path), mailing.expression, now, mailing.sender or None)
    check_date(site, prepared.planned, now, early=mailing.early)
    return prepared


def _reason(mailing: mailings.Mailing, exc: NewsroomError) -> str:
    """Why MAILING was not frozen, in one line for `newsroom mailings`."""
    if isinstance(exc, ProblemsError) and exc.problems:
        more = len(exc.problems) - 1
        said = str(exc.problems[0]) + (
            f" (and {more} more: `newsroom check {mailing.issue_path}` lists them)" if more else ""
        )
        return f"not sent when due: the issue no longer passes `newsroom check`: {said}"
    return f"not sent when due: {str(exc).splitlines()[0]}"


def send(site: Site, proposal: Proposal, *, again: bool, now: datetime, watch: Watch) -> Outcome:
    """Freeze the mailing and send it, with helper processes when it is big."""
    with SenderLock(site.engine) as lock:  # before creating: a second sender stops here
        prepared = proposal.prepared
        created = outbox.create(site, prepared.planned, prepared.expression, again=again, now=now)
        watch.frozen(created.mailing_id, created.count)
        return _run(site, lock, created.mailing_id, watch)


def resume(
    site: Site, mailing_id: int, *, now: datetime, resend_uncertain: bool, watch: Watch
) -> Outcome:
    """Carry on MAILING_ID; with RESEND_UNCERTAIN, send again what was in flight when a sender
    stopped (only those handed to the relay without an answer: journal.py)."""
    with SenderLock(site.engine) as lock:
        mailings.check_resumable(site.engine, mailing_id)
        head = letterhead.of_mailing(site.config, mailings.get(site.engine, mailing_id))
        outbox.check_relay(site, sender=head.sender)
        if resend_uncertain:
            mailings.reconcile(site.engine, mailing_id, lock, journal.folder(site.root), now)
            watch.resending(mailings.resend_uncertain(site.engine, mailing_id, lock))
        mailings.resume(site.engine, mailing_id)
        return _run(site, lock, mailing_id, watch)


def _run(site: Site, lock: SenderLock, mailing_id: int, watch: Watch) -> Outcome:
    to_do = mailings.counts(site.engine, mailing_id).to_do
    helpers = Helpers(site, lock, mailing_id, Helpers.wanted(site, to_do)).start()
    watch.started(to_do)
    own = 0

    def settled(_result: object) -> None:
        nonlocal own
        own += 1
        watch.progressed(own + helpers.count())

    async def go() -> SenderReport:
        sender = Sender(site, lock, on_result=settled)
        sender.share(helpers.senders)
        return await drive(sender, mailing_id, also=helpers.stop)

    waiting = lambda: watch.progressed(own + helpers.count())  # noqa: E731
    report = helpers.finish(asyncio.run(go()), waiting=waiting)
    if report.interrupted:
        mailings.pause(site.engine, mailing_id, INTERRUPTED)
    elif report.relay_down and not report.paused:
        # `send` does not wait for a relay (a worker does): what was in flight is deferred,
        # the rest is still to do, and --resume carries on.
        report.paused = (
            f"the relay stopped answering: {report.relay_down}; when it is back, "
            f"`newsroom send --resume {mailing_id}` sends the rest"
        )
        mailings.pause(site.engine, mailing_id, report.paused)
    return Outcome(report, mailings.counts(site.engine, mailing_id))


def work(site: Site, *, once: bool, poll: float, watch: Watch, clock: Clock = utcnow) -> int:
    """`newsroom worker`: freeze the scheduled mailings as they fall due and send every mailing
    under way, as one of any number of workers, until stopped (or, ONCE, until nothing is due),
    queueing the welcomes owed at each look; returns how many messages it sent. CLOCK tells it
    the time (tests pass their own)."""
    with SenderLock(site.engine) as lock:
        watch.worker_started(lock.name)
        return asyncio.run(_work(site, lock, once, poll, watch, clock))


async def _work(
    site: Site, lock: SenderLock, once: bool, poll: float, watch: Watch, clock: Clock
) -> int:
    sender = Sender(site, lock, clock=clock, wait_for_retries=False)
    helping: list[Helpers] = []  # the helper processes of the mailing under way, if any
    relay = _Relay(site, once, poll, watch)
    total = 0

    def stop_helpers() -> None:
        for helpers in helping:
            helpers.stop()

    said: dict[str, str] = {}  # why each list's welcomes wait, as last told

    async def look() -> bool:
        """One look for work, and the work found; True when there was some."""
        nonlocal total
        _welcome(site, said, watch, clock())
        # In a thread, so that the loop hears a signal while a big audience is frozen.
        busy = await asyncio.to_thread(freeze_due, site, clock(), watch) > 0
        under_way = mailings.under_way(site.engine)
        if under_way and await relay.up():
            for mailing_id in under_way:
                if sender.stopping:
                    break
                report = await _work_on(site, lock, sender, mailing_id, helping, watch)
                total += report.sent
                busy = busy or report.sent + report.failed + report.deferred > 0
                if report.relay_down:
                    break  # the relay went away: wait for it (below), then go on
        return busy

    async with running(sender, also=stop_helpers):
        while not sender.stopping:
            try:
                busy = await look()
            except Exception as exc:
                if once or not database.lost(exc):
                    raise
                helping.clear()  # they stopped with the same error (processes.py)
                await _rejoin(site, lock, sender, watch, exc, clock)
                continue
            if once and not busy:
                break
            if relay.down:
                await sender.sleep(relay.wait())
            elif not busy:
                await sender.sleep(poll)
    return total


async def _rejoin(
    site: Site, lock: SenderLock, sender: Sender, watch: Watch, exc: Exception, clock: Clock
) -> None:
    """Wait for the database that went away (EXC), with backoff, until this worker holds its
    sender lock again and has settled what it claimed before (mailings.settle_own)."""
    wait = DATABASE_WAIT_FIRST
    watch.database_down(database.said(exc), wait)
    while not sender.stopping:
        await sender.sleep(wait)
        wait = min(wait * 2, DATABASE_WAIT_MAX)
        site.engine.dispose()  # the pooled connections died with the server
        try:
            settled = await asyncio.to_thread(_retake, site, lock, clock())
        except Exception as again:
            if not database.lost(again):
                raise
            continue
        watch.database_up(settled)
        return


def _retake(site: Site, lock: SenderLock, now: datetime) -> int:
    lock.reconnect()
    return mailings.settle_own(site.engine, lock, journal.folder(site.root), now)


def _welcome(site: Site, said: dict[str, str], watch: Watch, now: datetime) -> None:
    """Queue the welcomes owed (welcomes.py), so that they are among the mailings under way;
    a list whose welcomes wait is told of once for each reason."""
    queued = welcomes.queue(site, now)
    for slug, (count, reason) in queued.waiting.items():
        if said.get(slug) != reason:
            watch.welcomes_wait(slug, count, reason)
    said.clear()
    said.update({slug: reason for slug, (_, reason) in queued.waiting.items()})


async def _work_on(
    site: Site,
    lock: SenderLock,
    sender: Sender,
    mailing_id: int,
    helping: list[Helpers],
    watch: Watch,
) -> SenderReport:
    to_do = mailings.counts(site.engine, mailing_id).to_do
    helpers = Helpers(site, lock, mailing_id, Helpers.wanted(site, to_do)).start()
    helping[:] = [helpers]
    sender.share(helpers.senders)
    report = await sender.run(mailing_id)
    report = await asyncio.to_thread(helpers.finish, report)  # the loop hears signals
    helping.clear()
    if report.paused and not report.interrupted:
        watch.paused(mailing_id, report.paused)
    return report


class _Relay:
    """Whether the relay answers before a worker claims anything: while it is down the worker
    waits (saying so once), looking again with backoff, instead of deferring every delivery
    and pausing the mailing. A relay that goes away mid-batch costs the messages in flight
    (deferred: sending.py); the pool takes no more (smtp.Pool.down) and the worker waits here."""

    def __init__(self, site: Site, once: bool, poll: float, watch: Watch) -> None:
        self.site, self.once, self.poll, self.watch = site, once, poll, watch
        self.down = False
        self.delay = RELAY_WAIT_FIRST

    def wait(self) -> float:
        """Seconds to wait before the next look at a relay that is down."""
        wait, self.delay = self.delay, min(self.delay * 2, RELAY_WAIT_MAX)
        return wait

    async def up(self) -> bool:
        pool = Pool(self.site.config, connections=1)
        try:
            greeting = await pool.check()
        except RelayError as exc:
            if self.once:
                raise
            if not self.down:
                self.watch.relay_down(str(exc), self.delay)
            self.down = True
            return False
        finally:
            await pool.close()
        if self.down:
            self.watch.relay_up()
        self.down, self.delay = False, RELAY_WAIT_FIRST
        # A mailing is waiting: never with placeholder settings through a real relay. The
        # settings are read once, so waiting would not help: stop, saying what to set.
        readiness.check_relay(self.site.config, greeting)
        return True
