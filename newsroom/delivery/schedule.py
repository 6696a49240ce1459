"""Scheduled mailings (`newsroom send ISSUE --at TIME`, issue #16): recorded, moved, and frozen
by a worker when they fall due.

A scheduled mailing is a `mailings` row with status `scheduled`, its time, the issue's file and
the audience expression, and nothing else: no variants, no deliveries. When it is due a worker
re-reads and re-checks the issue (dispatch.py) and freezes it here: one transaction takes it
from `scheduled` to `sending` and writes its variants and deliveries. Two workers never both
freeze one: the transaction's UPDATE … WHERE status = 'scheduled' matches for one of them only
(SQLite: one writer at a time; PostgreSQL: FOR UPDATE SKIP LOCKED, so the other passes it by
instead of waiting), and a freeze that fails leaves it `scheduled`, all or nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, case, select, update

from newsroom.database import transaction
from newsroom.delivery import mailings
from newsroom.delivery.letterhead import Letterhead
from newsroom.delivery.mailings import Addressee, Content, Created, Selected
from newsroom.delivery.senders import is_sqlite
from newsroom.errors import NewsroomError
from newsroom.models import Mailing, MailingStatus
from newsroom.zones import ZoneError, skipped
from newsroom.zones import zone as named_zone

S = MailingStatus
# `YYYY-MM-DD HH:MM [ZONE]` (or ISO 8601's `T` between them); ZONE is an offset such as +01:00,
# Z or UTC, or a tz database name. Seconds are left out: nobody schedules a bulletin to them.
AT = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2})(?: ?([+-]\d{2}:?\d{2}|Z)| +(\S+))?")
MAX_AHEAD = timedelta(days=366 * 2)  # a time further off is a typo in the year


def parse_at(text: str, site_zone: str) -> datetime:
    """`--at TEXT` as an aware instant, in SITE_ZONE unless TEXT names an offset or a zone.
    Raises NewsroomError with the words a volunteer sees."""
    text = text.strip()
    match = AT.fullmatch(text)
    if match is None:
        raise NewsroomError(
            f'--at "{text[:60]}": write the date and time as YYYY-MM-DD HH:MM, such as '
            f'"2026-12-05 09:00" (in {site_zone}), or with an offset or a time zone: '
            '"2026-12-05 09:00 +01:00", "2026-12-05 09:00 Europe/Paris"'
        )
    day, clock, offset, name = match.groups()
    try:
        zone = named_zone(offset or name) if offset or name else ZoneInfo(site_zone)
    except ZoneError as exc:
        raise NewsroomError(f'--at "{text}": {exc}') from None
    try:
        moment = datetime.fromisoformat(f"{day}T{clock.zfill(5)}").replace(tzinfo=zone)
    except ValueError:
        raise NewsroomError(
            f'--at "{text}": no such date or time (the hours run from 00:00 to 23:59)'
        ) from None
    if isinstance(zone, ZoneInfo) and skipped(moment):
        raise NewsroomError(
            f'--at "{text}": {day} {clock} does not exist in {zone.key} (the clocks go forward '
            "then): choose another time"
        )
    # In the hour that comes twice when the clocks go back, the first is meant.
    return moment.astimezone(UTC)


def shown(moment: datetime, site_zone: str) -> str:
    """MOMENT as a volunteer reads it: '2026-12-05 09:00 GMT', in the site's time zone."""
    return moment.astimezone(ZoneInfo(site_zone)).strftime("%Y-%m-%d %H:%M %Z")


def wall(moment: datetime, site_zone: str) -> str:
    """MOMENT as `--at` takes it back: '2026-12-05 09:00', in the site's time zone."""
    return moment.astimezone(ZoneInfo(site_zone)).strftime("%Y-%m-%d %H:%M")


def check_time(at: datetime, now: datetime, site_zone: str) -> None:
    """Refuse a time in the past, or one so far ahead that it must be a typo."""
    if at < now:
        raise NewsroomError(
            f"--at {shown(at, site_zone)} is in the past (it is {shown(now, site_zone)} now): "
            "give a later time, or leave out --at to send now"
        )
    if at - now > MAX_AHEAD:
        raise NewsroomError(
            f"--at {shown(at, site_zone)} is more than two years away: is the year right?"
        )


@dataclass(frozen=True)
class Recorded:
    """A mailing scheduled, or moved (MOVED_FROM: the time it had before)."""

    mailing_id: int
    at: datetime
    moved_from: datetime | None = None


