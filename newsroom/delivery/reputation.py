"""What came back from one mailing — bounces, complaints, unsubscribes — as counts and rates
beside the thresholds mailbox providers and relays publish, from what newsroom records anyway:
bounce reports and 5xx answers matched to a delivery through its VERP address (bounces.py), and
the ledger's unsubscribes through the mailing's own links (`consent.from_mailing`). No tracking:
no pixel, no redirected link, nothing per person beyond those records.

    mailing_returns(engine, mailing_id, sent=6, failed=0).rates  # hard, soft, complaints, ...
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, distinct, func, select

from newsroom.models import BounceEvent, ConsentEvent, ConsentKind, Delivery
from newsroom.people import consent


@dataclass(frozen=True)
class Threshold:
    """A published limit on a rate: below AIM is healthy; at LIMIT or above, mail to the
    provider's users is filtered as spam or refused."""

    aim: float
    limit: float
    source: str


# Gmail's sender guidelines (support.google.com/a/answer/81126, "Requirements for sending 5,000
# or more messages per day") and Yahoo's (senders.yahooinc.com/best-practices): keep the spam
# complaint rate below 0.3 %; Gmail: aim below 0.1 %.
COMPLAINTS = Threshold(
    0.001, 0.003, "Gmail and Yahoo: keep complaints under 0.3 %, aiming below 0.1 %"
)
# Neither publishes a bounce rate. Relays do: Amazon SES (Developer Guide, "Reputation metrics
# messages") puts a sender under review at a 5 % hard bounce rate and may pause it at 10 %,
# and recommends staying below 2 %, as the other large relays do.
BOUNCES = Threshold(
    0.02, 0.05, "relays such as Amazon SES review a sender at 5 % hard bounces: aim below 2 %"
)


TRIED, SENT = "sent or refused", "sent"


@dataclass(frozen=True)
class Rate:
    """COUNT of OF messages (those OF_WHAT), and where that stands against THRESHOLD (if one
    is published)."""

    name: str
    count: int
    of: int
    of_what: str
    threshold: Threshold | None = None

    @property
    def rate(self) -> float | None:
        return self.count / self.of if self.of else None

    @property
    def verdict(self) -> str:
        """ok, above the aim, over the limit; "" with no threshold or nothing sent yet."""
        rate, limit = self.rate, self.threshold
        if rate is None or limit is None:
            return ""
        if rate >= limit.limit:
            return "over the limit"
        return "above the aim" if rate >= limit.aim else "ok"

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {"count": self.count, "of": self.of, "rate": self.rate}
        if self.threshold is not None:
            found |= {
                "aim": self.threshold.aim,
                "limit": self.threshold.limit,
                "verdict": self.verdict,
                "source": self.threshold.source,
            }
        return found


@dataclass(frozen=True)
class Returns:
    """A mailing's rates. Hard bounces are over the messages sent or refused (a 5xx while
    sending is a hard bounce of a message the relay never took), the rest over those sent."""

    hard_bounces: Rate
    soft_bounces: Rate
    complaints: Rate
    unsubscribes: Rate

    @property
    def rates(self) -> tuple[Rate, ...]:
        return (self.hard_bounces, self.soft_bounces, self.complaints, self.unsubscribes)

    def as_dict(self) -> dict[str, object]:
        return {r.name.replace(" ", "_"): r.as_dict() for r in self.rates}


def mailing_returns(engine: Engine, mailing_id: int, *, sent: int, failed: int) -> Returns:
    """Each count is of deliveries (people), not of reports: three reports about one message
    are one bounce. An erased person's bounce records go with them, and their ledger events no
    longer name them, so their returns are no longer counted."""
    with engine.connect() as connection:
        hard = _deliveries(connection, mailing_id, "hard")
        soft = _deliveries(connection, mailing_id, "soft", besides="hard")  # soft, then hard
        complaints = _deliveries(connection, mailing_id, "complaint")
        unsubscribes = connection.scalar(
            select(func.count(distinct(ConsentEvent.subscriber_id))).where(
                ConsentEvent.kind == ConsentKind.UNSUBSCRIBED, consent.came_from(mailing_id)
            )
        )
    tried = sent + failed
    return Returns(
        Rate("hard bounces", hard, tried, TRIED, BOUNCES),
        Rate("soft bounces", soft, tried, TRIED),
        Rate("complaints", complaints, sent, SENT, COMPLAINTS),
        Rate("unsubscribes", int(unsubscribes or 0), sent, SENT),
    )


def _deliveries(connection: Connection, mailing_id: int, kind: str, besides: str = "") -> int:
    """How many of the mailing's deliveries have a bounce event of KIND (and none of BESIDES)."""
    ofs = select(BounceEvent.delivery_id).join(Delivery, Delivery.id == BounceEvent.delivery_id)
    query = ofs.where(Delivery.mailing_id == mailing_id, BounceEvent.kind == kind)
    if besides:
        query = query.where(
            BounceEvent.delivery_id.not_in(
                ofs.where(Delivery.mailing_id == mailing_id, BounceEvent.kind == besides)
            )
        )
    found = connection.scalar(select(func.count(distinct(query.subquery().c.delivery_id))))
    return int(found or 0)
