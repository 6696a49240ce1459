"""One sender working through a mailing: claim a batch, re-check it, send it, write what happened.

Outcomes (RFC 5321 §4.2): 2xx sent; 4xx, 421, 552 and a lost connection deferred with
exponential backoff and jitter until `sending.retry_hours` after the mailing was created, then
failed; any other 5xx failed and scored as a hard bounce; 5.7.x (RFC 3463: the relay refuses *us*)
and `sending.max_consecutive_errors` errors in a row pause the whole mailing with the relay's words.
`stop()` (Ctrl-C) finishes the messages in flight and puts the rest of the batch back.

A batch's outcomes are committed together, and meanwhile each message is written to the sender's
journal as it is handed over and answered (journal.py), so a crash leaves at most one message per
connection uncertain. Right before each message the sender asks whether the database changed
since the batch's audience check (changes.py) and if so checks again: an unsubscribe committed
mid-batch stops every message not yet handed to the relay.

Whoever asked for the mailing, a sender sends none of it while the settings are placeholders,
unless the relay is `newsroom dev-smtp` (readiness.py): `send` and a worker ask first, and
`run()` asks again before its first message.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from newsroom import tokens
from newsroom.database import transaction
from newsroom.delivery import journal, letterhead, mailings, readiness, sitepace
from newsroom.delivery.changes import Changes
from newsroom.delivery.letterhead import Letterhead
from newsroom.delivery.mailings import Claimed, Result
from newsroom.delivery.senders import SenderLock
from newsroom.errors import NewsroomError
from newsroom.mail import verp
from newsroom.mail.dkim import signer
from newsroom.mail.messages import (
    DateHeader,
    MessageTemplate,
    Recipient,
    new_message_id,
    parse_sender,
    wire_address,
)
from newsroom.mail.ratelimit import per_second
from newsroom.mail.smtp import (
    FAIL,
    POLICY,
    RETRY,
    SENT,
    UNREACHED,
    UNSENDABLE,
    NoJournal,
    Outgoing,
    Pool,
    RelayAnswer,
    relay_name,
)
from newsroom.models import Delivery, DeliveryStatus, Mailing, MailingStatus, utcnow
from newsroom.people import selection
from newsroom.settings import Config
from newsroom.site import Site

D = DeliveryStatus


def templates(
    config: Config,
    expression: str,
    variants: dict[str, mailings.Content],
    head: Letterhead | None = None,
) -> dict[str, MessageTemplate]:
    """The mailing's variants encoded once each, from HEAD (default: the site's letterhead for
    EXPRESSION); raises NewsroomError on a bad setting."""
    head = head or letterhead.of_site(config, expression)
    sender = parse_sender(head.sender)
    dkim_signer = signer(config)
    return {
        key: MessageTemplate(
            subject=content.subject,
            text=content.text,
            html=content.html,
            sender=sender,
            list_id=head.list_id,
            reply_to=head.reply_to,
            signer=dkim_signer,
            message_id_domain=sender[1].rpartition("@")[2],
        )
        for key, content in variants.items()
    }


def batch_size(config: Config) -> int:
    """`sending.batch`, but no more than about a second's worth at the configured rate."""
    rate = per_second(config.text("sending.rate"))
    return max(
        1,
        min(
            config.integer("sending.batch"),
            max(config.integer("smtp.connections"), math.ceil(rate)),
        ),
    )


@dataclass
class SenderReport:
    """What one sender did to one mailing."""

    mailing_id: int
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    paused: str = ""  # why the mailing was paused, if it was
    done: bool = False
    uncertain: int = 0
    next_retry: datetime | None = None
    interrupted: bool = False
    relay_down: str = ""  # why the relay stopped answering mid-mailing, if it did


