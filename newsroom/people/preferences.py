"""What the holder of a link token sees and may change: their lists, their data, their erasure.

The web side's preference, confirmation and unsubscribe pages call these; every change goes
through subscribers.py and erasure.py (which keep the consent ledger), so the rules live there.
A token is checked on every call: nothing is remembered between requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from newsroom import tokens
from newsroom.database import transaction
from newsroom.models import MailingList, Subscription
from newsroom.models import SubscriptionStatus as Status
from newsroom.people import erasure, lists, subscribers
from newsroom.people.consent import Origin
from newsroom.people.subscribers import InvalidInput
from newsroom.site import Site

ACTIVE = (Status.PENDING.value, Status.CONFIRMED.value)


@dataclass(frozen=True)
class ListChoice:
    """One list as the holder sees it: its status for them (None: never on it)."""

    slug: str
    name: str
    description: str
    public: bool
    status: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass
class Holder:
    """The person a genuine token names, and the lists they may choose from."""

    email: str
    choices: list[ListChoice]  # public lists, and any list they are on (pending or confirmed)
    named: list[str] = field(default_factory=list)  # the lists the token itself names

    def names(self, slugs: Iterable[str]) -> list[str]:
        by_slug = {c.slug: c.name for c in self.choices}
        return [by_slug.get(slug, slug) for slug in slugs]


def holder(
    site: Site, purpose: str, token: str, *, now: datetime, allow_expired: bool = False
) -> Holder:
    """The holder of TOKEN; raises tokens.TokenError (or TokenExpired) for anything not genuine,
    including a token for an address that was since erased."""
    payload = tokens.read(site.config, purpose, token, now=now, allow_expired=allow_expired)
    with transaction(site.engine) as session:
        # The same check as every library call that acts on a token: the address digest must
        # match, so a token cannot be replayed against a reused subscriber id.
        person = subscribers.token_person(session, payload, purpose)
        rows = session.execute(
            select(MailingList, Subscription.status)
            .outerjoin(
                Subscription,
                (Subscription.list_id == MailingList.id)
                & (Subscription.subscriber_id == person.id),
            )
            .where(MailingList.retired_at.is_(None))
            .order_by(MailingList.name)
        ).all()
        choices = [
            ListChoice(row.slug, row.name, row.description, row.public, status)
            for row, status in rows
            if row.public or status in ACTIVE
        ]
        wanted = payload.get("l")
        ids = {int(i) for i in wanted} if isinstance(wanted, list) else None
        named = [
            row.slug
            for row, status in rows
            if status is not None and (ids is None or row.id in ids)
        ]
        return Holder(person.email, choices, named)


@dataclass
class Choice:
    """What choosing lists did."""

    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    confirmation_sent: bool = False
    welcomes: int = 0  # single opt-in lists joined now whose welcome issue is owed


def choose(
    site: Site,
    token: str,
    wanted: Iterable[str],
    *,
    ip: str | None,
    user_agent: str | None,
    now: datetime,
) -> Choice:
    """Keep exactly the WANTED lists: leave the others, ask to join new ones (double opt-in
    lists send one confirmation email). Only public lists and lists the person is on can be
    chosen; another slug is refused as unknown."""
    person = holder(site, "preferences", token, now=now)
    allowed = {c.slug: c for c in person.choices}
    wanted = list(dict.fromkeys(wanted))
    for slug in wanted:
        if slug not in allowed:
            raise InvalidInput(f"unknown list {slug!r}")
    active = {c.slug for c in person.choices if c.active}
    origin = Origin("web", "preferences", ip, user_agent)
    result = Choice()
    leave = sorted(active - set(wanted))
    if leave:
        result.left = subscribers.remove(site, person.email, leave, now=now, origin=origin)
    join = [slug for slug in wanted if slug not in active]
    if join:
        report = subscribers.add(
            site, person.email, join, now=now, origin=origin, allow_suppressed=True, welcome=True
        )
        result.joined = join
        result.confirmation_sent = report.confirmation_sent
        result.welcomes = report.welcomes
    return result


def leave_all(
    site: Site, token: str, *, ip: str | None, user_agent: str | None, now: datetime
) -> list[str]:
    """Leave every list (the preference page's "leave everything")."""
    person = holder(site, "preferences", token, now=now)
    origin = Origin("web", "preferences", ip, user_agent)
    return subscribers.remove(site, person.email, (), now=now, origin=origin)


def export(site: Site, token: str, *, now: datetime) -> dict[str, Any]:
    """Everything held about the holder (a subject access request), as JSON-ready data."""
    person = holder(site, "preferences", token, now=now)
    return erasure.export_subscriber(site, person.email)


def erase(site: Site, token: str, *, now: datetime) -> None:
    """Forget the holder (no IP or user agent is kept with the erasure event either)."""
    person = holder(site, "preferences", token, now=now)
    erasure.erase(site, person.email, now=now, origin=Origin("web", "preferences"))


def public_lists(site: Site) -> list[MailingList]:
    """The lists offered on the subscribe form, by name."""
    with transaction(site.engine) as session:
        rows = lists.active_lists(session).values()
        return sorted((row for row in rows if row.public), key=lambda row: row.name)
