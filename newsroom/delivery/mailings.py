"""Mailings: the frozen audience, claiming deliveries in batches, recording what the relay said.

A mailing is created in one transaction with its variants and one delivery per address. Senders
(`newsroom send`, `newsroom worker`) then claim deliveries in batches of `sending.batch`: the
claim marks them `sending` and commits before any message goes out, and each batch's outcomes
are written in one transaction after it. So after a crash at most one batch per sender is left
`sending`; each sender's journal (journal.py) then tells which of them the relay answered and
which it was never handed (`reconcile`), leaving *uncertain* (see senders.py) only those handed
without an answer, at most one per connection. They are only sent again when asked
(`--resend-uncertain`). The audience is re-checked right before each batch, and again before a
message whenever the database has changed since (sending.py): an unsubscribe takes effect at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from sqlalchemy import (
    ColumnElement,
    Engine,
    Select,
    and_,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from newsroom.database import transaction
from newsroom.delivery import bounces, journal
from newsroom.delivery.letterhead import Letterhead
from newsroom.delivery.senders import SenderLock, is_sqlite
from newsroom.errors import NewsroomError
from newsroom.models import (
    Base,
    Delivery,
    DeliveryStatus,
    Mailing,
    MailingList,
    MailingStatus,
    MailingVariant,
    Subscriber,
    SubscriberTag,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from newsroom.people import erasure

D = DeliveryStatus
# Statuses that mean "this address has had, or is getting, this issue".
HAD = (D.PENDING, D.SENDING, D.SENT, D.DEFERRED)
BACKOFF_FIRST = timedelta(minutes=5)
BACKOFF_MAX = timedelta(hours=6)


@dataclass(frozen=True)
class Content:
    """One variant's subject, HTML and text, merge fields still in them."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class Addressee:
    """One address of a mailing's audience and the variant it gets: a delivery to be."""

    subscriber_id: int | None
    email: str
    variant_key: str


@runtime_checkable
class Selected(Protocol):
    """A mailing's audience as one query (`audience.Query`): the database writes the deliveries
    itself, with no row passing through Python (bench/bench_scale.py)."""

    def rows(self, session: Session) -> Select[int, str, str]:
        """(subscriber id, email, variant key) of each addressee, one row per address."""
        ...


@dataclass(frozen=True)
class Created:
    mailing_id: int
    count: int  # deliveries created
    already: int  # addresses left out because they already had the issue


def create(
    engine: Engine,
    *,
    issue_slug: str,
    issue_path: str,
    subject: str,
    expression: str,
    variants: Mapping[str, Content],
    addressees: Iterable[Addressee] | Selected,
    again: bool = False,
    now: datetime,
    chunk: int = 5000,
    expression_given: str = "",
    letterhead: Letterhead | None = None,
) -> Created:
    """Freeze a mailing: its variants and one delivery per address, in one transaction.

    Addresses that already had ISSUE_SLUG (sent, or still to be sent, by another mailing) are
    left out unless AGAIN. ADDRESSEES given as a query (`Selected`) become deliveries in one
    INSERT … SELECT; given one by one, they stream through in chunks: either way memory does
    not grow with the audience."""
    with transaction(engine) as session:
        mailing = Mailing(
            issue_slug=issue_slug,
            issue_path=issue_path,
            subject=subject,
            expression=expression,
            expression_given=expression_given if expression_given != expression else "",
            sender=letterhead.sender if letterhead else "",
            reply_to=letterhead.reply_to if letterhead else "",
            list_id=letterhead.list_id if letterhead else "",
            status=MailingStatus.SENDING,
            paused_reason="",
            created_at=now,
            frozen_at=now,
            again=again,
        )
        session.add(mailing)
        session.flush()
        count, had = fill(session, mailing, variants, addressees, again=again, chunk=chunk)
        return Created(mailing.id, count, had)


