"""CSV import and export of subscribers, streamed in batches: memory does not grow with the file.

An import reads the file twice: first to check every row (nothing is written if any row is wrong,
unless skip_invalid), then to write it in batches of BATCH rows with Core bulk inserts
(LAB-NOTES: ORM add_all is six times slower). Duplicate addresses merge, within a batch in memory
and across batches through the database.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Table, and_, insert, select, update
from sqlalchemy.orm import Session

from newsroom.database import transaction
from newsroom.errors import NewsroomError, Problem, ProblemsError
from newsroom.models import (
    Base,
    ConsentKind,
    MailingList,
    Subscriber,
    SubscriberTag,
    Subscription,
)
from newsroom.models import SubscriptionStatus as Status
from newsroom.people import confirmation, consent, lists, suppression, welcomes
from newsroom.people.consent import Origin
from newsroom.people.subscribers import (
    InvalidInput,
    clean_name,
    clean_tags,
    normalise_email,
)
from newsroom.site import Site

BATCH = 1000


def core(model: type[Base]) -> Table:
    """The model's table: Core inserts skip the ORM's per-row bookkeeping (twice as fast here)."""
    return Base.metadata.tables[model.__tablename__]


COLUMNS = ("email", "name", "tags", "lists")
# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection"): a
# name typed into the public form such as `=cmd|' /C calc'!A0` would run when the export opens.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """CELL as a spreadsheet takes it as text: a formula's first character gets a single quote
    before it, which spreadsheets hide and which reading the export back takes off again."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def _unquoted(cell: str) -> str:
    """A cell of our own export as it was before spreadsheet_safe (an import reads it back)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def write_csv(rows: Iterator[dict[str, str]], out: IO[str]) -> None:
    """ROWS (export's) to OUT as CSV in the import's columns, every cell spreadsheet-safe; the
    JSON export stays exact."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})


@dataclass
class Row_:
    line: int
    email: str
    name: str
    tags: list[str]
    lists: list[str]


@dataclass
class ImportReport:
    file: str
    rows: int = 0
    new_subscribers: int = 0
    subscribed: int = 0  # subscriptions created or moved to the import's status
    unchanged: int = 0  # subscriptions that were already there
    rejected: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    confirmations_sent: int = 0
    welcomes: int = 0  # subscriptions confirmed now whose list's welcome issue is owed


def read_rows(
    path: Path, default_lists: Sequence[str], known: set[str]
) -> Iterator[Row_ | Problem]:
    """Each data row of the CSV checked: a Row_, or a Problem naming FILE:LINE."""
    label = path.name
    try:
        handle = path.open(encoding="utf-8-sig", newline="")  # -sig: a BOM from Excel is fine
    except OSError as exc:
        raise NewsroomError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle, strict=True)
        line = 1
        try:
            header = _header(label, next(reader, None))
            for record in reader:
                start, line = line + 1, reader.line_num
                if not any(cell.strip() for cell in record):
                    continue
                yield _row(label, start, header, record, default_lists, known)
        except UnicodeDecodeError:
            raise ProblemsError(
                [Problem(label, line + 1, "is not UTF-8 text: save the file as 'CSV UTF-8'")]
            ) from None
        except csv.Error as exc:
            raise ProblemsError([Problem(label, reader.line_num, f"broken CSV: {exc}")]) from None


def _header(label: str, record: list[str] | None) -> list[str]:
    if record is None:
        raise ProblemsError(
            [Problem(label, 1, "the file is empty: it needs a header row (email,name,tags,lists)")]
        )
    names = [cell.strip().lower() for cell in record]
    problems = [
        Problem(label, 1, f"unknown column {name!r}; columns: {', '.join(COLUMNS)}")
        for name in names
        if name not in COLUMNS
    ]
    problems += [
        Problem(label, 1, f"column {n!r} appears twice") for n in set(names) if names.count(n) > 1
    ]
    if "email" not in names:
        problems.append(Problem(label, 1, "no 'email' column: the header row must name one"))
    if problems:
        raise ProblemsError(problems)
    return names


