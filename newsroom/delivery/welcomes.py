"""Welcome emails (issue #16, item 3): each owed welcome (people/welcomes.py) made a delivery of
its list's welcome mailing, and sent like every mailing's message.

A list's **welcome mailing** (`kind = 'welcome'`, its expression the list's slug) is a mailing
that is never frozen: each welcome joins it as a delivery when it is queued, so it goes through
the one sending path — DKIM-signed, a VERP envelope sender, RFC 8058 one-click headers that
leave that list, the list's own letterhead, bounces scored, an unsubscribe stopping it, and
`newsroom mailings` counting it. It holds the issue rendered as it was when it began; when the
issue (or the list's sender) changes, the next welcome begins a new welcome mailing.

`queue` makes the owed welcomes deliveries: the worker does it on every look for work, and the
web side, `subscribers add` and `subscribers import` right after a confirmation, so nobody
waits for SMTP but the sender. A welcome issue that cannot be sent — missing, outside issues/,
with mistakes — leaves its welcomes waiting, with the reason, and `newsroom check` says what
is wrong: once fixed, they go at the next look. Dropped are the welcomes still waiting `WAIT`
after the confirmation (a week late it would greet someone who joined long ago), those of a
list that names no welcome issue now, and those to someone who already had that issue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Engine, func, select, text, update
from sqlalchemy.orm import Session

from newsroom import segments
from newsroom.database import transaction
from newsroom.delivery import outbox
from newsroom.delivery.mailings import Addressee, AlreadyHad
from newsroom.delivery.outbox import Plan
from newsroom.delivery.senders import SenderLock
from newsroom.delivery.sending import Sender
from newsroom.errors import NewsroomError, Problem, ProblemsError
from newsroom.mail.smtp import Pool
from newsroom.models import (
    Delivery,
    DeliveryStatus,
    Mailing,
    MailingKind,
    MailingList,
    MailingStatus,
    MailingVariant,
    Subscriber,
    SubscriberTag,
    Subscription,
    SubscriptionStatus,
    Welcome,
    WelcomeStatus,
)
from newsroom.people import erasure, lists
from newsroom.people.lists import ListSpec
from newsroom.site import Site

WAIT = timedelta(days=7)  # how long a welcome may wait for its issue to be fixed
LISTS = "subscribers/lists.toml"
CHUNK = 1000
W = WelcomeStatus
LATE = f"still waiting {WAIT.days} days after the confirmation: too late to welcome"
QUEUE_LOCK = 16_0003  # the PostgreSQL advisory lock of queueing (issue #16, item 3)


def locate(site: Site, spec: ListSpec) -> Path:
    """SPEC's welcome issue: a Markdown file in the site's issues/ folder (as every file an
    issue names must be: it is an issue), or NewsroomError at its line in lists.toml."""
    where = f"{LISTS}:{spec.welcome_line}: [{spec.slug}] welcome {spec.welcome!r}"
    path = (site.root / spec.welcome).resolve()
    if not path.is_relative_to(site.issues_dir.resolve()) or path.suffix != ".md":
        raise NewsroomError(f"{where}: not a Markdown file in issues/ (issues/welcome.md)")
    if not path.is_file():
        raise NewsroomError(f"{where}: no such file (write it with `newsroom new`)")
    return path


def plan(site: Site, spec: ListSpec) -> Plan:
    """SPEC's welcome issue read and rendered as a mailing to its list, or an error (raises
    ProblemsError with the issue's own problems first, NewsroomError)."""
    path = locate(site, spec)
    try:
        return outbox.plan(site, str(path), spec.slug)
    except ProblemsError as exc:
        summary = Problem(
            LISTS,
            spec.welcome_line,
            f"[{spec.slug}] welcome {spec.welcome}: {len(exc.problems)} error(s) above; "
            f"nobody is welcomed to {spec.slug} until they are fixed",
        )
        raise ProblemsError([*exc.problems, summary]) from None