def fill(
    session: Session,
    mailing: Mailing,
    variants: Mapping[str, Content],
    addressees: Iterable[Addressee] | Selected,
    *,
    again: bool,
    chunk: int = 5000,
) -> tuple[int, int]:
    """MAILING's variants and one delivery per address, in SESSION's transaction (a new
    mailing, or a scheduled one being frozen); returns (deliveries made, addresses left out
    because they already had the issue). Raises NewsroomError when nobody is left, so that the
    transaction is rolled back. ADDRESSEES given one by one must be read after this begins
    (it holds erasure off before reading them: `erasure.hold_off`)."""
    erasure.hold_off(session)
    for key, content in variants.items():
        session.add(
            MailingVariant(mailing_id=mailing.id, key=key, html=content.html, text=content.text)
        )
    # A first mailing of an issue has nobody to leave out: skip the look-up.
    check = not again and _sent_before(session, mailing.issue_slug, mailing.id)
    had = AlreadyHad(mailing.issue_slug)
    if isinstance(addressees, Selected):
        count = _fill_from(session, mailing, addressees.rows(session), had if check else None)
    else:
        count = _fill_with(session, mailing, addressees, had if check else None, chunk)
    if count == 0:
        sentence = had.sentence(session) if had.count else ""
        raise NewsroomError(nobody_to_send_to(mailing.expression, sentence))
    return count, had.count


def _fill_from(
    session: Session, mailing: Mailing, rows: Select[int, str, str], had: AlreadyHad | None
) -> int:
    """One INSERT … SELECT of ROWS as MAILING's deliveries, without those in HAD (counted)."""
    email = rows.selected_columns[1]
    if had is not None:
        had.count_among(session, rows.with_only_columns(email).order_by(None))
        earlier = exists().where(
            Mailing.id == Delivery.mailing_id, _had(had.issue_slug), Delivery.email == email
        )
        rows = rows.where(~earlier)
    source = rows.add_columns(
        literal(mailing.id), literal(D.PENDING.value), literal(0), literal("")
    )
    columns = ["subscriber_id", "email", "variant_key", "mailing_id", "status", "attempts"]
    deliveries = Base.metadata.tables[Delivery.__tablename__]
    session.flush()  # the variants first: the statement below goes past the session
    result = session.connection().execute(
        insert(deliveries).from_select([*columns, "last_response"], source)
    )
    if result.rowcount >= 0:
        return int(result.rowcount)
    # psycopg reports no row count for this statement (-1): count them, by ix_deliveries_work.
    made = select(func.count()).select_from(Delivery).where(Delivery.mailing_id == mailing.id)
    return int(session.connection().scalar(made) or 0)


def _fill_with(
    session: Session,
    mailing: Mailing,
    addressees: Iterable[Addressee],
    had: AlreadyHad | None,
    chunk: int,
) -> int:
    """ADDRESSEES as MAILING's deliveries in chunks, without those in HAD (counted)."""
    count = 0
    deliveries = Base.metadata.tables[Delivery.__tablename__]  # Core: the ORM bulk path costs more
    iterator = iter(addressees)
    while batch := list(islice(iterator, chunk)):
        going = had.sift(session, batch) if had else list({m.email: m for m in batch}.values())
        rows = [_row(mailing.id, m) for m in going]
        if rows:
            session.execute(insert(deliveries), rows)
        count += len(rows)
    return count


def nobody_to_send_to(expression: str, had: str, selected: int | None = None) -> str:
    """The words for a mailing with nobody to send to, asked before it is made (SELECTED: how
    many the expression selects) or found when its recipients are frozen; HAD says who
    already had the issue (`AlreadyHad.sentence`), if anybody did."""
    if selected is not None:
        said = f"{expression!r} selects {selected} subscriber(s)"
    else:
        said = "" if had else f"{expression!r} matches no confirmed subscriber"
    return "nobody to send to: " + "; ".join(part for part in (said, had) if part)


