"""Subscribers and subscriptions: add, subscribe (web), confirm, unsubscribe, remove.

Every change of a subscription appends an event to the consent ledger (consent.py). Library
functions take `now` and assume the lists are in step with lists.toml (`lists.sync(site)` at
start-up; the CLI does it before each command).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsroom import tokens
from newsroom.database import Prepared, Raw, raw_transaction, transaction
from newsroom.errors import NewsroomError
from newsroom.models import (
    ConsentEvent,
    ConsentKind,
    MailingList,
    Subscriber,
    SubscriberTag,
    Subscription,
)
from newsroom.models import SubscriptionStatus as Status
from newsroom.people import confirmation, consent, lists, suppression, welcomes
from newsroom.people.consent import Origin
from newsroom.site import Site

TAG = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
CLI = Origin("cli", "admin")


class InvalidInput(NewsroomError):
    """An address, name, tag or list that cannot be used."""


class Suppressed(NewsroomError):
    """The address was erased at the person's request; it is not added again silently."""


# A plain ASCII dot-atom local part (RFC 5322 §3.2.3): most addresses; others take the long road.
PLAIN_LOCAL = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    """A checked, normalised domain; cached, as an import meets the same few domains again and
    again (email-validator's checks cost ~75 µs an address, mostly on the domain)."""
    return validate_email(f"x@{domain}", check_deliverability=False).domain.lower()


def normalise_email(raw: str) -> str:
    """The address checked (syntax only, no DNS) and normalised: one spelling per mailbox."""
    text = raw.strip().lower()
    local, at, domain = text.rpartition("@")
    if at and len(text) <= 254 and len(local) <= 64 and PLAIN_LOCAL.fullmatch(local):
        try:
            return f"{local}@{_domain(domain)}"
        except EmailNotValidError:
            pass  # the full check below gives the message
    return _normalise_slowly(raw)


def _normalise_slowly(raw: str) -> str:
    text = raw.strip()
    if not text:
        raise InvalidInput("no email address given")
    if CONTROL.search(text):
        raise InvalidInput(
            f"{text!r} is not an email address (it holds a line break or control character)"
        )
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{text!r} is not an email address: {exc}") from None
    if len(checked.local_part.encode()) > 64:  # RFC 5321 §4.5.3.1.1; relays refuse longer ones
        raise InvalidInput(f"{text!r} is not an email address: more than 64 bytes before the @")
    # Local parts are case-sensitive in theory and never in practice; one row per mailbox.
    return checked.normalized.lower()


def clean_name(raw: str | None) -> str:
    """A display name safe for a header (no CR/LF: header injection) and of sane length."""
    name = (raw or "").strip()
    if CONTROL.search(name):
        raise InvalidInput("the name holds a line break or control character")
    if len(name) > 200:
        raise InvalidInput("the name is longer than 200 characters")
    return name


def clean_tags(raw: Iterable[str]) -> list[str]:
    tags = []
    for tag in raw:
        tag = tag.strip().lower()
        if not TAG.fullmatch(tag):
            raise InvalidInput(
                f"tag {tag!r} must be lower-case letters, digits, '-' or '_' (such as access-needs)"
            )
        tags.append(tag)
    return list(dict.fromkeys(tags))


def find_lists(session: Session, slugs: Sequence[str]) -> list[MailingList]:
    """The current lists named by SLUGS, in order; an unknown slug is an error naming the known ones."""
    if not slugs:
        raise InvalidInput("no list given: name at least one with --list")
    known = lists.active_lists(session)
    for slug in slugs:
        if slug not in known:
            raise InvalidInput(
                f"unknown list {slug!r} (lists: {', '.join(sorted(known)) or 'none'})"
            )
    return [known[slug] for slug in dict.fromkeys(slugs)]


def get(session: Session, email: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.email == email)).first()


def require(session: Session, raw_email: str) -> Subscriber:
    email = normalise_email(raw_email)
    person = get(session, email)
    if person is None:
        raise NewsroomError(f"no subscriber with the address {email}")
    return person