def record(
    engine: Engine,
    *,
    issue_slug: str,
    issue_path: str,
    subject: str,
    expression: str,
    at: datetime,
    again: bool,
    early: bool,
    now: datetime,
    sender: str = "",
) -> Recorded:
    """Schedule ISSUE_PATH to EXPRESSION (as given: saved segments are expanded when it is
    frozen) at AT, from SENDER (`--from` as typed; "" for the default); if it is scheduled
    already (or was, and was paused before it could be frozen), move that mailing instead of
    making a second."""
    values = {"scheduled_at": at, "again": again, "early": early, "issue_slug": issue_slug,
              "subject": subject, "status": S.SCHEDULED, "paused_reason": "",
              "sender": sender}  # fmt: skip
    with transaction(engine) as session:
        waiting = session.scalars(
            select(Mailing)
            .where(Mailing.issue_path == issue_path, Mailing.expression == expression)
            .where(Mailing.frozen_at.is_(None), Mailing.status.in_((S.SCHEDULED, S.PAUSED)))
            .order_by(Mailing.id)
            .limit(1)
        ).first()
        if waiting is None:
            mailing = Mailing(issue_path=issue_path, expression=expression, created_at=now,
                              frozen_at=None, **values)  # fmt: skip
            session.add(mailing)
            session.flush()
            return Recorded(mailing.id, at)
        before = waiting.scheduled_at
        moved = (
            session.connection()
            .execute(
                update(Mailing)
                .where(Mailing.id == waiting.id, Mailing.frozen_at.is_(None))
                .where(Mailing.status.in_((S.SCHEDULED, S.PAUSED)))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            .rowcount
        )
        if not moved:  # a worker froze it in the meantime
            raise NewsroomError(
                f"mailing {waiting.id} fell due and is being sent: it can no longer be moved"
            )
        return Recorded(waiting.id, at, before)


def scheduled(engine: Engine, issue_slug: str) -> list[Mailing]:
    """The mailings of ISSUE_SLUG waiting for their time."""
    with transaction(engine) as session:
        found = list(
            session.scalars(
                select(Mailing)
                .where(Mailing.issue_slug == issue_slug, Mailing.status == S.SCHEDULED)
                .order_by(Mailing.scheduled_at, Mailing.id)
            )
        )
        for mailing in found:
            session.expunge(mailing)
        return found


def due(engine: Engine, now: datetime) -> list[Mailing]:
    """The scheduled mailings whose time has come, the earliest first."""
    with transaction(engine) as session:
        found = list(
            session.scalars(
                select(Mailing)
                .where(Mailing.status == S.SCHEDULED, Mailing.scheduled_at <= now)
                .order_by(Mailing.scheduled_at, Mailing.id)
            )
        )
        for mailing in found:
            session.expunge(mailing)
        return found


def freeze(
    engine: Engine,
    mailing_id: int,
    *,
    issue_slug: str,
    subject: str,
    expression: str,
    letterhead: Letterhead,
    variants: Mapping[str, Content],
    addressees: Callable[[], Iterable[Addressee] | Selected],
    now: datetime,
) -> Created | None:
    """Take scheduled MAILING_ID to `sending` with its variants and audience, in one
    transaction; None when it is no longer scheduled (another worker froze it, or it was
    cancelled or moved out of reach). Raises NewsroomError, leaving it scheduled, when nobody
    is left to send to. EXPRESSION (saved segments expanded now) and LETTERHEAD become the
    mailing's, as `mailings.create` keeps them; the expression as given stays beside it."""
    claimable = select(Mailing.id).where(Mailing.id == mailing_id, Mailing.status == S.SCHEDULED)
    if not is_sqlite(engine):
        claimable = claimable.with_for_update(skip_locked=True)
    claim = (
        update(Mailing)
        .where(Mailing.id.in_(claimable.scalar_subquery()))
        .values(
            status=S.SENDING,
            frozen_at=now,
            issue_slug=issue_slug,
            subject=subject,
            expression=expression,
            sender=letterhead.sender,
            reply_to=letterhead.reply_to,
            list_id=letterhead.list_id,
            expression_given=_given(expression),
        )
        .execution_options(synchronize_session=False)
    )
    with transaction(engine) as session:
        if not session.connection().execute(claim).rowcount:
            return None
        mailing = session.get_one(Mailing, mailing_id)
        count, had = mailings.fill(session, mailing, variants, addressees(), again=mailing.again)
        return Created(mailing_id, count, had)


def _given(expression: str) -> Any:
    """The expression as it was given (the scheduled row's), kept only where it differs."""
    # SET's right-hand sides read the row as it was before the UPDATE (SQL standard).
    return case((Mailing.expression == expression, ""), else_=Mailing.expression)


def hold(engine: Engine, mailing_id: int, reason: str) -> bool:
    """Pause scheduled MAILING_ID, unfrozen, with REASON (the issue no longer passes its
    checks, or nobody is left to send it to); returns whether it was still scheduled."""
    return mailings.set_status(engine, mailing_id, S.PAUSED, reason, only_from=(S.SCHEDULED,))