@dataclass
class AlreadyHad:
    """The addresses of an audience that already had an issue (sent, or still to be sent, by a
    mailing not cancelled), and the mailings they had it from, so that what is said about
    them names the exact issue file and mailing. "Already had it" goes by the slug, which
    `issues.slug_problems` keeps unique to one file."""

    issue_slug: str
    count: int = 0
    mailing_ids: set[int] = field(default_factory=set)

    def sift(self, session: Session, batch: Iterable[Addressee]) -> list[Addressee]:
        """BATCH, one per address, without those who already had the issue (counted here)."""
        unique = {m.email: m for m in batch}
        rows = session.execute(
            select(Delivery.email, Delivery.mailing_id)
            .join(Mailing, Mailing.id == Delivery.mailing_id)
            .where(_had(self.issue_slug), Delivery.email.in_(list(unique)))
        ).all()
        had = {email for email, _ in rows}
        self.count += len(had)
        self.mailing_ids.update(mailing_id for _, mailing_id in rows)
        return [m for email, m in unique.items() if email not in had]

    def count_among(self, session: Session, emails: Any) -> None:
        """Count, in the database, who of EMAILS (a subquery) already had the issue."""
        condition = and_(_had(self.issue_slug), Delivery.email.in_(emails))
        joined = (Mailing, Mailing.id == Delivery.mailing_id)
        count = select(func.count(func.distinct(Delivery.email))).join(*joined).where(condition)
        self.count += int(session.scalar(count) or 0)
        ids = select(Delivery.mailing_id).distinct().join(*joined).where(condition)
        self.mailing_ids.update(session.scalars(ids))

    def sentence(self, session: Session) -> str:
        """'3 addresses already had issue 'TITLE' (issues/FILE.md) from mailing 2; --again
        sends to them too'."""
        rows = session.execute(
            select(Mailing.subject, Mailing.issue_path, Mailing.id)
            .where(Mailing.id.in_(self.mailing_ids))
            .order_by(Mailing.id)
        ).all()
        sources: dict[tuple[str, str], list[int]] = {}
        for subject, path, mailing_id in rows:
            sources.setdefault((subject, path), []).append(mailing_id)
        issues = [
            f"{'issue ' if n == 0 else ''}{subject!r} ({path}) from {_numbered('mailing', ids)}"
            for n, ((subject, path), ids) in enumerate(sources.items())
        ]
        who = f"{self.count} address{'es' if self.count != 1 else ''}"
        return f"{who} already had {' and '.join(issues)}; --again sends to them too"