@dataclass(frozen=True)
class Profile:
    """A subscriber as their messages see them: who, the lists they are confirmed on, their
    tags (what a segment expression or an `only` block asks of them)."""

    subscriber: Subscriber
    lists: set[str]
    tags: set[str]


def profile(session: Session, address: str) -> Profile:
    """The subscriber with ADDRESS (raises NewsroomError when there is none)."""
    person = get(session, address.strip().lower())
    if person is None:
        raise NewsroomError(f"{address} is not a subscriber: see `newsroom subscribers show`")
    confirmed = (
        select(MailingList.slug)
        .join(Subscription, Subscription.list_id == MailingList.id)
        .where(Subscription.subscriber_id == person.id, Subscription.status == Status.CONFIRMED)
    )
    tagged = select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == person.id)
    return Profile(person, set(session.scalars(confirmed)), set(session.scalars(tagged)))


@dataclass
class AddReport:
    email: str
    outcomes: dict[str, str] = field(default_factory=dict)  # list slug -> what happened
    confirmation_sent: bool = False
    confirmation_held: bool = False  # one was sent less than 24 hours ago
    welcomes: int = 0  # lists confirmed now whose welcome issue is owed (welcomes.py)


def add(
    site: Site,
    email: str,
    list_slugs: Sequence[str],
    *,
    now: datetime,
    name: str = "",
    tags: Sequence[str] = (),
    origin: Origin = CLI,
    allow_suppressed: bool = False,
    welcome: bool = False,
) -> AddReport:
    """Subscribe EMAIL to lists: confirmed at once on single opt-in lists, pending on double
    opt-in ones (and on any list the person left before) with one confirmation email for all.
    With WELCOME, the lists confirmed at once owe the person their welcome issue (the web form
    and the preferences page: the person confirmed it themselves; `add --welcome`)."""
    email, name, tags = normalise_email(email), clean_name(name), clean_tags(tags)
    with transaction(site.engine) as session:
        chosen = find_lists(session, list_slugs)
        if not allow_suppressed and suppression.is_suppressed(session, site.config, email):
            raise Suppressed(
                f"{email} was erased at the person's request and is on the suppression list: "
                "it is not added again (they can subscribe themselves on the web page)"
            )
        person = _person(session, email, name, tags, now)
        text = consent.current_text(session, site.config)
        report = AddReport(email)
        for row in chosen:
            report.outcomes[row.slug] = _request(session, person, row, origin, now, text.id)
        if welcome:
            confirmed = [r.id for r in chosen if report.outcomes[r.slug] == Status.CONFIRMED]
            report.welcomes = welcomes.owe(session, site, [(person.id, i) for i in confirmed], now)
        previous = person.confirmation_sent_at
        if any(o == Status.PENDING for o in report.outcomes.values()):
            if previous is None or now - previous >= confirmation.INTERVAL:
                person.confirmation_sent_at = now
                report.confirmation_sent = True
            else:
                report.confirmation_held = True
        person_id = person.id
    if report.confirmation_sent:
        _send_confirmation(site, person_id, previous, now)
    return report


def _person(
    session: Session, email: str, name: str, tags: Sequence[str], now: datetime
) -> Subscriber:
    person = _locked(session, email)
    if person is None:
        person = _new_person(session, email, name, now)
    elif name and not person.name:
        person.name = name
    have = set(
        session.scalars(select(SubscriberTag.tag).where(SubscriberTag.subscriber_id == person.id))
    )
    for tag in tags:
        if tag not in have:
            session.add(SubscriberTag(subscriber_id=person.id, tag=tag))
    return person


def _locked(session: Session, email: str) -> Subscriber | None:
    """The subscriber with EMAIL, its row locked until the commit (SELECT ... FOR UPDATE on
    PostgreSQL; SQLite has one writer at a time anyway): two requests for one address, on two
    web servers at once, take their turns, and the second sees confirmation_sent_at as the
    first left it (at most one confirmation a day, issue #17, item 2)."""
    query = select(Subscriber).where(Subscriber.email == email).with_for_update()
    return session.scalars(query.execution_options(populate_existing=True)).first()


