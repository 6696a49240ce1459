"""What is held about a person, and forgetting it: subject access export, erasure, pruning
(with the site's retention periods: retention.py).

Erasure (UK GDPR art. 17) deletes the subscriber, their tags, subscriptions and bounce records,
replaces the address in past deliveries, strips the personal data from their ledger events and
keeps a keyed hash on the suppression list (suppression.py). The erasure is itself a ledger
event, without the address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, delete, exists, func, select, text, update
from sqlalchemy.orm import Session

from newsroom.database import transaction
from newsroom.models import (
    ConsentKind,
    Delivery,
    MailingList,
    Subscriber,
    SubscriberTag,
    Subscription,
)
from newsroom.models import SubscriptionStatus as Status
from newsroom.people import consent, retention, suppression
from newsroom.people.consent import Origin
from newsroom.people.retention import RetentionReport
from newsroom.people.subscribers import CLI, require
from newsroom.site import Site


def export_subscriber(site: Site, email: str) -> dict[str, Any]:
    """Everything held about EMAIL (a subject access request): the subscriber, their
    subscriptions and their whole consent ledger, as plain JSON-ready data."""
    with transaction(site.engine) as session:
        person = require(session, email)
        tags = session.scalars(
            select(SubscriberTag.tag)
            .where(SubscriberTag.subscriber_id == person.id)
            .order_by(SubscriberTag.tag)
        ).all()
        subs = session.execute(
            select(Subscription, MailingList.slug, MailingList.name)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(Subscription.subscriber_id == person.id)
            .order_by(MailingList.slug)
        ).all()
        return {
            "subscriber": {
                "email": person.email,
                "name": person.name,
                "tags": list(tags),
                "created_at": person.created_at.isoformat(),
                "confirmation_sent_at": (
                    person.confirmation_sent_at.isoformat() if person.confirmation_sent_at else None
                ),
            },
            "subscriptions": [
                {
                    "list": slug,
                    "list_name": name,
                    "status": sub.status,
                    "created_at": sub.created_at.isoformat(),
                    "updated_at": sub.updated_at.isoformat(),
                }
                for sub, slug, name in subs
            ],
            "ledger": consent.ledger(session, person.id),
        }


def erase(site: Site, email: str, *, now: datetime, origin: Origin = CLI) -> None:
    """Forget EMAIL: personal data gone, a keyed hash kept so it is not re-added silently."""
    with transaction(site.engine) as session:
        person = require(session, email)
        address = person.email
        _forget(session, person.id)
        suppression.add(session, site.config, address, "erased", now)
        consent.record(
            session,
            ConsentKind.ERASED,
            subscriber_id=None,
            list_id=None,
            origin=Origin(origin.source, origin.method),  # no IP or user agent kept either
            now=now,
        )


# A PostgreSQL advisory lock, held to the commit: shared by whoever writes deliveries naming
# subscribers (a mailing's freeze, the welcome queue), alone by an erasure. deliveries.
# subscriber_id has no foreign key (models.Delivery), so this is what keeps a person erased
# while a mailing is frozen out of it: either the erasure commits first and the freeze, which
# reads its audience after taking the lock, does not see them; or the freeze commits first and
# the erasure then replaces their address in it too. SQLite writes one transaction at a time.
ERASURE_LOCK = 17_0004


def hold_off(session: Session) -> None:
    """Hold any erasure off until SESSION's transaction ends: call it before reading the
    people whose deliveries it writes."""
    _lock(session, "pg_advisory_xact_lock_shared")


def _erasing(session: Session) -> None:
    """Hold ERASURE_LOCK alone until SESSION's transaction ends: taken before the transaction
    locks any row that an erasure holding it may be about to change (a prune rewrites old
    deliveries and deletes stale subscriptions, some of them another person's being erased):
    taken later, each would wait for the other, and PostgreSQL fails one of them."""
    _lock(session, "pg_advisory_xact_lock")


def _lock(session: Session, function: str) -> None:
    if session.get_bind().dialect.name != "sqlite":
        session.execute(text(f"SELECT {function}(:key)"), {"key": ERASURE_LOCK})


def _forget(session: Session, person_id: int) -> None:
    _erasing(session)  # taken already by a prune: PostgreSQL counts it twice, frees it at the end
    consent.forget(session, person_id)
    # Past deliveries keep their counts but not the address (a unique placeholder per row).
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == person_id)
        .values(email="erased-" + cast(Delivery.id, String), subscriber_id=None)
    )
    # Tags, subscriptions, welcomes and bounce events go with the subscriber (ON DELETE CASCADE).
    session.execute(delete(Subscriber).where(Subscriber.id == person_id))


@dataclass
class PruneReport:
    subscriptions: int = 0  # pending subscriptions past the confirmation expiry, removed
    subscribers: int = 0  # people left with no subscription at all, forgotten
    retention: RetentionReport = field(default_factory=RetentionReport)


def prune(site: Site, *, now: datetime) -> PruneReport:
    """Remove pending subscriptions older than the confirmation link's life; people who never
    confirmed anything and have nothing left are forgotten (not suppressed: they may ask again).
    Then enforce the site's `[retention]` (retention.py), all in one transaction."""
    cutoff = now - timedelta(hours=site.config.number("subscribe.confirm_hours"))
    report = PruneReport()
    stale = (Subscription.status == Status.PENDING) & (Subscription.updated_at < cutoff)
    with transaction(site.engine) as session:
        if session.scalar(select(exists().where(stale))):  # someone may be forgotten below
            _erasing(session)  # before retention and the deletes lock rows: see _erasing
        report.retention = retention.enforce(session, site.config, now)
        people = set(session.scalars(select(Subscription.subscriber_id).where(stale)))
        report.subscriptions = session.scalar(select(func.count()).where(stale)) or 0
        session.execute(delete(Subscription).where(stale))
        remaining = set(
            session.scalars(
                select(Subscription.subscriber_id)
                .where(Subscription.subscriber_id.in_(people))
                .group_by(Subscription.subscriber_id)
                .having(func.count() > 0)
            )
        )
        for person_id in sorted(people - remaining):
            _forget(session, person_id)
            report.subscribers += 1
    return report