def _numbered(word: str, numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"{word} {numbers[0]}"
    return f"{word}s {', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"


def _had(issue_slug: str) -> ColumnElement[bool]:
    """Deliveries (joined with their mailing) that count as having had ISSUE_SLUG."""
    return and_(
        Mailing.issue_slug == issue_slug,
        Mailing.status != MailingStatus.CANCELLED,
        Delivery.status.in_(HAD),
    )


def _sent_before(session: Session, issue_slug: str, mailing_id: int) -> bool:
    """Whether another mailing of ISSUE_SLUG has deliveries that count as having had it."""
    query = (
        select(Delivery.id)
        .join(Mailing, Mailing.id == Delivery.mailing_id)
        .where(Mailing.issue_slug == issue_slug, Mailing.id != mailing_id)
        .where(Delivery.status.in_(HAD), Mailing.status != MailingStatus.CANCELLED)
        .limit(1)
    )
    return session.scalar(query) is not None


def _row(mailing_id: int, addressee: Addressee) -> dict[str, Any]:
    return {
        "mailing_id": mailing_id,
        "subscriber_id": addressee.subscriber_id,
        "email": addressee.email,
        "variant_key": addressee.variant_key,
        "status": D.PENDING,
        "attempts": 0,
        "last_response": "",
    }


# --- claiming and recording ------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A delivery this sender has claimed (status `sending`)."""

    id: int
    email: str
    variant_key: str
    subscriber_id: int | None
    attempts: int  # including this one
    added_at: datetime | None = None  # when it joined a mailing made before it (a welcome)


def claim(engine: Engine, mailing_id: int, sender: str, size: int, now: datetime) -> list[Claimed]:
    """Mark up to SIZE due deliveries `sending` for SENDER and commit; returns them in id order.

    On PostgreSQL, FOR UPDATE SKIP LOCKED lets any number of senders claim side by side without
    waiting for or doubling each other; on SQLite the one UPDATE is atomic under the write lock."""
    due = or_(
        Delivery.status == D.PENDING,
        and_(Delivery.status == D.DEFERRED, Delivery.next_attempt_at <= now),
    )
    ids = (
        select(Delivery.id)
        .where(Delivery.mailing_id == mailing_id, due)
        .order_by(Delivery.id)
        .limit(size)
    )
    if not is_sqlite(engine):
        ids = ids.with_for_update(skip_locked=True)
    statement = (
        update(Delivery)
        .where(Delivery.id.in_(ids.scalar_subquery()))
        .values(status=D.SENDING, claimed_by=sender, claimed_at=now, attempts=Delivery.attempts + 1)
        .returning(
            Delivery.id,
            Delivery.email,
            Delivery.variant_key,
            Delivery.subscriber_id,
            Delivery.attempts,
            Delivery.added_at,
        )
    )
    with engine.begin() as connection:
        rows = connection.execute(statement).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


@dataclass
class Result:
    """What became of one claimed delivery, to be written with the rest of its batch."""

    claimed: Claimed
    status: str
    response: str = ""
    code: int = 0
    next_attempt_at: datetime | None = None

    def row(self, now: datetime) -> dict[str, Any]:
        released = self.status == D.PENDING  # never handed to the relay: not an attempt
        return {
            "id": self.claimed.id,
            "status": self.status,
            "attempts": self.claimed.attempts - 1 if released else self.claimed.attempts,
            "next_attempt_at": self.next_attempt_at,
            "sent_at": now if self.status == D.SENT else None,
            "last_response": self.response[:2000],
        }


def record(engine: Engine, config: Any, results: Sequence[Result], now: datetime) -> None:
    """Write a batch's results in one transaction; a 5xx also scores a hard bounce."""
    if not results:
        return
    with transaction(engine) as session:
        session.execute(update(Delivery), [r.row(now) for r in results])
        for result in results:
            if result.status == D.FAILED and result.code >= 500:
                _hard_bounce(session, config, result, now)


def _hard_bounce(session: Session, config: Any, result: Result, now: datetime) -> None:
    """A 5xx while sending counts as a hard bounce (DESIGN "Bounces and complaints")."""
    delivery = session.get_one(Delivery, result.claimed.id)
    bounces.record_bounce(session, config, delivery, "hard", result.response, now, source="sending")


def backoff(attempts: int, rng: random.Random, first: timedelta = BACKOFF_FIRST) -> timedelta:
    """Exponential backoff with jitter: FIRST (`sending.retry_first`, 5 min), then twice as long
    each time, at most 6 hours, each ×0.5–1.5."""
    base = min(first * 2 ** max(attempts - 1, 0), BACKOFF_MAX)
    return base * (0.5 + rng.random())


def still_in_audience(session: Session, expression: str, subscriber_ids: Iterable[int]) -> set[int]:
    """Which of SUBSCRIBER_IDS the mailing's expression still selects (unsubscribes, bounces and
    erasures since the mailing was frozen drop out).

    Evaluated in Python on each person's confirmed lists and tags (`segments.matches`, the
    reference the SQL is tested against): two lookups by subscriber id, which no planner can get
    wrong on tables just filled by an import and not yet analysed."""
    from newsroom import segments

    ids = list(subscriber_ids)
    if not ids:
        return set()
    node = segments.parse(expression)
    confirmed: dict[int, set[str]] = {}
    rows = session.execute(
        select(Subscription.subscriber_id, MailingList.slug)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(
            Subscription.subscriber_id.in_(ids), Subscription.status == SubscriptionStatus.CONFIRMED
        )
        .where(MailingList.retired_at.is_(None))
    )
    for subscriber_id, slug in rows:
        confirmed.setdefault(subscriber_id, set()).add(slug)
    tags: dict[int, set[str]] = {}
    tag_rows = session.execute(
        select(SubscriberTag.subscriber_id, SubscriberTag.tag).where(
            SubscriberTag.subscriber_id.in_(ids)
        )
    )
    for subscriber_id, tag in tag_rows:
        tags.setdefault(subscriber_id, set()).add(tag)
    return {i for i in ids if segments.matches(node, confirmed.get(i, set()), tags.get(i, set()))}


class Named(NamedTuple):
    """What a message's personal parts need of its subscriber: the name, the token key."""

    name: str
    token_key: str


def people(session: Session, subscriber_ids: Iterable[int]) -> dict[int, Named]:
    ids = list(subscriber_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(Subscriber.id, Subscriber.name, Subscriber.token_key).where(Subscriber.id.in_(ids))
    )
    return {id_: Named(name, key) for id_, name, key in rows}


# --- the state of a mailing ------------------------------------------------------------------


@dataclass
class Counts:
    """Deliveries of one mailing by status; `uncertain` are `sending` ones whose sender died."""

    by_status: dict[str, int] = field(default_factory=dict)
    uncertain: int = 0
    in_flight: int = 0

    def __getitem__(self, status: str) -> int:
        return self.by_status.get(status, 0)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def to_do(self) -> int:
        return self[D.PENDING] + self[D.DEFERRED]


def counts(engine: Engine, mailing_id: int, lock: SenderLock | None = None) -> Counts:
    with engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.status, func.count())
            .where(Delivery.mailing_id == mailing_id)
            .group_by(Delivery.status)
        ).all()
        result = Counts({status: n for status, n in rows})
        if result[D.SENDING] and lock is None:
            result.in_flight = result[D.SENDING]  # without a lock we cannot tell which are live
        elif result[D.SENDING]:
            claimants = connection.execute(
                select(Delivery.claimed_by, func.count())
                .where(Delivery.mailing_id == mailing_id, Delivery.status == D.SENDING)
                .group_by(Delivery.claimed_by)
            ).all()
            for claimant, n in claimants:
                if lock is not None and lock.alive(claimant or ""):
                    result.in_flight += n
                else:
                    result.uncertain += n
    return result