def _new_person(session: Session, email: str, name: str, now: datetime) -> Subscriber:
    """A new subscriber row, or, if another transaction added the address meanwhile (the insert
    waited for it, then broke the unique email), theirs, locked."""
    person = Subscriber(email=email, name=name, created_at=now)
    if session.get_bind().dialect.name != "postgresql":
        session.add(person)
        session.flush()
        return person
    try:
        with session.begin_nested():  # a savepoint: the duplicate undoes this insert only
            session.add(person)
            session.flush()
    except IntegrityError:
        found = _locked(session, email)
        if found is None:  # added and erased again meanwhile
            raise
        return found
    return person


def _request(
    session: Session,
    person: Subscriber,
    row: MailingList,
    origin: Origin,
    now: datetime,
    text_id: int,
) -> str:
    """One list of a request; returns the subscription's status afterwards, or 'already ...'."""
    sub = session.scalars(
        select(Subscription).where(
            Subscription.subscriber_id == person.id, Subscription.list_id == row.id
        )
    ).first()
    if sub is not None and sub.status == Status.CONFIRMED:
        return "already confirmed"
    # Someone who left is never put back silently: they confirm again whatever the list's opt-in.
    single = row.opt_in == "single" and (sub is None or sub.status == Status.PENDING)
    status = Status.CONFIRMED if single else Status.PENDING
    if sub is None:
        sub = Subscription(subscriber_id=person.id, list_id=row.id, created_at=now)
        session.add(sub)
    sub.status, sub.updated_at = status, now
    kinds = [ConsentKind.REQUESTED, *([ConsentKind.CONFIRMED] if single else [])]
    for kind in kinds:
        consent.record(
            session,
            kind,
            subscriber_id=person.id,
            list_id=row.id,
            origin=origin,
            now=now,
            consent_text_id=text_id,
            detail="single opt-in" if kind == ConsentKind.CONFIRMED else "",
        )
    session.flush()
    return status.value


def _send_confirmation(
    site: Site, person_id: int, previous: datetime | None, now: datetime
) -> None:
    """Send after the commit; if the relay refuses, allow another try at once and say so."""
    try:
        with transaction(site.engine) as session:
            built = confirmation.build(session, site.config, person_id, now)
        confirmation.send(site.config, built)
    except NewsroomError:
        with transaction(site.engine) as session:
            person = session.get(Subscriber, person_id)
            if person is not None:
                person.confirmation_sent_at = previous
        raise


def check_request(site: Site, email: str, name: str, list_slugs: Sequence[str]) -> None:
    """Raise InvalidInput if the web form's request is wrong in itself: an invalid address or
    name, a list that is not public. It reads nothing about the address, so it takes the same
    time and says the same whatever the address's state; the web side answers after this alone.
    A private list is refused as unknown, and the error names public lists only."""
    normalise_email(email)
    clean_name(name)
    with transaction(site.engine) as session:
        public = sorted(slug for slug, row in lists.active_lists(session).items() if row.public)
    for slug in list_slugs:
        if slug not in public:
            raise InvalidInput(f"unknown list {slug!r} (lists: {', '.join(public) or 'none'})")


def subscribe(
    site: Site,
    email: str,
    name: str,
    list_slugs: Sequence[str],
    *,
    ip: str | None,
    user_agent: str | None,
    now: datetime,
) -> AddReport:
    """The web form's request. Does the same whatever the address's state (unknown, pending,
    confirmed, unsubscribed, erased) as far as the requester can see: raises only for input that
    is wrong in itself (check_request)."""
    check_request(site, email, name, list_slugs)
    origin = Origin("web", "form", ip, user_agent)
    return add(
        site,
        email,
        list_slugs,
        now=now,
        name=name,
        origin=origin,
        allow_suppressed=True,
        welcome=True,
    )


@dataclass
class ConfirmResult:
    email: str
    confirmed: list[str]  # lists confirmed now
    already: list[str]  # lists that were confirmed before (confirming twice changes nothing)
    welcomes: int = 0  # of the lists confirmed now, those with a welcome issue (now owed)