def problems(site: Site, specs: Mapping[str, ListSpec]) -> dict[str, list[Problem]]:
    """What stops each list's welcome issue being sent, by list slug (`newsroom check`,
    `lists`, `doctor`); a list whose welcome issue is fine has an empty list."""
    found: dict[str, list[Problem]] = {}
    for spec in specs.values():
        if spec.welcome:
            found[spec.slug] = _problems(site, spec)
    return found


def _problems(site: Site, spec: ListSpec) -> list[Problem]:
    try:
        plan(site, spec)
    except ProblemsError as exc:
        return exc.problems
    except NewsroomError as exc:
        words = str(exc).removeprefix(f"{LISTS}:{spec.welcome_line}: ")
        return [Problem(LISTS, spec.welcome_line, words)]
    return []


@dataclass
class Queued:
    """What one `queue` did: welcomes queued, waiting (by list: how many, why), dropped, and
    the paused welcome mailings holding some (a paused mailing sends nothing until resumed)."""

    queued: int = 0
    waiting: dict[str, tuple[int, str]] = field(default_factory=dict)
    dropped: int = 0
    paused: list[int] = field(default_factory=list)


def queue(site: Site, now: datetime) -> Queued:
    """Make every welcome owed a delivery of its list's welcome mailing, at NOW."""
    result = Queued()
    with transaction(site.engine) as session:
        owed = dict(_owed(session))
    if not owed:
        return result
    try:
        specs = lists.read_lists(site.lists_file)
    except ProblemsError as exc:
        reason = f"subscribers/lists.toml has mistakes: {exc.problems[0]}"
        result.waiting = {slug: (count, reason) for slug, count in owed.items()}
        return result
    plans = {slug: _plan_or_reason(site, specs.get(slug)) for slug in owed}
    with transaction(site.engine) as session:
        _one_at_a_time(session)
        erasure.hold_off(session)  # before reading who is owed a welcome
        result.dropped += _drop(session, Welcome.confirmed_at < now - WAIT, LATE)
        for slug, planned in plans.items():
            if isinstance(planned, Plan):
                _deliver(session, slug, planned, now, result)
            elif planned.startswith("drop:"):
                result.dropped += _drop(session, _of_list(slug), planned.removeprefix("drop:"))
            else:
                count = _drop(session, _of_list(slug), planned, keep=True)
                if count:
                    result.waiting[slug] = (count, planned)
    return result


def _owed(session: Session) -> Sequence[tuple[str, int]]:
    query = (
        select(MailingList.slug, func.count())
        .join(Welcome, Welcome.list_id == MailingList.id)
        .where(Welcome.status == W.WAITING)
        .group_by(MailingList.slug)
    )
    return [(slug, count) for slug, count in session.execute(query)]


def _plan_or_reason(site: Site, spec: ListSpec | None) -> Plan | str:
    """The list's welcome issue ready to queue, or why not ("drop:…" when it owes none now)."""
    if spec is None or not spec.welcome:
        return "drop:subscribers/lists.toml names no welcome issue for the list any more"
    try:
        planned = plan(site, spec)
        outbox.preflight(site, planned)  # the settings sending needs: the key, DKIM, rates
    except ProblemsError as exc:  # the issue's first mistake; `check` lists them all
        return f"{exc.problems[0]} (`newsroom check` lists every problem)"
    except NewsroomError as exc:
        return str(exc)
    return planned


def _one_at_a_time(session: Session) -> None:
    """Queue in one process at a time (PostgreSQL: an advisory lock held to the commit; SQLite
    writes one at a time anyway), so two never make two welcome mailings for one list."""
    if session.get_bind().dialect.name != "sqlite":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_LOCK})


def _of_list(slug: str) -> ColumnElement[bool]:
    return (
        Welcome.list_id == select(MailingList.id).where(MailingList.slug == slug).scalar_subquery()
    )