def _row(
    label: str,
    line: int,
    header: list[str],
    record: list[str],
    default_lists: Sequence[str],
    known: set[str],
) -> Row_ | Problem:
    if len(record) != len(header):
        return Problem(
            label,
            line,
            f'{len(record)} fields but the header has {len(header)} (a comma inside a name needs "quotes")',
        )
    cells = {name: _unquoted(cell) for name, cell in zip(header, record, strict=True)}
    try:
        email = normalise_email(cells["email"])
        name = clean_name(cells.get("name"))
        tags = clean_tags(cells.get("tags", "").split())
    except InvalidInput as exc:
        return Problem(label, line, str(exc))
    slugs = list(dict.fromkeys([*default_lists, *cells.get("lists", "").split()]))
    unknown = [slug for slug in slugs if slug not in known]
    if unknown:
        return Problem(
            label, line, f"unknown list {unknown[0]!r} (lists: {', '.join(sorted(known))})"
        )
    if not slugs:
        return Problem(label, line, "no list: give --list SLUG or fill the 'lists' column")
    return Row_(line, email, name, tags, slugs)


def import_csv(
    site: Site,
    path: Path,
    *,
    list_slugs: Sequence[str] = (),
    confirmed: bool = False,
    consent_text: str | None = None,
    skip_invalid: bool = False,
    now: datetime,
    send_confirmations: bool = True,
    welcome: bool = False,
) -> ImportReport:
    """Import subscribers from CSV (columns email, name, tags, lists).

    With confirmed=True the people already consented (existing members): their subscriptions are
    confirmed and each gets an `imported` event recording CONSENT_TEXT. Otherwise subscriptions are
    pending and each new person gets one confirmation email. Nobody who left a list, and no erased
    address, is put back: those rows are skipped and reported. With WELCOME (and confirmed),
    each subscription confirmed now owes its list's welcome issue (people/welcomes.py).
    """
    if confirmed and not (consent_text or "").strip():
        raise NewsroomError('--confirmed needs --consent "TEXT": the consent these people gave')
    if consent_text and not confirmed:
        raise NewsroomError("--consent is only for --confirmed imports")
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
    report = ImportReport(path.name)
    for item in read_rows(path, list_slugs, known):
        report.rows += 1
        if isinstance(item, Problem):
            report.rejected.append(item)
    if report.rejected and not skip_invalid:
        summary = Problem(
            path.name,
            0,
            f"nothing imported: {len(report.rejected)} row(s) are wrong; fix them, "
            "or use --skip-invalid to import the others",
        )
        raise ProblemsError([*report.rejected, summary])
    text = (consent_text or "").strip()
    _write(site, path, report, list_slugs, known, confirmed, text, now, welcome)
    if not confirmed and send_confirmations:
        try:
            report.confirmations_sent = confirmation.send_due(site, now, touched_at=now)
        except NewsroomError as exc:
            raise NewsroomError(f"{path.name}: imported, but {exc}") from None
    return report


def _write(
    site: Site,
    path: Path,
    report: ImportReport,
    list_slugs: Sequence[str],
    known: set[str],
    confirmed: bool,
    consent_text: str,
    now: datetime,
    welcome: bool = False,
) -> None:
    with transaction(site.engine) as session:
        ids = {slug: row.id for slug, row in lists.active_lists(session).items()}
        text_id = (
            consent.consent_text(session, consent_text, f"import {now:%Y-%m-%d}").id
            if confirmed
            else None
        )
        writer = _Batch(session, site, path.name, ids, confirmed, text_id, now, report, welcome)
        batch: list[Row_] = []
        for item in read_rows(path, list_slugs, known):
            if isinstance(item, Row_):
                batch.append(item)
            if len(batch) >= BATCH:
                writer.write(batch)
                batch = []
        writer.write(batch)


