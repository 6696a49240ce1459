"""Lists: subscribers/lists.toml kept in step with the database, and counts per status.

A list may send as itself (issue #16, item 4): `sender = "Disability Group <dg@example.org>"`
and `reply_to`, checked as `site.sender` is. They are read from lists.toml when a mailing is
made and kept on the mailing (delivery/letterhead.py), never in the lists table.

A list may name a welcome issue (issue #16, item 3): `welcome = "issues/welcome-dg.md"`, sent
once to each person confirmed on it (people/welcomes.py owes it, delivery/welcomes.py sends it).
Only its type is checked here: a welcome issue with mistakes must stop no command and no
confirmation, so `newsroom check` reports it instead (delivery/welcomes.problems).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsroom import settings, textfiles
from newsroom.database import transaction
from newsroom.errors import Problem, ProblemsError
from newsroom.models import MailingList, Subscription, SubscriptionStatus, utcnow
from newsroom.site import Site

SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
RESERVED = {"and", "or", "not", "tag", "all"}  # words of the segment language
KEYS = {
    "name": str,
    "description": str,
    "public": bool,
    "opt_in": str,
    "sender": str,
    "reply_to": str,
    "welcome": str,
}
ROW_KEYS = ("slug", "name", "description", "public", "opt_in")  # what the lists table keeps
OPT_IN = ("double", "single")
ACTIVE = (SubscriptionStatus.PENDING, SubscriptionStatus.CONFIRMED)


@dataclass(frozen=True)
class ListSpec:
    """One list as lists.toml defines it."""

    slug: str
    name: str
    description: str = ""
    public: bool = False
    opt_in: str = "double"
    sender: str = ""  # From: of mailings whose first list this is ("": the site's)
    reply_to: str = ""
    welcome: str = ""  # its welcome issue, relative to the site folder ("": none)
    line: int = field(default=1, compare=False)  # of its sender (or [slug]), for warnings
    welcome_line: int = field(default=1, compare=False)

    def row(self) -> dict[str, Any]:
        """The values the lists table keeps."""
        return {key: getattr(self, key) for key in ROW_KEYS}


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)


def read_lists(path: Path) -> dict[str, ListSpec]:
    """Parse and check lists.toml; every problem is reported as FILE:LINE at once."""
    label = f"{path.parent.name}/{path.name}"
    if not path.is_file():
        raise ProblemsError([Problem(label, 0, "no such file: run `newsroom init` to write one")])
    text = textfiles.read(path, label, settings.MAX_FILE_BYTES)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = settings.toml_error(exc, text)
        raise ProblemsError([Problem(label, line, message)]) from None
    problems: list[Problem] = []
    specs: dict[str, ListSpec] = {}
    for slug, table in data.items():
        spec = _check_list(label, text, slug, table, problems)
        if spec is not None:
            specs[slug] = spec
    if problems:
        raise ProblemsError(problems)
    return specs


def _check_list(
    label: str, text: str, slug: str, table: Any, problems: list[Problem]
) -> ListSpec | None:
    line = settings.toml_line(text, slug, None)
    before = len(problems)
    if not isinstance(table, dict):
        problems.append(Problem(label, line, f"{slug} must be a table: [{slug}] with name = ..."))
        return None
    if not SLUG.fullmatch(slug) or slug in RESERVED:
        problems.append(
            Problem(
                label,
                line,
                f"list slug {slug!r} must be lower-case letters, digits and hyphens "
                f"(and not one of {', '.join(sorted(RESERVED))})",
            )
        )
    problems.extend(settings.key_problems(label, text, slug, table, KEYS))
    if "name" not in table:
        problems.append(Problem(label, line, f'[{slug}] needs a name = "..."'))
    if table.get("opt_in", "double") not in OPT_IN:
        problems.append(
            Problem(
                label,
                settings.toml_line(text, slug, "opt_in"),
                f'[{slug}] opt_in must be "double" or "single"',
            )
        )
    for key in ("sender", "reply_to"):
        problem = address_problem(table.get(key, ""), named=key == "sender")
        if problem:
            where = settings.toml_line(text, slug, key)
            problems.append(Problem(label, where, f"[{slug}] {key}: {problem}"))
    if len(problems) > before:
        return None
    welcome_line = settings.toml_line(text, slug, "welcome" if "welcome" in table else None)
    if "sender" in table:
        line = settings.toml_line(text, slug, "sender")
    return ListSpec(slug, **table, line=line, welcome_line=welcome_line)


def address_problem(value: Any, *, named: bool) -> str:
    """What is wrong with VALUE as a From (NAMED: `Name <a@b.org>`) or Reply-To address, as
    site.sender is read (mail/messages.parse_sender); "" when nothing is (or it is empty)."""
    if not isinstance(value, str) or not value:
        return ""
    if any(c in value for c in "\r\n\0"):
        return "must not contain a line break"  # header injection (RFC 5322 §2.2)
    address = parseaddr(value)[1]
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain:
        example = "Disability Group <disability@your-organisation.org>" if named else "a@b.org"
        return f"{value!r} has no email address (write {example})"
    return ""


def sync(site: Site, now: datetime | None = None) -> SyncReport:
    """Make the database's lists match lists.toml; refuse to drop a list people are on."""
    specs = read_lists(site.lists_file)
    with transaction(site.engine) as session:
        return sync_session(session, specs, site.lists_file, now or utcnow())


