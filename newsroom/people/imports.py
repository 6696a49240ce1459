"""Imports of subscribers from the files groups have, and the CSV export; both streamed in
batches, so memory does not grow with the file.

An import reads the file twice (importrows.py checks each row; spreadsheets.py and
exportformats.py read the file and say which column is which): first to check every row —
nothing is written if any row is wrong, unless skip_invalid — then to write it in batches of
BATCH rows with Core bulk inserts (six times faster than the ORM's add_all here), all in one
transaction: a dry run is the same import, rolled back. The addresses written are noted in a
temporary table (listsync.Seen): a duplicate is found whatever lines lie between, and a sync
(`--sync`) knows who the file leaves out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, and_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsroom.database import sessions, transaction
from newsroom.errors import NewsroomError, Problem, ProblemsError
from newsroom.models import (
    MailingList,
    Subscriber,
    SubscriberTag,
    Subscription,
)
from newsroom.models import SubscriptionStatus as Status
from newsroom.people import confirmation, consent, exportformats, lists, listsync
from newsroom.people.consent import Origin
from newsroom.people.importbatches import Batch, ImportReport
from newsroom.people.importrows import Reading, Row, open_file, read_rows, spreadsheet_safe
from newsroom.site import Site

__all__ = ["ImportReport", "export", "import_file", "spreadsheet_safe", "write_csv"]

BATCH = 1000


COLUMNS = ("email", "name", "tags", "lists")


def write_csv(rows: Iterator[dict[str, str]], out: IO[str]) -> None:
    """ROWS (export's) to OUT as CSV in the import's columns, every cell spreadsheet-safe; the
    JSON export stays exact."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})


@dataclass(frozen=True)
class Options:
    list_slugs: Sequence[str]
    confirmed: bool
    consent_text: str
    now: datetime
    sync: bool
    dry_run: bool
    yes: bool
    welcome: bool = False  # confirmed subscriptions owe their list's welcome issue


def import_file(
    site: Site,
    path: Path,
    *,
    list_slugs: Sequence[str] = (),
    confirmed: bool = False,
    consent_text: str | None = None,
    skip_invalid: bool = False,
    now: datetime,
    send_confirmations: bool = True,
    fmt: str | None = None,
    mapping: Sequence[str] = (),
    sheet: str | None = None,
    sync: bool = False,
    dry_run: bool = False,
    yes: bool = False,
    welcome: bool = False,
) -> ImportReport:
    """Import subscribers from PATH (CSV, .xlsx, a Mailman list; the format recognised by its
    header, or FMT; MAPPING's `COLUMN=field` for other columns).

    With confirmed=True the people already consented (existing members): their subscriptions are
    confirmed and each gets an `imported` event recording CONSENT_TEXT, and the file's evidence
    of their opt-in where it has some. Otherwise subscriptions are pending and each new person
    gets one confirmation email. Nobody who left a list, and no erased address, is put back:
    those rows are skipped and reported. With SYNC the file is the whole of the one list in
    LIST_SLUGS: whoever is on it and not in the file is unsubscribed. DRY_RUN does it all and
    keeps nothing. With WELCOME (and confirmed), each subscription confirmed now owes its list's
    welcome issue (people/welcomes.py).
    """
    _check_options(list_slugs, confirmed, consent_text, skip_invalid, fmt, sync)
    if welcome and not confirmed:
        raise NewsroomError(
            "--welcome is only for --confirmed imports: people imported as pending get their "
            "welcome when they confirm"
        )
    with transaction(site.engine) as session:
        known = set(lists.active_lists(session))
    for slug in list_slugs:
        if slug not in known:
            raise NewsroomError(f"unknown list {slug!r} (lists: {', '.join(sorted(known))})")
    reading = open_file(path, fmt, mapping, sheet)
    report = ImportReport(path.name, reading.describe(), reading.layout.dropped, dry_run=dry_run)
    for item in read_rows(reading, list_slugs, known):
        report.rows += 1
        if isinstance(item, Problem):
            report.rejected.append(item)
    if report.rejected and (sync or not skip_invalid):
        fix = "a sync takes the whole file or nothing" if sync else "or use --skip-invalid to import the others"  # fmt: skip
        summary = f"nothing imported: {len(report.rejected)} row(s) are wrong; fix them, {fix}"
        raise ProblemsError([*report.rejected, Problem(path.name, 0, summary)])
    text = (consent_text or "").strip()
    options = Options(list_slugs, confirmed, text, now, sync, dry_run, yes, welcome)
    _write(site, reading, report, known, options)
    if not confirmed and send_confirmations and not dry_run:
        try:
            report.confirmations_sent = confirmation.send_due(site, now, touched_at=now)
        except NewsroomError as exc:
            raise NewsroomError(f"{path.name}: imported, but {exc}") from None
    return report


def _check_options(
    list_slugs: Sequence[str],
    confirmed: bool,
    consent_text: str | None,
    skip_invalid: bool,
    fmt: str | None,
    sync: bool,
) -> None:
    if confirmed and not (consent_text or "").strip():
        raise NewsroomError('--confirmed needs --consent "TEXT": the consent these people gave')
    if consent_text and not confirmed:
        raise NewsroomError("--consent is only for --confirmed imports")
    if fmt is not None and fmt not in exportformats.FORMATS:
        raise NewsroomError(f"unknown format {fmt!r}; formats: {', '.join(exportformats.FORMATS)}")
    if sync and len(list_slugs) != 1:
        raise NewsroomError("--sync makes the file the whole of one list: give exactly one --list")
    if sync and skip_invalid:
        raise NewsroomError(
            "--sync cannot --skip-invalid: a row left out would unsubscribe that person"
        )


@contextmanager
def _changes(engine: Engine, keep: bool) -> Iterator[Session]:
    """One transaction for the whole write, committed if KEEP, else rolled back (a dry run), with
    the import's temporary table made first and dropped after."""
    session = sessions(engine)()
    try:
        listsync.create(session)
        yield session
        if keep:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        try:
            listsync.drop(session)
            session.commit()  # the drop alone
        except SQLAlchemyError:  # the connection failed already: that error is on its way
            session.rollback()
        session.close()


def _write(
    site: Site, reading: Reading, report: ImportReport, known: set[str], options: Options
) -> None:
    label, now = reading.source.label, options.now
    origin = Origin("import", "sync" if options.sync else "admin")
    with _changes(site.engine, keep=not options.dry_run) as session:
        ids = {slug: row.id for slug, row in lists.active_lists(session).items()}
        text_id = (
            consent.consent_text(session, options.consent_text, f"import {now:%Y-%m-%d}").id
            if options.confirmed
            else None
        )
        if options.sync:
            slug = options.list_slugs[0]
            report.sync = listsync.start(session, slug, ids[slug])
        writer = Batch(
            session, site, label, ids, options.confirmed, text_id, now, report, origin,
            welcome=options.welcome,
        )  # fmt: skip
        batch: list[Row] = []
        for item in read_rows(reading, options.list_slugs, known):
            if isinstance(item, Row):
                batch.append(item)
            if len(batch) >= BATCH:
                writer.write(batch)
                batch = []
        writer.write(batch)
        if report.sync is not None:
            listsync.finish(
                session,
                report.sync,
                file=label,
                origin=origin,
                now=now,
                max_removal=site.config.number("subscribe.sync_max_removal"),
                yes=options.yes,
                dry_run=options.dry_run,
            )


def export(site: Site, list_slug: str | None = None) -> Iterator[dict[str, str]]:
    """Subscribers with a confirmed subscription (to LIST_SLUG if given), in the import's columns,
    read in batches keyed on the last id (memory stays flat)."""
    with transaction(site.engine) as session:
        list_id = None
        if list_slug is not None:
            found = lists.active_lists(session).get(list_slug)
            if found is None:
                raise NewsroomError(f"unknown list {list_slug!r}")
            list_id = found.id
        last = 0
        while True:
            batch = _export_batch(session, list_id, last)
            if not batch:
                return
            last = int(batch[-1].pop("_id"))
            for row in batch:
                row.pop("_id", None)
            yield from batch


def _export_batch(session: Session, list_id: int | None, after: int) -> list[dict[str, str]]:
    confirmed = select(Subscription.subscriber_id).where(Subscription.status == Status.CONFIRMED)
    if list_id is not None:
        confirmed = confirmed.where(Subscription.list_id == list_id)
    people = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.name)
        .where(Subscriber.id > after, Subscriber.id.in_(confirmed))
        .order_by(Subscriber.id)
        .limit(BATCH)
    ).all()
    if not people:
        return []
    ids = [p.id for p in people]
    tags: dict[int, list[str]] = {}
    for sid, tag in session.execute(
        select(SubscriberTag.subscriber_id, SubscriberTag.tag)
        .where(SubscriberTag.subscriber_id.in_(ids))
        .order_by(SubscriberTag.tag)
    ):
        tags.setdefault(sid, []).append(tag)
    slugs: dict[int, list[str]] = {}
    for sid, slug in session.execute(
        select(Subscription.subscriber_id, MailingList.slug)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(and_(Subscription.subscriber_id.in_(ids), Subscription.status == Status.CONFIRMED))
        .order_by(MailingList.slug)
    ):
        slugs.setdefault(sid, []).append(slug)
    return [
        {
            "_id": str(p.id),
            "email": p.email,
            "name": p.name,
            "tags": " ".join(tags.get(p.id, [])),
            "lists": " ".join(slugs.get(p.id, [])),
        }
        for p in people
    ]