def confirm(
    site: Site, token: str, *, ip: str | None, user_agent: str | None, now: datetime
) -> ConfirmResult:
    """Confirm the pending subscriptions a confirmation link names. Raises tokens.TokenExpired
    (offer `resend_confirmation`) or tokens.TokenError."""
    payload = tokens.read(site.config, "confirm", token, now=now)
    origin = Origin("web", "link", ip, user_agent)
    with transaction(site.engine) as session:
        person = token_person(session, payload, "confirm")
        session.refresh(person, with_for_update=True)  # two clicks at once: one records it
        result = ConfirmResult(person.email, [], [])
        confirmed: list[tuple[int, int]] = []
        for sub, slug in subscriptions_of(session, person.id, payload.get("l")):
            if sub.status == Status.PENDING:
                sub.status, sub.updated_at = Status.CONFIRMED, now
                consent.record(
                    session,
                    ConsentKind.CONFIRMED,
                    subscriber_id=person.id,
                    list_id=sub.list_id,
                    origin=origin,
                    now=now,
                    consent_text_id=_requested_text(session, person.id, sub.list_id),
                )
                result.confirmed.append(slug)
                confirmed.append((person.id, sub.list_id))
            elif sub.status == Status.CONFIRMED:
                result.already.append(slug)
        # In this transaction, so that nobody is confirmed without the welcome they are owed;
        # it reads no issue and sends nothing (people/welcomes.py).
        result.welcomes = welcomes.owe(session, site, confirmed, now)
        suppression.lift(session, site.config, person.email)  # they asked again, themselves
    return result


def resend_confirmation(site: Site, token: str, *, now: datetime) -> bool:
    """For an expired confirmation link: send a fresh email (within the one-a-day limit).
    Returns whether one was sent."""
    payload = tokens.read(site.config, "confirm", token, now=now, allow_expired=True)
    with transaction(site.engine) as session:
        person = token_person(session, payload, "confirm")
        session.refresh(person, with_for_update=True)  # one resend, whichever server asks
        pending = [
            s for s, _ in subscriptions_of(session, person.id, None) if s.status == Status.PENDING
        ]
        previous = person.confirmation_sent_at
        if not pending or (previous is not None and now - previous < confirmation.INTERVAL):
            return False
        person.confirmation_sent_at = now
        person_id = person.id
    _send_confirmation(site, person_id, previous, now)
    return True


def token_person(session: Session, payload: dict[str, object], purpose: str) -> Subscriber:
    person = session.get(Subscriber, payload.get("s"))
    if person is None or not tokens.names(
        payload, person.email, person.token_key, person.old_links
    ):
        raise tokens.TokenError(f"this {purpose} link is no longer valid for any subscriber")
    return person


def subscriptions_of(
    session: Session, person_id: int, list_ids: object
) -> list[tuple[Subscription, str]]:
    query = (
        select(Subscription, MailingList.slug)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscription.subscriber_id == person_id)
        .order_by(MailingList.slug)
    )
    if isinstance(list_ids, list):
        query = query.where(Subscription.list_id.in_([int(i) for i in list_ids]))
    return [(sub, slug) for sub, slug in session.execute(query)]


def _requested_text(session: Session, person_id: int, list_id: int) -> int | None:
    """The consent text the person was shown when they asked (the proof of what they agreed)."""
    return session.scalar(
        select(ConsentEvent.consent_text_id)
        .where(
            ConsentEvent.subscriber_id == person_id,
            ConsentEvent.list_id == list_id,
            ConsentEvent.kind == ConsentKind.REQUESTED,
        )
        .order_by(ConsentEvent.at.desc(), ConsentEvent.id.desc())
        .limit(1)
    )