@dataclass
class _Batch:
    session: Session
    site: Site
    file: str
    list_ids: dict[str, int]
    confirmed: bool
    text_id: int | None
    now: datetime
    report: ImportReport
    welcome: bool = False  # confirmed subscriptions owe their list's welcome issue

    def write(self, rows: list[Row_]) -> None:
        merged = self._merge(rows)
        if not merged:
            return
        erased = suppression.suppressed_among(self.session, self.site.config, list(merged))
        for email in erased:
            row = merged.pop(email)
            self.report.skipped.append(
                Problem(
                    self.file,
                    row.line,
                    "skipped: this address was erased at the person's request (suppression list)",
                )
            )
        people = self._people(merged)
        self._tags(merged, people)
        self._subscriptions(merged, people)

    def _merge(self, rows: list[Row_]) -> dict[str, Row_]:
        merged: dict[str, Row_] = {}
        for row in rows:
            seen = merged.get(row.email)
            if seen is None:
                merged[row.email] = row
                continue
            seen.name = seen.name or row.name
            seen.tags = list(dict.fromkeys([*seen.tags, *row.tags]))
            seen.lists = list(dict.fromkeys([*seen.lists, *row.lists]))
        return merged

    def _people(self, merged: dict[str, Row_]) -> dict[str, int]:
        emails = list(merged)
        found = {
            email: (id_, name)
            for id_, email, name in self.session.execute(
                select(Subscriber.id, Subscriber.email, Subscriber.name).where(
                    Subscriber.email.in_(emails)
                )
            )
        }
        new = [
            {"email": e, "name": merged[e].name, "created_at": self.now}
            for e in emails
            if e not in found
        ]
        if new:
            self.session.execute(insert(core(Subscriber)), new)
            self.report.new_subscribers += len(new)
        named = [
            {"id": id_, "name": merged[e].name}
            for e, (id_, name) in found.items()
            if merged[e].name and not name
        ]
        if named:
            self.session.execute(update(Subscriber), named)
        rows = self.session.execute(
            select(Subscriber.id, Subscriber.email).where(Subscriber.email.in_(emails))
        )
        return {email: id_ for id_, email in rows}

    def _tags(self, merged: dict[str, Row_], people: dict[str, int]) -> None:
        wanted = {(people[e], t) for e, row in merged.items() for t in row.tags}
        if not wanted:
            return
        have = {
            (sid, tag)
            for sid, tag in self.session.execute(
                select(SubscriberTag.subscriber_id, SubscriberTag.tag).where(
                    SubscriberTag.subscriber_id.in_({sid for sid, _ in wanted})
                )
            )
        }
        new = [{"subscriber_id": sid, "tag": tag} for sid, tag in wanted - have]
        if new:
            self.session.execute(insert(core(SubscriberTag)), new)

    def _subscriptions(self, merged: dict[str, Row_], people: dict[str, int]) -> None:
        pairs = {
            (people[e], self.list_ids[s]): merged[e] for e, row in merged.items() for s in row.lists
        }
        existing = self._existing(pairs)
        status = Status.CONFIRMED if self.confirmed else Status.PENDING
        kind = ConsentKind.IMPORTED if self.confirmed else ConsentKind.REQUESTED
        origin = Origin("import", "admin")
        new, moved, events = [], [], []
        slug_of = {v: k for k, v in self.list_ids.items()}
        for (sid, lid), row in pairs.items():
            current = existing.get((sid, lid))
            if current is None:
                new.append(
                    {
                        "subscriber_id": sid,
                        "list_id": lid,
                        "status": status,
                        "created_at": self.now,
                        "updated_at": self.now,
                    }
                )
            elif current.status == Status.PENDING and self.confirmed:
                moved.append({"id": current.id, "status": status, "updated_at": self.now})
            elif current.status in (Status.CONFIRMED, Status.PENDING):
                self.report.unchanged += 1
                continue
            else:
                self.report.skipped.append(
                    Problem(
                        self.file,
                        row.line,
                        f"skipped for {slug_of[lid]}: {current.status} on "
                        f"{current.updated_at:%Y-%m-%d} (only the person can subscribe again)",
                    )
                )
                continue
            events.append(
                consent.event_row(
                    kind,
                    subscriber_id=sid,
                    list_id=lid,
                    origin=origin,
                    now=self.now,
                    consent_text_id=self.text_id,
                    detail=f"from {self.file}",
                )
            )
        if new:
            self.session.execute(insert(core(Subscription)), new)
        if moved:
            self.session.execute(update(Subscription), moved)
        consent.record_many(self.session, events)
        self.report.subscribed += len(new) + len(moved)
        if self.welcome and self.confirmed:
            moved_ids = {r["id"] for r in moved}
            owed = [k for k in pairs if k not in existing or existing[k].id in moved_ids]
            self.report.welcomes += welcomes.owe(self.session, self.site, owed, self.now)

    def _existing(self, pairs: dict[tuple[int, int], Row_]) -> dict[tuple[int, int], Any]:
        if not pairs:
            return {}
        query = select(
            Subscription.id,
            Subscription.subscriber_id,
            Subscription.list_id,
            Subscription.status,
            Subscription.updated_at,
        ).where(Subscription.subscriber_id.in_({sid for sid, _ in pairs}))
        return {(r.subscriber_id, r.list_id): r for r in self.session.execute(query)}


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