def reconcile(engine: Engine, mailing_id: int, lock: SenderLock, where: Path, now: datetime) -> int:
    """Settle the claims of dead senders in MAILING_ID from their journals (journal.py): answered
    2xx → sent; answered otherwise or never handed → pending. Those handed without an answer,
    and every claim of a sender without a journal to trust, stay `sending` (uncertain).
    Returns how many deliveries were settled."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.id, Delivery.claimed_by).where(
                Delivery.mailing_id == mailing_id, Delivery.status == D.SENDING
            )
        ).all()
    claims: dict[str, list[int]] = {}
    for id_, claimant in rows:
        claims.setdefault(claimant or "", []).append(id_)
    settled = 0
    for claimant, ids in claims.items():
        if not claimant or lock.alive(claimant):
            continue
        said = journal.read(where, claimant, mailing_id)
        if said is not None:
            settled += _settle(engine, claimant, ids, said, now)
            journal.discard(where, claimant, mailing_id)
    return settled


def _settle(
    engine: Engine, claimant: str, ids: list[int], said: journal.Said, now: datetime
) -> int:
    sent: dict[int, list[int]] = {}  # by the relay's code
    for i in ids:
        if 200 <= said.answered.get(i, 0) < 300:
            sent.setdefault(said.answered[i], []).append(i)
    refused = [i for i in ids if said.answered.get(i, 200) >= 300]  # an attempt all the same
    untouched = [i for i in ids if i not in said.answered and i not in said.handed]
    mine = (Delivery.status == D.SENDING, Delivery.claimed_by == claimant)
    note = f"(from the journal of sender {claimant}, which stopped)"
    changes: list[tuple[list[int], dict[str, Any]]] = [
        (chosen, {"status": D.SENT, "sent_at": now, "last_response": f"{code} {note}"})
        for code, chosen in sent.items()
    ]
    changes.append((refused, {"status": D.PENDING, "claimed_by": None}))
    changes.append(
        (untouched, {"status": D.PENDING, "claimed_by": None, "attempts": Delivery.attempts - 1})
    )
    settled = 0
    with engine.begin() as connection:
        for chosen, values in changes:
            for start in range(0, len(chosen), 1000):
                part = chosen[start : start + 1000]
                statement = update(Delivery).where(Delivery.id.in_(part), *mine).values(**values)
                settled += connection.execute(statement).rowcount
    return settled


def settle_own(engine: Engine, lock: SenderLock, where: Path, now: datetime) -> int:
    """The claims LOCK's sender left `sending` when the database went away mid-batch, settled
    from its own journal (closed since: its run ended) as a dead sender's would be. What the
    journal cannot tell is uncertain: handed to another claimant name, which no one holds, so
    that the mailing can finish. Returns how many deliveries were settled."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.mailing_id, Delivery.id).where(
                Delivery.status == D.SENDING, Delivery.claimed_by == lock.name
            )
        ).all()
    claims: dict[int, list[int]] = {}
    for mailing_id, id_ in rows:
        claims.setdefault(mailing_id, []).append(id_)
    settled = 0
    for mailing_id, ids in claims.items():
        said = journal.read(where, lock.name, mailing_id)
        if said is not None:
            settled += _settle(engine, lock.name, ids, said, now)
            journal.discard(where, lock.name, mailing_id)
    with engine.begin() as connection:
        connection.execute(
            update(Delivery)
            .where(Delivery.status == D.SENDING, Delivery.claimed_by == lock.name)
            .values(claimed_by=f"{lock.name} (before the database restarted)")
        )
    return settled


def uncertain_ids(engine: Engine, mailing_id: int, lock: SenderLock) -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.id, Delivery.claimed_by).where(
                Delivery.mailing_id == mailing_id, Delivery.status == D.SENDING
            )
        ).all()
    return [id_ for id_, claimant in rows if not lock.alive(claimant or "")]


def resend_uncertain(engine: Engine, mailing_id: int, lock: SenderLock) -> int:
    """Put the uncertain deliveries back to `pending` (some of them may arrive twice)."""
    ids = uncertain_ids(engine, mailing_id, lock)
    for start in range(0, len(ids), 1000):
        with engine.begin() as connection:
            connection.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids[start : start + 1000]), Delivery.status == D.SENDING)
                .values(status=D.PENDING, attempts=Delivery.attempts - 1, claimed_by=None)
            )
    return len(ids)


