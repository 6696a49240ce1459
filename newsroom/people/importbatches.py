"""One batch of an import's rows written: people, their tags, their subscriptions and the
ledger events with the evidence the file had; each row counted once in the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from newsroom.errors import Problem
from newsroom.models import Base, ConsentKind, Subscriber, SubscriberTag, Subscription
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


def _merged(group: list[Row]) -> Row:
    """One address's rows of a batch as one: the first, with the others' name (if it has none),
    tags and lists added."""
    head = group[0]
    for row in group[1:]:
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
        groups: dict[str, list[Row]] = {}
        for row in rows:
            groups.setdefault(row.email, []).append(row)
        erased = suppression.suppressed_among(self.session, self.site.config, list(groups))
        earlier = listsync.Seen(self.session).add(
            {e: (g[0].line, not g[0].left and e not in erased) for e, g in groups.items()}
        )
        merged: dict[str, Row] = {}
        firsts: set[str] = set()  # addresses this batch has the file's first row of
        for email, group in groups.items():
            first_line, keep = earlier.get(email, (group[0].line, True))
            for again in group if email in earlier else group[1:]:
                self.report.duplicates.append(
                    Problem(
                        self.file,
                        again.line,
                        f"duplicate of line {first_line} ({email}): merged into it",
                    )
                )
            if email not in earlier:
                reason = self._skip_reason(group[0], email in erased)
                if reason:
                    self.report.skipped.append(Problem(self.file, group[0].line, reason))
                    self.report.skipped_rows += 1
                    continue
                firsts.add(email)
            elif not keep:
                continue
            merged[email] = _merged(group)
        if merged:
            people, created, changed = self._people(merged)
            changed |= self._tags(merged, people)
            left = self._subscriptions(merged, people, firsts, changed)
            self._count(merged, firsts, people, created, changed, left)

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
            {"email": e, "name": merged[e].name, "created_at": self.now}
            for e in emails
            if e in created
        ]
        if new:
            self.session.execute(insert(core(Subscriber)), new)
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
                consent.event_row(
                    kind,
                    subscriber_id=sid,
                    list_id=lid,
                    origin=self.origin,
                    now=self.now,
                    consent_text_id=self.text_id,
                    detail=f"from {self.file}",
                    evidence=row.evidence,
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