def unsubscribe_token(
    site: Site,
    person_id: int,
    email: str,
    list_ids: Sequence[int] | None,
    *,
    now: datetime,
    mailing_id: int | None = None,
) -> str:
    """A link token that unsubscribes from LIST_IDS (None: every list), naming MAILING_ID if
    it is in a mailing's message (as sending.py makes them). It does not expire: an
    unsubscribe link in an old email must keep working (RFC 8058), until erasure."""
    with transaction(site.engine) as session:
        key = session.scalar(select(Subscriber.token_key).where(Subscriber.id == person_id))
    payload = tokens.for_subscriber(person_id, email, key or "")
    if list_ids is not None:
        payload["l"] = list(list_ids)
    if mailing_id is not None:
        payload["m"] = mailing_id
    return tokens.make(site.config, "unsubscribe", payload, now=now)


def unsubscribe(
    site: Site,
    target: str | int,
    *,
    method: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime,
    source: str = "web",
) -> list[str]:
    """Unsubscribe by an unsubscribe token (str) or a subscription id (int); returns the list
    slugs left now. Doing it twice changes nothing. METHOD: one-click, link, admin, ..."""
    origin = Origin(source, method, ip, user_agent)
    if isinstance(target, str):
        [answer] = unsubscribe_by_tokens(site, [Leaving(target, origin, now)])
        if isinstance(answer, tokens.TokenError):
            raise answer
        return answer
    with transaction(site.engine) as session:
        sub = session.get(Subscription, target)
        if sub is None:
            raise NewsroomError(f"no subscription {target}")
        slug = session.get_one(MailingList, sub.list_id).slug
        return change_status(session, [(sub, slug)], Status.UNSUBSCRIBED, origin, now)


# The one-click path (RFC 8058): mail providers POST these in bursts right after a mailing, so
# it runs prepared statements on the DB-API cursor (0.12 ms where the same Core statements
# through a Connection took 0.27 ms, and the ORM 1.5 ms), and several share one transaction.
_LEAVE_ALL = (
    update(Subscription)
    .where(
        Subscription.subscriber_id == bindparam("s"),
        or_(
            Subscription.status == Status.PENDING.value,
            Subscription.status == Status.CONFIRMED.value,
        ),
    )
    .values(status=Status.UNSUBSCRIBED.value, updated_at=bindparam("now"))
    .returning(
        Subscription.list_id,
        select(MailingList.slug).where(MailingList.id == Subscription.list_id).scalar_subquery(),
    )
)
_LEAVE = Prepared(_LEAVE_ALL)
_LEAVE_ONE = Prepared(_LEAVE_ALL.where(Subscription.list_id == bindparam("l")))
_PERSON = Prepared(
    select(Subscriber.email, Subscriber.token_key, Subscriber.old_links).where(
        Subscriber.id == bindparam("s")
    )
)
_EVENT = Prepared(
    insert(ConsentEvent).values({key: bindparam(key) for key in consent.EVENT_COLUMNS})
)


@dataclass(frozen=True)
class Leaving:
    """One request to unsubscribe by an unsubscribe token."""

    token: str
    origin: Origin
    now: datetime


def unsubscribe_by_tokens(
    site: Site, requests: Sequence[Leaving], *, wait: bool = True
) -> list[list[str] | tokens.TokenError]:
    """Carry out REQUESTS in one transaction (a group commit: the web side gathers the
    one-click unsubscribes that arrive together). Each answer is the slugs left, or the
    TokenError of a token that is not valid, which changes nothing and stops nothing else.
    Without WAIT, raises database.Busy at once if SQLite's write lock is taken."""
    answers: list[list[str] | tokens.TokenError] = []
    payloads: list[dict[str, Any]] = []
    for request in requests:
        try:
            payloads.append(tokens.read(site.config, "unsubscribe", request.token, now=request.now))
        except tokens.TokenError as exc:
            payloads.append({})
            answers.append(exc)
        else:
            answers.append([])
    # Rows are locked in subscriber order, whatever order the requests came in: two web servers
    # committing groups at once wait for each other rather than deadlock (issue #17, item 2).
    order = sorted(range(len(requests)), key=lambda i: _subscriber_of(payloads[i]))
    with raw_transaction(site.engine, wait=wait) as raw:
        for i in order:
            if not isinstance(answers[i], tokens.TokenError):
                try:
                    answers[i] = _leave(raw, requests[i], payloads[i])
                except tokens.TokenError as exc:
                    answers[i] = exc
    return answers


