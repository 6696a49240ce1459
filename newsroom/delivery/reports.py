"""Mailing reports over time (`newsroom report`): one row per mailing in a period — the last N,
those since a date, those to one list — with its returns (reputation.py), the warnings of the
rates past a published aim or limit, and the series a chart of rates per mailing plots. From
what newsroom records; nothing is tracked (issue #16, item 5).

    made = build(site, Period(last=12), now=now)
    made.rows[-1].returns.complaints.rate; made.series()[0].points; made.warnings
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, select

from newsroom import segments
from newsroom.delivery import reputation
from newsroom.delivery.reputation import Rate, Returns, Threshold
from newsroom.errors import NewsroomError
from newsroom.models import Delivery, Mailing, MailingList
from newsroom.people import lists
from newsroom.site import Site

DEFAULT_LAST = 12  # mailings shown when neither --since nor --last is given


@dataclass(frozen=True)
class Period:
    """Which mailings a report covers: those created on or after SINCE (a date in the site's
    time zone), of those the LAST few, and only those whose expression names LIST_SLUG.
    With neither SINCE nor LAST: the last DEFAULT_LAST."""

    since: date | None = None
    last: int | None = None
    list_slug: str | None = None

    @property
    def keep(self) -> int | None:
        return self.last if self.last or self.since else DEFAULT_LAST

    def heading(self) -> str:
        """'The last 12 mailings', …: the description, as a sentence begins."""
        words = self.describe()
        return words[:1].upper() + words[1:]

    def describe(self) -> str:
        """'the last 12 mailings', 'mailings since 2026-10-01 to disability-group', …"""
        return (f"the last {self.keep} mailings" if self.keep else "mailings") + self.filters()

    def filters(self) -> str:
        """' since 2026-10-01 to disability-group', or ''."""
        since = f" since {self.since.isoformat()}" if self.since else ""
        return since + (f" to {self.list_slug}" if self.list_slug else "")

    def as_dict(self) -> dict[str, object]:
        since = self.since.isoformat() if self.since else None
        return {"since": since, "last": self.keep, "list": self.list_slug}


@dataclass(frozen=True)
class Row:
    """One mailing in a report. CREATED_AT: when its audience was frozen, as `newsroom
    mailings` shows (the senders' own clock stamps each delivery's sent_at)."""

    id: int
    issue_slug: str
    subject: str
    expression: str
    status: str
    created_at: datetime
    returns: Returns

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "issue": self.issue_slug,
            "subject": self.subject,
            "to": self.expression,
            "status": self.status,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "returns": self.returns.as_dict(),
            "warnings": self.returns.warnings,
        }


@dataclass(frozen=True)
class Series:
    """One rate across the report's mailings, oldest first (None: nothing sent to rate), and
    the threshold drawn beside it, if one is published."""

    name: str
    threshold: Threshold | None
    points: list[tuple[Row, float | None]]


# What the charts plot: the two rates with published thresholds, and unsubscribes.
PLOTTED = ("hard_bounces", "complaints", "unsubscribes")


@dataclass(frozen=True)
class Report:
    period: Period
    zone: ZoneInfo
    made_at: datetime
    rows: list[Row] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """'mailing 3 (save-our-socialists): complaints: 0.25 % is above the aim …'."""
        return [
            f"mailing {row.id} ({row.issue_slug}): {warning}"
            for row in self.rows
            for warning in row.returns.warnings
        ]

    @property
    def hints(self) -> list[str]:
        return reputation.hints(row.returns for row in self.rows)

    def series(self) -> list[Series]:
        found = []
        for name in PLOTTED:
            points = [(row, _rate(row, name).rate) for row in self.rows]
            found.append(Series(name.replace("_", " "), _THRESHOLDS.get(name), points))
        return found

    def local(self, moment: datetime) -> datetime:
        """MOMENT in the site's time zone, as dates in a report are shown."""
        return moment.astimezone(self.zone)

    def as_dict(self) -> dict[str, object]:
        return {
            "period": self.period.as_dict(),
            "made_at": self.made_at.isoformat(timespec="seconds"),
            "thresholds": {
                name: {"aim": t.aim, "limit": t.limit, "source": t.source}
                for name, t in _THRESHOLDS.items()
            },
            "mailings": [row.as_dict() for row in self.rows],
            "warnings": self.warnings,
            "hints": self.hints,
        }


def _rate(row: Row, name: str) -> Rate:
    rate = getattr(row.returns, name)
    assert isinstance(rate, Rate)
    return rate


_THRESHOLDS = {"hard_bounces": reputation.BOUNCES, "complaints": reputation.COMPLAINTS}


def build(site: Site, period: Period, *, now: datetime) -> Report:
    """The report of PERIOD as the database holds it at NOW. Mailings with no delivery yet
    (nothing frozen) have nothing to report and are left out."""
    zone = ZoneInfo(site.config.text("site.timezone"))
    engine = site.engine
    # A mailing is dated when its audience was frozen: when it was made for a plain send, when
    # its time came for a scheduled one (`send --at` records it days before).
    frozen = func.coalesce(Mailing.frozen_at, Mailing.created_at)
    query = select(
        Mailing.id, Mailing.issue_slug, Mailing.subject, Mailing.expression, Mailing.status,
        frozen.label("created_at"),
    ).where(exists().where(Delivery.mailing_id == Mailing.id))  # fmt: skip
    if period.since:
        query = query.where(frozen >= datetime.combine(period.since, time(0), zone))
    with engine.connect() as connection:
        if period.list_slug:
            _check_list(site, list(connection.scalars(select(MailingList.slug))), period.list_slug)
        found = connection.execute(query.order_by(frozen, Mailing.id)).all()
    chosen = [m for m in found if _names(m.expression, period.list_slug)]
    if period.keep:
        chosen = chosen[-period.keep :]
    tallied = reputation.tallies(engine, [m.id for m in chosen])
    rows = [
        Row(
            m.id, m.issue_slug, m.subject, m.expression, m.status, m.created_at,
            reputation.returns(tallied[m.id]),
        )
        for m in chosen
    ]  # fmt: skip
    return Report(period, zone, now, rows)


def _names(expression: str, list_slug: str | None) -> bool:
    """Whether EXPRESSION names LIST_SLUG (any expression, without one)."""
    if not list_slug:
        return True
    try:
        return list_slug in segments.named_lists(segments.parse(expression))
    except segments.SegmentError:  # stored when it was valid: a later grammar may differ
        return False


def _check_list(site: Site, slugs: list[str], slug: str) -> None:
    """SLUG is a list the database knows (retired ones too) or lists.toml defines."""
    if slug in slugs:
        return
    known = {*slugs, *lists.read_lists(site.lists_file)}
    if slug not in known:
        raise NewsroomError(f"unknown list {slug!r}: {segments.lists_hint(slug, known)}")
