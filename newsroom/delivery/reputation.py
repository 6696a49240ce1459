"""What came back from a mailing — sent, failed, deferred, bounces, complaints, unsubscribes by
method — as counts and rates beside the thresholds mailbox providers and relays publish, from
what newsroom records anyway: the relay's answers (the deliveries' statuses), bounce reports and
5xx answers matched to a delivery through its VERP address (bounces.py), and the ledger's
unsubscribes through the mailing's own links (`consent.from_mailing`). No tracking: no pixel,
no redirected link, nothing per person beyond those records (issue #16, item 5).

    mailing_returns(engine, mailing_id).warnings  # the rates past a published aim or limit
    tallies(engine, [1, 2, 3])                    # many mailings in a few queries (reports.py)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Select, func, select

from newsroom.models import BounceEvent, ConsentEvent, ConsentKind, Delivery, DeliveryStatus
from newsroom.people import consent

D = DeliveryStatus
# How a mailing's own links unsubscribe: the List-Unsubscribe POST (RFC 8058), the footer's
# page (web/app.py) and the mailto address (RFC 2369, bounces.py). Other ways of leaving (the
# preferences page, an administrator) name no mailing.
METHODS = ("one-click", "link", "mailto")


@dataclass(frozen=True)
class Threshold:
    """A published limit on a rate: below AIM is healthy; at LIMIT or above, mail to the
    provider's users is filtered as spam or refused. ADVICE: what usually causes it."""

    aim: float
    limit: float
    source: str
    advice: str = ""


# Gmail's sender guidelines (support.google.com/a/answer/81126, "Requirements for sending 5,000
# or more messages per day") and Yahoo's (senders.yahooinc.com/best-practices): keep the spam
# complaint rate below 0.3 %; Gmail: aim below 0.1 %.
COMPLAINTS = Threshold(
    0.001,
    0.003,
    "Gmail and Yahoo: keep complaints under 0.3 %, aiming below 0.1 %",
    "people who do not remember asking for it; check where the addresses came from, and "
    "that the sender's name is one they know",
)
# Neither publishes a bounce rate. Relays do: Amazon SES (Developer Guide, "Reputation metrics
# messages") puts a sender under review at a 5 % hard bounce rate and may pause it at 10 %,
# and recommends staying below 2 %, as the other large relays do.
BOUNCES = Threshold(
    0.02,
    0.05,
    "relays such as Amazon SES review a sender at 5 % hard bounces: aim below 2 %",
    "old or mistyped addresses; check where the list came from before the next mailing",
)

DELIVERIES, TRIED, SENT = "deliveries", "sent or refused", "sent"


def percent(fraction: float) -> str:
    """0.14285 → '14.29 %' (a rate as the CLI and the HTML report show it)."""
    return f"{fraction * 100:.2f} %"


def share(fraction: float) -> str:
    """A threshold as it is published: 0.003 → '0.3 %', 0.05 → '5 %'."""
    return f"{fraction * 100:g} %"


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

    @property
    def warning(self) -> str:
        """'complaints 14.29 % is over the limit of 0.3 % (Gmail and Yahoo: …)'; "" when ok."""
        if self.verdict in ("", "ok"):
            return ""
        assert self.threshold is not None and self.rate is not None
        threshold = self.threshold
        if self.verdict == "over the limit":
            where = f"over the limit of {share(threshold.limit)}"
        else:
            where = f"above the aim of {share(threshold.aim)} (limit {share(threshold.limit)})"
        return f"{self.name} {percent(self.rate)} is {where} — {threshold.source}"

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
class Tally:
    """What newsroom recorded about one mailing: its deliveries by status; how many deliveries
    bounced hard, only soft, or drew a complaint; how many people left through its links, by
    the method of the first time they did."""

    by_status: Mapping[str, int] = field(default_factory=dict)
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unsubscribes: Mapping[str, int] = field(default_factory=dict)

    def __getitem__(self, status: str) -> int:
        return self.by_status.get(status, 0)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True)
class Returns:
    """A mailing's rates. Sent, failed and deferred are over its deliveries (the audience
    frozen); hard and soft bounces over the messages sent or refused (a 5xx while sending is a
    hard bounce of a message the relay never took); complaints and unsubscribes over those
    sent."""

    sent: Rate
    failed: Rate
    deferred: Rate
    hard_bounces: Rate
    soft_bounces: Rate
    complaints: Rate
    unsubscribes: Rate
    by_method: tuple[Rate, ...]  # the unsubscribes, one Rate per method (METHODS first)

    @property
    def rates(self) -> tuple[Rate, ...]:
        return (
            self.sent,
            self.failed,
            self.deferred,
            self.hard_bounces,
            self.soft_bounces,
            self.complaints,
            self.unsubscribes,
        )

    @property
    def warnings(self) -> list[str]:
        return [rate.warning for rate in self.rates if rate.warning]

    @property
    def hints(self) -> list[str]:
        """What often causes each rate past its aim or limit, once each."""
        return hints([self])

    def as_dict(self) -> dict[str, object]:
        found = {_key(r.name): r.as_dict() for r in self.rates}
        found["unsubscribes"]["by_method"] = {r.name: r.as_dict() for r in self.by_method}
        return dict(found)


