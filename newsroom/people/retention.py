"""Storage limitation (UK GDPR Art. 5(1)(e), issue #16 item 6): how long delivery and bounce
records keep personal data, as the site states in `[retention]`; `newsroom subscribers prune`
enforces it.

- The deliveries of mailings frozen more than `retention.deliveries_days` ago lose the address
  they went to (replaced by `pruned-<id>`, unique per row as erasure's placeholder is), the link
  to their subscriber, and any address in the relay's answer. The rows stay, so each mailing's
  counts per status stay, and so do the bounces and unsubscribes its report counts against
  them. Deliveries still to be sent keep their address until they are.
- Bounce and complaint records older than `retention.bounces_days` are deleted; one that a
  mailing's report counts (it names a delivery) is kept as that count alone, without the person
  or the diagnostic. Reports already processed keep their Message-ID, so a mailbox read again
  changes nothing, but not the diagnostic.
- The consent ledger is the evidence of consent (Art. 7(1)) and is not touched.

Once a delivery has lost its address, "already had this issue" no longer knows it: that issue
sent again would go to that person again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from newsroom.errors import ConfigError
from newsroom.models import BounceEvent, Delivery, DeliveryStatus, Mailing, ProcessedReport
from newsroom.settings import Config

D = DeliveryStatus
SETTLED = (D.SENT, D.FAILED, D.SKIPPED)  # nothing more will be sent to these
PLACEHOLDERS = ("pruned-", "erased-")  # an address already removed (erasure.py writes erased-)
ADDRESS = re.compile(r"[^\s<>\"'(),;:\[\]]+@[^\s<>\"'(),;:\[\]]+")
CHUNK = 1000


@dataclass
class RetentionReport:
    """What `enforce` did; a `..._days` of 0 means that kind of record is kept for good."""

    deliveries_days: int = 0
    deliveries_before: datetime | None = None
    deliveries: int = 0  # deliveries whose address was removed
    mailings: set[int] = field(default_factory=set)  # the mailings they belong to
    bounces_days: int = 0
    bounces_before: datetime | None = None
    bounces_deleted: int = 0
    bounces_counted: int = 0  # of those, kept as a count in their mailing's report


def enforce(session: Session, config: Config, now: datetime) -> RetentionReport:
    """Apply the site's `[retention]` settings at NOW, in SESSION's transaction."""
    report = RetentionReport(
        deliveries_days=config.integer("retention.deliveries_days"),
        bounces_days=config.integer("retention.bounces_days"),
    )
    window = config.integer("bounces.window_days")
    if 0 < report.bounces_days < window:
        raise ConfigError(
            f"retention.bounces_days ({report.bounces_days}) is shorter than "
            f"bounces.window_days ({window}): bounce scores add up over that window, so bounce "
            f"records must live at least {window} days (or set 0 to keep them)"
        )
    if report.deliveries_days:
        report.deliveries_before = now - timedelta(days=report.deliveries_days)
        _deliveries(session, report.deliveries_before, report)
    if report.bounces_days:
        report.bounces_before = now - timedelta(days=report.bounces_days)
        _bounces(session, report.bounces_before, report)
    return report


def _deliveries(session: Session, before: datetime, report: RetentionReport) -> None:
    old = select(Mailing.id).where(func.coalesce(Mailing.frozen_at, Mailing.created_at) < before)
    removed = and_(
        or_(*(Delivery.email.startswith(p, autoescape=True) for p in PLACEHOLDERS)),
        ~Delivery.email.contains("@", autoescape=True),  # pruned-roses@example.net is an address
    )
    personal = or_(
        Delivery.subscriber_id.is_not(None),
        ~removed,
        Delivery.last_response.contains("@", autoescape=True),
    )
    query = (
        select(Delivery.id, Delivery.mailing_id, Delivery.email, Delivery.last_response)
        .where(Delivery.mailing_id.in_(old), Delivery.status.in_(SETTLED), personal)
        .order_by(Delivery.id)
        .limit(CHUNK)
    )
    last = 0
    while rows := session.execute(query.where(Delivery.id > last)).all():
        session.execute(update(Delivery), [_without_address(*row) for row in rows])
        report.deliveries += len(rows)
        report.mailings.update(mailing_id for _, mailing_id, _, _ in rows)
        last = rows[-1][0]


def _without_address(id_: int, _mailing: int, email: str, response: str) -> dict[str, Any]:
    kept = email if email.startswith(PLACEHOLDERS) and "@" not in email else f"pruned-{id_}"
    return {"id": id_, "email": kept, "subscriber_id": None,
            "last_response": ADDRESS.sub("[address]", response)}  # fmt: skip


def _bounces(session: Session, before: datetime, report: RetentionReport) -> None:
    connection = session.connection()
    old = BounceEvent.at < before
    report.bounces_deleted = connection.execute(
        delete(BounceEvent).where(old, BounceEvent.delivery_id.is_(None))
    ).rowcount
    report.bounces_counted = connection.execute(
        update(BounceEvent)
        .where(old, BounceEvent.delivery_id.is_not(None))
        .where(or_(BounceEvent.subscriber_id.is_not(None), BounceEvent.diagnostic != ""))
        .values(subscriber_id=None, diagnostic="")
    ).rowcount
    report.bounces_deleted += report.bounces_counted
    connection.execute(
        update(ProcessedReport)
        .where(ProcessedReport.at < before, ProcessedReport.reason != "")
        .values(reason="")
    )