def _drop(
    session: Session, condition: ColumnElement[bool], reason: str, *, keep: bool = False
) -> int:
    """Drop the waiting welcomes of CONDITION for REASON (KEEP: note why they wait)."""
    values = {"reason": reason} if keep else {"status": W.DROPPED, "reason": reason}
    statement = update(Welcome).where(Welcome.status == W.WAITING, condition).values(**values)
    return _changed(session.execute(statement))


def _changed(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _deliver(session: Session, slug: str, planned: Plan, now: datetime, result: Queued) -> None:
    """The welcomes owed on SLUG as deliveries of its welcome mailing, in chunks."""
    rows = session.execute(
        select(Welcome.id, Subscriber.id, Subscriber.email)
        .join(Subscriber, Subscriber.id == Welcome.subscriber_id)
        .where(Welcome.status == W.WAITING, _of_list(slug))
        .order_by(Welcome.id)
    ).all()
    if not rows:
        return
    mailing = _mailing(session, slug, planned, now, result)
    iterator = iter(rows)
    while chunk := list(islice(iterator, CHUNK)):
        chunk = _fresh(session, planned.slug, chunk, result)
        choose = _chooser(session, planned, [person for _, person, _ in chunk])
        made = [
            (welcome_id, _delivery(mailing, person, email, choose(person), now))
            for welcome_id, person, email in chunk
        ]
        session.add_all([delivery for _, delivery in made])
        session.flush()
        session.execute(
            update(Welcome),
            [{"id": w, "status": W.QUEUED, "delivery_id": d.id, "reason": ""} for w, d in made],
        )
        result.queued += len(made)


def _fresh(session: Session, issue_slug: str, chunk: list[Any], result: Queued) -> list[Any]:
    """CHUNK's (welcome, subscriber, address) rows but those who already had the issue — from
    a mailing, or as another list's welcome (two lists may share one): they are dropped, for
    the same issue is never sent twice to an address by accident (DESIGN "Sending")."""
    had = AlreadyHad(issue_slug)
    going = {a.email for a in had.sift(session, [Addressee(p, e, "") for _, p, e in chunk])}
    gone = [w for w, _, email in chunk if email not in going]
    if gone:
        words = f"already had the issue {issue_slug!r} ({had.sentence(session).split('; ')[0]})"
        result.dropped += _drop(session, Welcome.id.in_(gone), words)
    return [row for row in chunk if row[2] in going]


def _delivery(mailing: int, person: int, email: str, key: str, now: datetime) -> Delivery:
    return Delivery(
        mailing_id=mailing,
        subscriber_id=person,
        email=email,
        variant_key=key,
        status=DeliveryStatus.PENDING,
        attempts=0,
        last_response="",
        added_at=now,
    )


def _chooser(session: Session, planned: Plan, people: list[int]) -> Callable[[int], str]:
    """Which variant each of PEOPLE gets: the `only` blocks matched on their confirmed lists
    and tags now, as a frozen mailing matches them."""
    confirmed: dict[int, set[str]] = {}
    for person, slug in session.execute(
        select(Subscription.subscriber_id, MailingList.slug)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscription.subscriber_id.in_(people))
        .where(Subscription.status == SubscriptionStatus.CONFIRMED)
    ):
        confirmed.setdefault(person, set()).add(slug)
    tags: dict[int, set[str]] = {}
    for person, tag in session.execute(
        select(SubscriberTag.subscriber_id, SubscriberTag.tag).where(
            SubscriberTag.subscriber_id.in_(people)
        )
    ):
        tags.setdefault(person, set()).add(tag)
    parsed: dict[str, segments.Node] = {}

    def choose(person: int) -> str:
        def matches(expression: str) -> bool:
            node = parsed.setdefault(expression, segments.parse(expression))
            return segments.matches(node, confirmed.get(person, set()), tags.get(person, set()))

        return planned.choose(matches)

    return choose