def get(engine: Engine, mailing_id: int) -> Mailing:
    with transaction(engine) as session:
        mailing = session.get(Mailing, mailing_id)
        if mailing is None:
            raise NewsroomError(f"no mailing {mailing_id} (`newsroom mailings` lists them)")
        session.expunge(mailing)
        return mailing


def variants(engine: Engine, mailing_id: int) -> dict[str, Content]:
    with transaction(engine) as session:
        mailing = session.get_one(Mailing, mailing_id)
        rows = session.scalars(
            select(MailingVariant).where(MailingVariant.mailing_id == mailing_id)
        )
        return {v.key: Content(mailing.subject, v.html, v.text) for v in rows}


def set_status(
    engine: Engine,
    mailing_id: int,
    status: MailingStatus,
    reason: str = "",
    *,
    only_from: Sequence[MailingStatus] = (),
    now: datetime | None = None,
) -> bool:
    """Move a mailing to STATUS (only from ONLY_FROM if given); returns whether it moved."""
    statement = update(Mailing).where(Mailing.id == mailing_id)
    if only_from:
        statement = statement.where(Mailing.status.in_(only_from))
    values: dict[str, Any] = {"status": status, "paused_reason": reason}
    if status in (MailingStatus.DONE, MailingStatus.CANCELLED):
        values["finished_at"] = now or utcnow()
    with engine.begin() as connection:
        return bool(connection.execute(statement.values(**values)).rowcount)


def pause(engine: Engine, mailing_id: int, reason: str) -> bool:
    return set_status(
        engine, mailing_id, MailingStatus.PAUSED, reason, only_from=(MailingStatus.SENDING,)
    )


def check_resumable(engine: Engine, mailing_id: int) -> None:
    """Raise NewsroomError unless MAILING_ID exists, was frozen and was not cancelled."""
    mailing = get(engine, mailing_id)
    if mailing.status == MailingStatus.CANCELLED:
        raise NewsroomError(f"mailing {mailing_id} was cancelled; it cannot be resumed")
    if mailing.status == MailingStatus.SCHEDULED:
        raise NewsroomError(
            f"mailing {mailing_id} is scheduled and has nobody in it yet: a `newsroom worker` "
            f"freezes its audience and sends it when it is due; `newsroom send {mailing.issue_path}"
            f" --at TIME` moves it, `newsroom mailings cancel {mailing_id}` cancels it"
        )
    if mailing.frozen_at is None:
        raise NewsroomError(
            f"mailing {mailing_id} was scheduled and never frozen ({mailing.paused_reason}): "
            f"put that right, then schedule it again with `newsroom send {mailing.issue_path} "
            f"--at TIME`, or cancel it with `newsroom mailings cancel {mailing_id}`"
        )


def resume(engine: Engine, mailing_id: int) -> None:
    check_resumable(engine, mailing_id)
    set_status(engine, mailing_id, MailingStatus.SENDING)


def cancel(engine: Engine, mailing_id: int, now: datetime) -> int:
    """Cancel a mailing: its pending and deferred deliveries are skipped. Returns how many."""
    mailing = get(engine, mailing_id)
    if mailing.status in (MailingStatus.DONE, MailingStatus.CANCELLED):
        raise NewsroomError(f"mailing {mailing_id} is already {mailing.status}")
    with engine.begin() as connection:
        skipped = connection.execute(
            update(Delivery)
            .where(Delivery.mailing_id == mailing_id, Delivery.status.in_((D.PENDING, D.DEFERRED)))
            .values(status=D.SKIPPED, last_response="mailing cancelled")
        ).rowcount
    set_status(engine, mailing_id, MailingStatus.CANCELLED, "cancelled", now=now)
    return int(skipped)


def under_way(engine: Engine) -> list[int]:
    """The mailings senders should work on, oldest first."""
    with engine.connect() as connection:
        query = (
            select(Mailing.id).where(Mailing.status == MailingStatus.SENDING).order_by(Mailing.id)
        )
        return list(connection.scalars(query))


def listing(engine: Engine) -> Iterator[tuple[Mailing, Counts]]:
    with transaction(engine) as session:
        found = list(session.scalars(select(Mailing).order_by(Mailing.id)))
        for mailing in found:
            session.expunge(mailing)
    for mailing in found:
        yield mailing, counts(engine, mailing.id)
