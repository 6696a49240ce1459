"""One batch of an import's rows written: people, their tags, their subscriptions and the
ledger events with the evidence the file had; each row counted once in the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from newsroom.errors import Problem
from newsroom.models import Base, ConsentKind, Subscriber, SubscriberTag, Subscription, utc_once
from newsroom.models import SubscriptionStatus as Status
from newsroom.people import consent, listsync, suppression, welcomes
from newsroom.people.consent import Origin
from newsroom.people.importrows import Row
from newsroom.site import Site


def core(model: type[Base]) -> Table:
    """The model's table: Core inserts skip the ORM's per-row bookkeeping (twice as fast here)."""
    return Base.metadata.tables[model.__tablename__]


@dataclass
class ImportReport:
    """What an import did: every row counted once, as new, updated, unchanged, a duplicate,
    skipped or rejected."""

    file: str
    read_as: str = ""  # the format recognised, the encoding, delimiter or sheet
    dropped: tuple[str, ...] = ()  # columns not kept (data minimisation)
    rows: int = 0
    new: int = 0  # people added
    updated: int = 0  # people already here who got a name, a tag or a subscription
    unchanged: int = 0
    skipped_rows: int = 0
    duplicates: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    rejected: list[Problem] = field(default_factory=list)
    subscribed: int = 0  # subscriptions created or moved to the import's status
    confirmations_sent: int = 0
    dry_run: bool = False
    sync: listsync.SyncReport | None = None
    welcomes: int = 0  # subscriptions confirmed now whose list's welcome issue is owed


def _merged(head: Row, later: list[Row]) -> Row:
    """One address's rows of a batch as one: the first (HEAD), with the LATER rows' name (if it
    has none), tags and lists added."""
    for row in later:
        head.name = head.name or row.name
        head.tags = list(dict.fromkeys([*head.tags, *row.tags]))
        head.lists = list(dict.fromkeys([*head.lists, *row.lists]))
        head.evidence = head.evidence or row.evidence
    return head


@dataclass
class Batch:
    session: Session
    site: Site
    file: str
    list_ids: dict[str, int]
    confirmed: bool
    text_id: int | None
    now: datetime
    report: ImportReport
    origin: Origin
    welcome: bool = False  # confirmed subscriptions owe their list's welcome issue

    def write(self, rows: list[Row]) -> None:
        heads: dict[str, Row] = {}  # each address's first row in the batch
        later: dict[str, list[Row]] = {}  # and its others, for the few that have some
        for row in rows:
            if heads.setdefault(row.email, row) is not row:
                later.setdefault(row.email, []).append(row)
        erased = suppression.suppressed_among(self.session, self.site.config, list(heads))
        earlier = listsync.Seen(self.session).add(
            {e: (head.line, not head.left and e not in erased) for e, head in heads.items()}
        )
        merged: dict[str, Row] = {}
        firsts: set[str] = set()  # addresses this batch has the file's first row of
        for email, head in heads.items():
            again = later.get(email, [])
            seen = earlier.get(email)
            if seen is not None:
                self._duplicates(email, seen[0], [head, *again])
                if not seen[1]:
                    continue
            else:
                self._duplicates(email, head.line, again)
                reason = self._skip_reason(head, email in erased)
                if reason:
                    self.report.skipped.append(Problem(self.file, head.line, reason))
                    self.report.skipped_rows += 1
                    continue
                firsts.add(email)
            merged[email] = _merged(head, again) if again else head
        if merged:
            people, created, changed = self._people(merged)
            changed |= self._tags(merged, people)
            left = self._subscriptions(merged, people, firsts, changed)
            self._count(merged, firsts, people, created, changed, left)

    def _duplicates(self, email: str, first_line: int, rows: list[Row]) -> None:
        message = f"duplicate of line {first_line} ({email}): merged into it"
        self.report.duplicates.extend(Problem(self.file, row.line, message) for row in rows)

    @staticmethod
    def _skip_reason(row: Row, erased: bool) -> str | None:
        if erased:
            return "skipped: this address was erased at the person's request (suppression list)"
        if row.left:
            return f"skipped: not subscribed in the export ({row.left})"
        return None

    def _count(
        self,
        merged: dict[str, Row],
        firsts: set[str],
        people: dict[str, int],
        created: set[str],
        changed: set[int],
        left: set[str],
    ) -> None:
        for email in merged.keys() & firsts:  # a later row of an address counts as a duplicate
            if email in created:
                self.report.new += 1
            elif people[email] in changed:
                self.report.updated += 1
            elif email in left:
                self.report.skipped_rows += 1
            else:
                self.report.unchanged += 1

    def _people(self, merged: dict[str, Row]) -> tuple[dict[str, int], set[str], set[int]]:
        """Everyone's id (adding the new: CREATED), and who got a name they lacked."""
        emails = list(merged)
        found = {
            email: (id_, name)
            for id_, email, name in self.session.execute(
                select(Subscriber.id, Subscriber.email, Subscriber.name).where(
                    Subscriber.email.in_(emails)
                )
            )
        }
        created = {e for e in emails if e not in found}
        new = [  # in the file's order, so ids (and confirmation emails) follow it
            {"email": e, "name": merged[e].name} for e in emails if e in created
        ]
        if new:
            now = utc_once(self.now, self.session.get_bind().dialect)
            self.session.execute(insert(core(Subscriber)).values(created_at=now), new)
        named = {id_: merged[e].name for e, (id_, name) in found.items() if merged[e].name and not name}  # fmt: skip
        if named:
            self.session.execute(
                update(Subscriber), [{"id": id_, "name": name} for id_, name in named.items()]
            )
        rows = self.session.execute(
            select(Subscriber.id, Subscriber.email).where(Subscriber.email.in_(emails))
        )
        return {email: id_ for id_, email in rows}, created, set(named)

    def _tags(self, merged: dict[str, Row], people: dict[str, int]) -> set[int]:
        """Add the tags people do not have yet; returns who got one."""
        wanted = {(people[e], t) for e, row in merged.items() for t in row.tags}
        if not wanted:
            return set()
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
        return {sid for sid, _ in wanted - have}

    def _subscriptions(
        self, merged: dict[str, Row], people: dict[str, int], firsts: set[str], changed: set[int]
    ) -> set[str]:
        """Subscribe everyone to their lists (CHANGED gets who was); returns the addresses of
        people skipped on a list they had left."""
        pairs = {
            (people[e], self.list_ids[s]): merged[e] for e, row in merged.items() for s in row.lists
        }
        existing = self._existing(pairs)
        status = Status.CONFIRMED if self.confirmed else Status.PENDING
        kind = ConsentKind.IMPORTED if self.confirmed else ConsentKind.REQUESTED
        sync = self.report.sync
        new, moved, events, left = [], [], [], set()
        event = consent.event_row(  # the same for every row but its person, list and evidence
            kind,
            subscriber_id=None,
            list_id=None,
            origin=self.origin,
            now=self.now,
            consent_text_id=self.text_id,
            detail=f"from {self.file}",
        )
        del event["at"]  # record_many's at=
        slug_of = {v: k for k, v in self.list_ids.items()}
        for (sid, lid), row in pairs.items():
            current = existing.get((sid, lid))
            if current is None:
                new.append({"subscriber_id": sid, "list_id": lid, "status": status})
                if sync is not None and lid == sync.list_id:
                    sync.note_added(row.email)
            elif current.status == Status.PENDING and self.confirmed:
                moved.append({"id": current.id, "status": status, "updated_at": self.now})
            elif current.status in (Status.CONFIRMED, Status.PENDING):
                continue
            else:
                if row.email in firsts:
                    left.add(row.email)
                    self.report.skipped.append(
                        Problem(
                            self.file,
                            row.line,
                            f"skipped for {slug_of[lid]}: {current.status} on "
                            f"{current.updated_at:%Y-%m-%d} (only the person can subscribe again)",
                        )
                    )
                continue
            changed.add(sid)
            events.append(
                {
                    **event,
                    "subscriber_id": sid,
                    "list_id": lid,
                    "evidence": consent.evidence_json(row.evidence),
                }
            )
        if new:
            now = utc_once(self.now, self.session.get_bind().dialect)
            statement = insert(core(Subscription)).values(created_at=now, updated_at=now)
            self.session.execute(statement, new)
        if moved:
            self.session.execute(update(Subscription), moved)
        consent.record_many(self.session, events, at=self.now)
        self.report.subscribed += len(new) + len(moved)
        if self.welcome and self.confirmed:
            moved_ids = {r["id"] for r in moved}
            owed = [k for k in pairs if k not in existing or existing[k].id in moved_ids]
            self.report.welcomes += welcomes.owe(self.session, self.site, owed, self.now)
        return left

    def _existing(self, pairs: dict[tuple[int, int], Row]) -> dict[tuple[int, int], Any]:
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