def _subscriber_of(payload: dict[str, Any]) -> int:
    person = payload.get("s")
    return person if isinstance(person, int) else -1


def _leave(raw: Raw, request: Leaving, payload: dict[str, Any]) -> list[str]:
    now = request.now
    person, chosen, mailing = payload.get("s"), payload.get("l"), payload.get("m")
    # The digest of address and token key: a subscriber id can be reused after an erasure,
    # even by the same address, its old links not.
    found = raw.execute(_PERSON, {"s": person}) if isinstance(person, int) else []
    if not found or not tokens.names(payload, found[0][0], found[0][1], bool(found[0][2])):
        raise tokens.TokenError("this unsubscribe link is no longer valid for any subscriber")
    if isinstance(chosen, list):
        changed = [
            row
            for list_id in chosen
            for row in raw.execute(_LEAVE_ONE, {"s": person, "now": now, "l": int(list_id)})
        ]
    else:
        changed = raw.execute(_LEAVE, {"s": person, "now": now})
    if changed:
        if raw.dialect.name == "postgresql":
            raw.cursor.execute(consent.NOTIFY_CHANGED)  # senders stop at once (changes.py)
        # A mailing's links name it ("m", signed): the event says which mailing it came from.
        detail = consent.from_mailing(mailing) if isinstance(mailing, int) else ""
        raw.execute_many(_EVENT, [
            consent.event_row(ConsentKind.UNSUBSCRIBED, subscriber_id=person,
                              list_id=list_id, origin=request.origin, now=now, detail=detail)
            for list_id, _slug in changed
        ])  # fmt: skip
    return sorted(slug for _id, slug in changed)


def change_status(
    session: Session,
    subs: Iterable[tuple[Subscription, str]],
    status: Status,
    origin: Origin,
    now: datetime,
    detail: str = "",
) -> list[str]:
    """Move active subscriptions to UNSUBSCRIBED, BOUNCED or COMPLAINED, each with its event
    (bounce processing calls this too). Returns the slugs that changed."""
    kind = {
        Status.UNSUBSCRIBED: ConsentKind.UNSUBSCRIBED,
        Status.BOUNCED: ConsentKind.BOUNCED,
        Status.COMPLAINED: ConsentKind.COMPLAINED,
    }[status]
    changed = []
    for sub, slug in subs:
        if sub.status not in (Status.PENDING, Status.CONFIRMED):
            continue
        sub.status, sub.updated_at = status, now
        consent.record(
            session,
            kind,
            subscriber_id=sub.subscriber_id,
            list_id=sub.list_id,
            origin=origin,
            now=now,
            detail=detail,
        )
        changed.append(slug)
    return changed


def remove(
    site: Site, email: str, list_slugs: Sequence[str] = (), *, now: datetime, origin: Origin = CLI
) -> list[str]:
    """Unsubscribe EMAIL from LIST_SLUGS (none given: from every list), by an administrator."""
    with transaction(site.engine) as session:
        person = require(session, email)
        ids = [row.id for row in find_lists(session, list_slugs)] if list_slugs else None
        return change_status(
            session, subscriptions_of(session, person.id, ids), Status.UNSUBSCRIBED, origin, now
        )


def remove_all(site: Site, list_slug: str, *, now: datetime, origin: Origin = CLI) -> int:
    """Unsubscribe everyone from one list (before taking it out of lists.toml)."""
    with transaction(site.engine) as session:
        (row,) = find_lists(session, [list_slug])
        subs = session.scalars(
            select(Subscription).where(
                Subscription.list_id == row.id,
                Subscription.status.in_([Status.PENDING, Status.CONFIRMED]),
            )
        )
        return len(
            change_status(session, [(s, row.slug) for s in subs], Status.UNSUBSCRIBED, origin, now)
        )