def sync_session(
    session: Session, specs: dict[str, ListSpec], path: Path, now: datetime
) -> SyncReport:
    report = SyncReport()
    existing = {row.slug: row for row in session.scalars(select(MailingList))}
    for slug, spec in specs.items():
        row = existing.get(slug)
        if row is None:
            session.add(MailingList(**spec.row()))
            report.added.append(slug)
        elif _differs(row, spec):
            for key, value in spec.row().items():
                setattr(row, key, value)
            row.retired_at = None
            report.changed.append(slug)
    problems = []
    for slug, row in existing.items():
        if slug in specs or row.retired_at is not None:
            continue
        people = _active_count(session, row.id)
        if people:
            problems.append(
                Problem(
                    f"{path.parent.name}/{path.name}",
                    0,
                    f"list {slug!r} was removed but {people} subscription(s) are pending or "
                    f"confirmed: put [{slug}] back, or unsubscribe them first "
                    f"(`newsroom subscribers remove --all --list {slug}`)",
                )
            )
        else:
            # Keep the row: consent events point at it and the ledger is never rewritten.
            row.retired_at = now
            report.retired.append(slug)
    if problems:
        raise ProblemsError(problems)
    session.flush()
    return report


def _differs(row: MailingList, spec: ListSpec) -> bool:
    return row.retired_at is not None or any(
        getattr(row, key) != value for key, value in spec.row().items()
    )


def _active_count(session: Session, list_id: int) -> int:
    query = select(func.count()).where(
        Subscription.list_id == list_id, Subscription.status.in_(ACTIVE)
    )
    return session.scalar(query) or 0


def active_lists(session: Session) -> dict[str, MailingList]:
    """Lists currently defined (not retired), by slug."""
    rows = session.scalars(select(MailingList).where(MailingList.retired_at.is_(None)))
    return {row.slug: row for row in rows}


def counts(session: Session) -> list[tuple[MailingList, dict[str, int]]]:
    """Each current list with its number of subscriptions per status (every status present)."""
    lists = sorted(active_lists(session).values(), key=lambda row: row.slug)
    query = select(Subscription.list_id, Subscription.status, func.count()).group_by(
        Subscription.list_id, Subscription.status
    )
    by_list: dict[int, dict[str, int]] = {}
    for list_id, status, number in session.execute(query):
        by_list.setdefault(list_id, {})[status] = number
    return [
        (row, {s.value: by_list.get(row.id, {}).get(s.value, 0) for s in SubscriptionStatus})
        for row in lists
    ]