def _mailing(session: Session, slug: str, planned: Plan, now: datetime, result: Queued) -> int:
    """The id of SLUG's welcome mailing as PLANNED renders it, reopened to take more
    deliveries; a new one when the issue or the letterhead changed since the last began."""
    subject = next(iter(planned.variants.values())).subject
    current = session.scalars(
        select(Mailing)
        .where(Mailing.kind == MailingKind.WELCOME, Mailing.expression == slug)
        .where(Mailing.status != MailingStatus.CANCELLED)
        .order_by(Mailing.id.desc())
        .limit(1)
    ).first()
    if current is not None and _same(session, current, planned, subject):
        # Always touch the row, even when it is sending: a sender finishing the mailing waits
        # for this commit and then sees the new deliveries (sending.Sender._idle).
        reopen = update(Mailing).where(
            Mailing.id == current.id,
            Mailing.status.in_((MailingStatus.SENDING, MailingStatus.DONE)),
        )
        moved = session.execute(reopen.values(status=MailingStatus.SENDING, finished_at=None))
        if not _changed(moved):
            result.paused.append(current.id)
        return current.id
    head = planned.letterhead
    assert head is not None  # outbox.plan always chooses one
    mailing = Mailing(
        kind=MailingKind.WELCOME,
        issue_slug=planned.slug,
        issue_path=planned.shown,
        subject=subject,
        expression=slug,
        expression_given="",
        sender=head.sender,
        reply_to=head.reply_to,
        list_id=head.list_id,
        status=MailingStatus.SENDING,
        paused_reason="",
        created_at=now,
    )
    session.add(mailing)
    session.flush()
    for key, content in planned.variants.items():
        session.add(
            MailingVariant(mailing_id=mailing.id, key=key, html=content.html, text=content.text)
        )
    return mailing.id


def _same(session: Session, mailing: Mailing, planned: Plan, subject: str) -> bool:
    head = planned.letterhead
    assert head is not None
    said = (mailing.issue_path, mailing.subject, mailing.sender, mailing.reply_to, mailing.list_id)
    if said != (planned.shown, subject, head.sender, head.reply_to, head.list_id):
        return False
    rows = session.execute(
        select(MailingVariant.key, MailingVariant.html, MailingVariant.text).where(
            MailingVariant.mailing_id == mailing.id
        )
    )
    kept = {key: (html, text) for key, html, text in rows}
    return kept == {key: (c.html, c.text) for key, c in planned.variants.items()}


# --- sending them now --------------------------------------------------------------------------


def under_way(engine: Engine) -> list[int]:
    """The welcome mailings with deliveries to send, oldest first."""
    with engine.connect() as connection:
        query = (
            select(Mailing.id)
            .where(Mailing.kind == MailingKind.WELCOME, Mailing.status == MailingStatus.SENDING)
            .order_by(Mailing.id)
        )
        return list(connection.scalars(query))


@dataclass
class Sent:
    queued: Queued
    sent: int = 0  # messages the relay took


def send_now(site: Site, now: datetime) -> Sent:
    """Queue the welcomes owed and send every welcome mailing under way, as a sender of its own
    (the web side after a confirmation, `subscribers add`): the relay is asked first, so while
    it is down nothing is claimed and the worker sends them later. Raises NewsroomError when
    another sender holds SQLite's one sender lock (a worker then sends them), RelayError when
    the relay does not answer, and readiness.NotReady as every sender does."""
    queued = queue(site, now)
    if not under_way(site.engine):
        return Sent(queued)
    with SenderLock(site.engine) as lock:
        return Sent(queued, asyncio.run(_send(site, lock)))


async def _send(site: Site, lock: SenderLock) -> int:
    probe = Pool(site.config, connections=1)
    try:
        await probe.check()
    finally:
        await probe.close()
    sender = Sender(site, lock)
    sent = 0
    try:
        for mailing_id in under_way(site.engine):
            sent += (await sender.run(mailing_id)).sent
    finally:
        await sender.close()
    return sent