class Sender:
    """Sends mailings as one sender (see senders.py); `stop()` from a signal handler."""

    def __init__(
        self,
        site: Site,
        lock: SenderLock,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        on_result: Callable[[Result], object] | None = None,
        wait_for_retries: bool = False,
        pool: Pool | None = None,
    ) -> None:
        self.site = site
        self.config = site.config
        self.engine = site.engine
        self.lock = lock
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_result = on_result
        self.wait_for_retries = wait_for_retries
        self.pool = pool or Pool(site.config, limiter=sitepace.limiter(self.engine, self.config))
        self.stopping = False
        self._stopped = asyncio.Event()  # set by stop(): wakes any wait, before or after run()
        self.journals = journal.folder(site.root)
        self.consecutive = 0
        self.dates = DateHeader()

    def share(self, processes: int) -> None:
        """This sender is one of PROCESSES sending the next mailing together (itself and its
        helpers): on SQLite it keeps to its part of `sending.rate` and the domain rates, on
        PostgreSQL to the site's, with every sender of the site (sitepace.py)."""
        self.pool.limiter.close()
        self.pool.limiter = sitepace.limiter(self.engine, self.config, share=processes)

    def stop(self) -> None:
        """Finish what is in flight, claim nothing more."""
        self.stopping = True
        self.pool.stop()
        self._stopped.set()

    async def run(self, mailing_id: int) -> SenderReport:
        """Work on MAILING_ID until it is done, paused, waiting for retries, or stopped."""
        mailing = mailings.get(self.engine, mailing_id)
        head = letterhead.of_mailing(self.config, mailing)
        encoded = templates(
            self.config, mailing.expression, mailings.variants(self.engine, mailing_id), head
        )
        if readiness.blocking(self.config, head.sender):  # the last word, whoever asked
            readiness.check_relay(self.config, await self.pool.check(), head.sender)
        self.reconcile(mailing_id)  # a dead sender's claims: sent, to do, or uncertain
        written: journal.Journal | journal.Off = journal.Off()
        if self.config["sending.journal"]:
            written = journal.Journal(self.journals, self.lock.name, mailing_id)
        self.pool.journal = written
        job = _Job(self, mailing, encoded, written, Changes(self.engine))
        try:
            report = await self._batches(job)
        except BaseException:
            job.close(settled=False)  # claims may be left `sending`: the journal tells of them
            raise
        job.close()
        return report

    async def _batches(self, job: _Job) -> SenderReport:
        mailing_id = job.mailing.id
        report = SenderReport(mailing_id)
        size = batch_size(self.config)
        while not self.stopping and not report.paused and not report.relay_down:
            current = mailings.get(self.engine, mailing_id)
            if current.status != MailingStatus.SENDING:
                report.paused = current.paused_reason or current.status
                break
            batch = mailings.claim(self.engine, mailing_id, self.lock.name, size, self.clock())
            if batch:
                await job.send(batch, report)
            elif not await self._idle(mailing_id, report):
                break
        report.interrupted = self.stopping
        return report

    def reconcile(self, mailing_id: int) -> int:
        """Settle dead senders' claims in MAILING_ID from their journals (mailings.reconcile)."""
        return mailings.reconcile(self.engine, mailing_id, self.lock, self.journals, self.clock())

    async def _idle(self, mailing_id: int, report: SenderReport) -> bool:
        """Nothing to claim now: finish the mailing, or wait for a retry. True: look again."""
        self.reconcile(mailing_id)  # another sender may have died since we began
        counts = mailings.counts(self.engine, mailing_id, self.lock)
        if counts.to_do == 0 and counts.in_flight == 0:
            mailings.set_status(
                self.engine, mailing_id, MailingStatus.DONE, only_from=(MailingStatus.SENDING,)
            )
            if mailings.counts(self.engine, mailing_id).to_do:
                # A welcome came in meanwhile (delivery/welcomes.py touches the mailing's row
                # first, so it committed before DONE did): look again.
                mailings.set_status(
                    self.engine, mailing_id, MailingStatus.SENDING, only_from=(MailingStatus.DONE,)
                )
                return True
            report.done, report.uncertain = True, counts.uncertain
            return False
        if counts[D.PENDING] == 0 and counts[D.DEFERRED] == 0:
            return False  # the rest is in flight with other senders
        with transaction(self.engine) as session:
            report.next_retry = session.scalar(
                select(func.min(Delivery.next_attempt_at)).where(
                    Delivery.mailing_id == mailing_id, Delivery.status == D.DEFERRED
                )
            )
        if not self.wait_for_retries or report.next_retry is None:
            return counts[D.PENDING] > 0
        wait = (report.next_retry - self.clock()).total_seconds()
        await self.sleep(min(max(wait, 0.05), 30.0))
        return True

    async def sleep(self, seconds: float) -> None:
        """Wait SECONDS, or less if stop() is called."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def close(self) -> None:
        await self.pool.close()


STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.asynccontextmanager
async def running(sender: Sender, also: Callable[[], None] = lambda: None) -> AsyncIterator[Sender]:
    """SENDER at work, then closed: until then SIGINT and SIGTERM stop it (and call ALSO: the
    helpers it started), so that the messages in flight are finished and nothing more is
    claimed. The one way a sender is started and stopped, by `newsroom send`, the worker and
    each helper process alike."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        sender.stop()
        also()

    for number in STOPPING_SIGNALS:
        loop.add_signal_handler(number, stop)
    try:
        yield sender
    finally:
        await sender.close()
        for number in STOPPING_SIGNALS:
            loop.remove_signal_handler(number)