def hints(returns: Iterable[Returns]) -> list[str]:
    """'complaints: often people who …', for each rate past its aim or limit in any of RETURNS."""
    crossed = {
        rate.name: rate.threshold.advice
        for found in returns
        for rate in found.rates
        if rate.warning and rate.threshold is not None and rate.threshold.advice
    }
    return [f"{name}: often {advice}" for name, advice in crossed.items()]


def _key(name: str) -> str:
    return name.replace(" ", "_")


def returns(tally: Tally) -> Returns:
    """The rates of TALLY, each over what it is a share of."""
    total, sent = tally.total, tally[D.SENT]
    tried = sent + tally[D.FAILED]
    methods = [*METHODS, *sorted(set(tally.unsubscribes) - set(METHODS))]
    return Returns(
        Rate("sent", sent, total, DELIVERIES),
        Rate("failed", tally[D.FAILED], total, DELIVERIES),
        Rate("deferred", tally[D.DEFERRED], total, DELIVERIES),
        Rate("hard bounces", tally.hard, tried, TRIED, BOUNCES),
        Rate("soft bounces", tally.soft, tried, TRIED),
        Rate("complaints", tally.complaints, sent, SENT, COMPLAINTS),
        Rate("unsubscribes", sum(tally.unsubscribes.values()), sent, SENT),
        tuple(Rate(m, tally.unsubscribes.get(m, 0), sent, SENT) for m in methods),
    )


def mailing_returns(engine: Engine, mailing_id: int) -> Returns:
    """Each count is of deliveries (people), not of reports: three reports about one message
    are one bounce. An erased person's bounce records go with them, and their ledger events no
    longer name them, so their returns are no longer counted."""
    return returns(tallies(engine, [mailing_id])[mailing_id])


CHUNK = 500  # mailing ids per IN (...): well inside SQLite's and PostgreSQL's parameter limits


def tallies(engine: Engine, mailing_ids: Iterable[int]) -> dict[int, Tally]:
    """The tally of each of MAILING_IDS, in four queries whatever their number (chunked)."""
    ids = list(dict.fromkeys(mailing_ids))
    statuses: dict[int, dict[str, int]] = {i: {} for i in ids}
    kinds: dict[int, dict[int | None, set[str]]] = {i: {} for i in ids}  # mailing, delivery
    with engine.connect() as connection:
        for part in _chunks(ids):
            for mailing_id, status, n in connection.execute(
                select(Delivery.mailing_id, Delivery.status, func.count())
                .where(Delivery.mailing_id.in_(part))
                .group_by(Delivery.mailing_id, Delivery.status)
            ):
                statuses[mailing_id][status] = n
            for mailing_id, delivery_id, kind in connection.execute(_bounces(part)):
                kinds[mailing_id].setdefault(delivery_id, set()).add(kind)
        left = _unsubscribes(connection, ids)
    return {i: _tally(statuses[i], kinds[i].values(), left.get(i, {})) for i in ids}


def _bounces(mailing_ids: Sequence[int]) -> Select[int, int | None, str]:
    """(mailing, delivery, kind) of the bounce events about MAILING_IDS' deliveries. Written
    as IN (…) with the mailing looked up by primary key, not as a join: bounce_events has no
    index on delivery_id, and SQLite, given the join, walked a mailing's deliveries and
    scanned the events for each (1.6 s for one mailing of 2,000 in bench/bench_report.py)."""
    mailing = select(Delivery.mailing_id).where(Delivery.id == BounceEvent.delivery_id)
    theirs = select(Delivery.id).where(Delivery.mailing_id.in_(mailing_ids))
    return (
        select(mailing.scalar_subquery(), BounceEvent.delivery_id, BounceEvent.kind)
        .where(BounceEvent.delivery_id.in_(theirs))
        .distinct()
    )


def _tally(statuses: dict[str, int], kinds: Iterable[set[str]], left: dict[str, int]) -> Tally:
    """A delivery with a soft and a hard bounce counts as hard (it was tried again, then lost)."""
    found = list(kinds)
    return Tally(
        statuses,
        hard=sum("hard" in k for k in found),
        soft=sum("soft" in k and "hard" not in k for k in found),
        complaints=sum("complaint" in k for k in found),
        unsubscribes=left,
    )


def _unsubscribes(connection: Connection, ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per mailing, the people who left through its links, by the method they first used
    (one person leaving two lists, or twice, is one unsubscribe)."""
    if not ids:
        return {}
    wanted = set(ids)
    # One mailing: its own marker; several: every event marked with a mailing, sorted here.
    marked = consent.came_from(ids[0]) if len(ids) == 1 else consent.came_from_a_mailing()
    rows = connection.execute(
        select(ConsentEvent.detail, ConsentEvent.subscriber_id, ConsentEvent.method)
        .where(ConsentEvent.kind == ConsentKind.UNSUBSCRIBED, marked)
        .where(ConsentEvent.subscriber_id.is_not(None))
        .order_by(ConsentEvent.at, ConsentEvent.id)
    )
    seen: set[tuple[int, int | None]] = set()
    found: dict[int, dict[str, int]] = {}
    for detail, subscriber_id, method in rows:
        mailing_id = consent.mailing_of(detail)
        if mailing_id not in wanted or (mailing_id, subscriber_id) in seen:
            continue
        assert mailing_id is not None
        seen.add((mailing_id, subscriber_id))
        by_method = found.setdefault(mailing_id, {})
        by_method[method] = by_method.get(method, 0) + 1
    return found


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
