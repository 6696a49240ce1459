"""`subscribers import --sync --list SLUG`: the file is the whole list now (issue #15, item 3).

Every import keeps the addresses it has read in a temporary table (`Seen`): a duplicate is found
however far apart its two lines are, and Python's memory does not grow with the file. A sync then
asks the database which of the list's people the file does not hold, and unsubscribes them with
ledger events of method `sync` — unless that is more than `subscribe.sync_max_removal` of the
list, which a truncated file would be: then it refuses without `yes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from newsroom.errors import NewsroomError
from newsroom.models import ConsentKind, Subscriber, Subscription
from newsroom.models import SubscriptionStatus as Status
from newsroom.people import consent
from newsroom.people.consent import Origin

SAMPLE = 5  # addresses shown of each change
ACTIVE = (Status.PENDING, Status.CONFIRMED)

# Not in models.Base: it lives for one import, on its connection only (TEMPORARY).
SEEN = Table(
    "newsroom_import_seen",
    MetaData(),
    Column("email", String(320), primary_key=True),
    Column("line", Integer, nullable=False),
    Column("keep", Boolean, nullable=False),  # stays on the list: not skipped, not suppressed
    prefixes=["TEMPORARY"],
)


def create(session: Session) -> None:
    drop(session)  # one an interrupted import left on this pooled connection
    SEEN.create(session.connection())


def drop(session: Session) -> None:
    session.execute(text(f"DROP TABLE IF EXISTS {SEEN.name}"))


@dataclass
class Seen:
    """The addresses an import has read so far, each with its first line."""

    session: Session

    def add(self, rows: dict[str, tuple[int, bool]]) -> dict[str, tuple[int, bool]]:
        """Note ROWS (address -> line, keep); return those already noted, with theirs."""
        if not rows:
            return {}
        found = self.session.execute(
            select(SEEN.c.email, SEEN.c.line, SEEN.c.keep).where(SEEN.c.email.in_(list(rows)))
        )
        earlier = {email: (line, bool(keep)) for email, line, keep in found}
        new = [
            {"email": e, "line": line, "keep": keep}
            for e, (line, keep) in rows.items()
            if e not in earlier
        ]
        if new:
            self.session.execute(insert(SEEN), new)
        return earlier


@dataclass
class SyncReport:
    """What a sync did (or, in a dry run, would do) to its list."""

    slug: str
    list_id: int
    before: int  # active (pending or confirmed) subscriptions before the import
    added: int = 0
    removed: int = 0
    added_sample: list[str] = field(default_factory=list)
    removed_sample: list[str] = field(default_factory=list)
    needs_yes: bool = False  # more than the setting allows: refused unless --yes

    def note_added(self, email: str) -> None:
        self.added += 1
        if len(self.added_sample) < SAMPLE:
            self.added_sample.append(email)

    @property
    def kept(self) -> int:
        return self.before - self.removed


def start(session: Session, slug: str, list_id: int) -> SyncReport:
    before = session.scalar(
        select(func.count()).where(Subscription.list_id == list_id, Subscription.status.in_(ACTIVE))
    )
    return SyncReport(slug, list_id, before or 0)


def _missing(list_id: int) -> Select[int, int, str]:
    """The list's active subscriptions whose address the file does not keep."""
    kept = exists().where(SEEN.c.email == Subscriber.email, SEEN.c.keep.is_(True))
    return (
        select(Subscription.id, Subscription.subscriber_id, Subscriber.email)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscription.list_id == list_id, Subscription.status.in_(ACTIVE), ~kept)
    )


def finish(
    session: Session,
    report: SyncReport,
    *,
    file: str,
    origin: Origin,
    now: datetime,
    max_removal: float,
    yes: bool,
    dry_run: bool,
) -> None:
    """Unsubscribe from the list everyone the file left out, or refuse (NewsroomError, which
    rolls the whole import back) when that is more than MAX_REMOVAL of it and not YES."""
    missing = _missing(report.list_id).subquery()
    report.removed = session.scalar(select(func.count()).select_from(missing)) or 0
    report.removed_sample = list(
        session.scalars(select(missing.c.email).order_by(missing.c.email).limit(SAMPLE))
    )
    report.needs_yes = report.removed > max_removal * report.before
    if report.needs_yes and not yes and not dry_run:
        share = report.removed / report.before
        raise NewsroomError(
            f"{file}: nothing imported: the sync would unsubscribe {report.removed} of the "
            f"{report.before} people on {report.slug} ({share:.0%}), more than "
            f"subscribe.sync_max_removal ({max_removal:.0%}) allows. Is {file} the whole list? "
            "See who with --dry-run; add --yes if it is"
        )
    if not report.removed:
        return
    consent.record_each(
        session,
        select(missing.c.subscriber_id),
        ConsentKind.UNSUBSCRIBED,
        list_id=report.list_id,
        origin=origin,
        now=now,
        detail=f"not in {file} (sync)",
    )
    session.execute(
        update(Subscription)
        .where(Subscription.id.in_(select(missing.c.id)))
        .values(status=Status.UNSUBSCRIBED, updated_at=now)
    )