async def drive(
    sender: Sender, mailing_id: int, also: Callable[[], None] = lambda: None
) -> SenderReport:
    """SENDER's run on MAILING_ID (see `running`)."""
    async with running(sender, also):
        return await sender.run(mailing_id)


class _Job:
    """One mailing as one sender sends it: its templates, its retry deadline, its counters."""

    def __init__(
        self,
        sender: Sender,
        mailing: Mailing,
        encoded: dict[str, MessageTemplate],
        written: journal.Journal | journal.Off,
        changes: Changes,
    ) -> None:
        self.sender = sender
        self.config = sender.config
        self.mailing = mailing
        self.templates = encoded
        self.journal = written
        self.changes = changes
        self.retry_for = timedelta(hours=self.config.number("sending.retry_hours"))
        self.retry_first = timedelta(seconds=self.config.number("sending.retry_first"))
        # Retries end a while after the audience was frozen: for a scheduled mailing that is
        # when it fell due, not when it was scheduled (issue #16); a welcome's, a while after it
        # was queued (see below).
        self.deadline = (mailing.frozen_at or mailing.created_at) + self.retry_for
        with transaction(sender.engine) as session:
            list_ids = selection.unsubscribe_lists(session, mailing.expression)
        # What the unsubscribe link names besides the person: the lists it leaves (none: every
        # list), and this mailing, so that the ledger says which mailing an unsubscribe came
        # from and `newsroom mailings show` can count them (signed: nobody can point it elsewhere).
        self.leaving: dict[str, object] = {"m": mailing.id, **({"l": list_ids} if list_ids else {})}

    def close(self, settled: bool = True) -> None:
        self.changes.close()
        self.journal.close(discard=settled)
        self.sender.pool.journal = NoJournal()

    async def send(self, batch: list[Claimed], report: SenderReport) -> None:
        sender = self.sender
        self.changes.changed()  # from here on, a commit by anyone else shows
        keep = self._audience(batch)
        with transaction(sender.engine) as session:
            people = mailings.people(session, keep)
        results: dict[int, Result] = {}
        self._skip(batch, keep, results)
        by_id = {c.id: c for c in batch}
        now = sender.clock()

        def ready(message: Outgoing) -> bool:
            """The last look before MESSAGE goes: if anything changed since the batch's
            audience check, check again who of the rest is still in it."""
            if self.changes.changed():
                rest = [c for c in batch if c.id not in results]
                keep.intersection_update(self._audience(rest))
                self._skip(rest, keep, results)
            return message.key not in results

        def heard(outcome: RelayAnswer) -> None:
            if outcome.kind == UNREACHED:  # never offered: back to the queue, below
                report.relay_down = report.relay_down or outcome.text
                return
            results[outcome.key] = self._result(by_id[outcome.key], outcome, now, report)
            if sender.on_result is not None:
                sender.on_result(results[outcome.key])

        sender.pool.stopping = sender.stopping  # a pause in an earlier mailing stopped it
        await sender.pool.send_all(self._messages(batch, people, results, report), heard, ready)
        for claimed in batch:
            if claimed.id not in results:  # taken by no connection: back to the queue
                results[claimed.id] = Result(claimed, D.PENDING, "")
            else:
                report.skipped += results[claimed.id].status == D.SKIPPED
        mailings.record(sender.engine, self.config, list(results.values()), sender.clock())
        self.journal.settled()
        if report.paused:
            mailings.pause(sender.engine, self.mailing.id, report.paused)

    def _audience(self, batch: list[Claimed]) -> set[int]:
        with transaction(self.sender.engine) as session:
            ids = [c.subscriber_id for c in batch if c.subscriber_id is not None]
            return mailings.still_in_audience(session, self.mailing.expression, ids)

    @staticmethod
    def _skip(batch: list[Claimed], keep: set[int], results: dict[int, Result]) -> None:
        for claimed in batch:
            if claimed.subscriber_id not in keep:
                results[claimed.id] = Result(
                    claimed,
                    D.SKIPPED,
                    "no longer in the audience (unsubscribed, bounced or erased)",
                )

    def _messages(
        self,
        batch: list[Claimed],
        people: dict[int, mailings.Named],
        results: dict[int, Result],
        report: SenderReport,
    ) -> Iterator[Outgoing]:
        for claimed in batch:
            if claimed.id in results:
                continue
            try:
                named = people.get(claimed.subscriber_id or 0, mailings.Named("", ""))
                yield self._outgoing(claimed, named)
            except NewsroomError as exc:  # e.g. a name with a line break in it
                results[claimed.id] = self._unsent(claimed, str(exc), report)
                if self.sender.on_result is not None:
                    self.sender.on_result(results[claimed.id])

    def _outgoing(self, claimed: Claimed, named: mailings.Named) -> Outgoing:
        now = self.sender.clock()
        person = tokens.for_subscriber(claimed.subscriber_id or 0, claimed.email, named.token_key)
        unsubscribe, preferences = tokens.links(self.config, person, now=now, leaving=self.leaving)
        envelope = verp.envelope_sender(self.config, claimed.id)
        mailto = f"{envelope}?subject={verp.UNSUBSCRIBE_SUBJECT}"
        recipient = Recipient(claimed.email, named.name, unsubscribe, preferences, mailto)
        template = self.templates[claimed.variant_key]
        data = template.build(
            recipient, new_message_id(template.message_id_domain), self.sender.dates.date()
        )
        return Outgoing(claimed.id, envelope, wire_address(claimed.email), data)

    def _result(
        self, claimed: Claimed, outcome: RelayAnswer, now: datetime, report: SenderReport
    ) -> Result:
        sender = self.sender
        if outcome.kind == SENT:
            sender.consecutive = 0
            report.sent += 1
            return Result(claimed, D.SENT, outcome.answer, outcome.code)
        if outcome.kind == UNSENDABLE:  # about this address and our relay, not a relay error
            return self._unsent(claimed, outcome.text, report)
        sender.consecutive += 1
        limit = self.config.integer("sending.max_consecutive_errors")
        relay = relay_name(self.config)
        if outcome.kind == POLICY:
            self._pause(
                f"the relay {relay} refused to send for us: {outcome.answer} (a policy "
                "rejection: check site.sender, SPF/DKIM and the relay's limits, then "
                f"`newsroom send --resume {self.mailing.id}`)",
                report,
            )
            return Result(claimed, D.PENDING, outcome.answer)
        if sender.consecutive >= limit:
            self._pause(
                f"{sender.consecutive} errors in a row from the relay {relay}; the last: "
                f"{outcome.answer} (fix the cause, then `newsroom send --resume {self.mailing.id}`)",
                report,
            )
        if outcome.kind == RETRY:
            retry_at = now + mailings.backoff(claimed.attempts, sender.rng, self.retry_first)
            # A delivery added later (a welcome) has its retries from when it was added.
            added = claimed.added_at
            if retry_at <= (self.deadline if added is None else added + self.retry_for):
                report.deferred += 1
                return Result(claimed, D.DEFERRED, outcome.answer, outcome.code, retry_at)
            report.failed += 1
            return Result(claimed, D.FAILED, f"out of retries: {outcome.answer}")
        assert outcome.kind == FAIL
        report.failed += 1
        return Result(claimed, D.FAILED, outcome.answer, outcome.code)

    def _unsent(self, claimed: Claimed, reason: str, report: SenderReport) -> Result:
        """A delivery that could not be offered to the relay: failed, with the reason, and
        counted like every other outcome (no bounce is scored: no server refused it)."""
        report.failed += 1
        return Result(claimed, D.FAILED, f"not sent: {reason}")

    def _pause(self, reason: str, report: SenderReport) -> None:
        if not report.paused:
            report.paused = reason
            self.sender.pool.stop()
