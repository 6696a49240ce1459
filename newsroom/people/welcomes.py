"""Welcomes owed (issue #16, item 3): someone confirmed on a list that names a welcome issue in
lists.toml is owed that issue, once.

A welcome is owed in the transaction that confirms the subscription — the confirmation link's
POST, a single opt-in request on the web, `subscribers add --welcome`, `subscribers import
--confirmed --welcome` — as a `welcomes` row, and nothing more: no issue is read, nothing is
rendered or sent, so a welcome issue with mistakes (or a relay that is down) blocks nobody's
confirmation. delivery/welcomes.py later makes each owed welcome a delivery and sends it.

The row's unique (list, subscriber) pair is the rule that nobody is welcomed to a list twice:
confirming again, importing again or any two processes at once add nothing (ON CONFLICT DO
NOTHING). Erasure deletes the row with the subscriber: someone erased who comes back is new.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsroom.errors import ProblemsError
from newsroom.models import MailingList, Welcome, WelcomeStatus
from newsroom.people import lists
from newsroom.site import Site

log = logging.getLogger(__name__)


def welcoming(site: Site) -> dict[str, lists.ListSpec]:
    """The lists of lists.toml that name a welcome issue, by slug. A lists.toml with mistakes
    welcomes nobody (and says so in the log) rather than stopping a confirmation."""
    try:
        specs = lists.read_lists(site.lists_file)
    except ProblemsError as exc:
        log.warning("welcome: none owed, subscribers/lists.toml has mistakes: %s", exc)
        return {}
    return {slug: spec for slug, spec in specs.items() if spec.welcome}


def owe(session: Session, site: Site, pairs: Iterable[tuple[int, int]], now: datetime) -> int:
    """Owe a welcome for each (subscriber id, list id) of PAIRS, just confirmed, whose list
    names a welcome issue, unless one is owed or given already. Returns how many of PAIRS
    were on such a list (whether or not they were owed one before)."""
    slugs = set(welcoming(site))
    if not slugs:
        return 0
    ids = set(session.scalars(select(MailingList.id).where(MailingList.slug.in_(slugs))))
    waiting = {"confirmed_at": now, "status": WelcomeStatus.WAITING, "reason": ""}
    rows = [
        {"subscriber_id": person, "list_id": list_id, **waiting}
        for person, list_id in dict.fromkeys(pairs)
        if list_id in ids
    ]
    if rows:
        session.execute(_insert_new(session), rows)
    return len(rows)


def _insert_new(session: Session) -> Any:
    """INSERT … ON CONFLICT (list, subscriber) DO NOTHING, in the dialect's own words."""
    table = Welcome.__table__
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    statement = dialect.insert(table)
    return statement.on_conflict_do_nothing(index_elements=["list_id", "subscriber_id"])


def issue_paths(site: Site) -> set[Path]:
    """The welcome issues lists.toml names, resolved: emails only, never in the archive."""
    return {(site.root / spec.welcome).resolve() for spec in welcoming(site).values()}


def counts(session: Session) -> dict[int, dict[str, int]]:
    """Welcomes per list id and status (waiting, queued, dropped)."""
    query = select(Welcome.list_id, Welcome.status, func.count()).group_by(
        Welcome.list_id, Welcome.status
    )
    found: dict[int, dict[str, int]] = {}
    for list_id, status, number in session.execute(query):
        found.setdefault(list_id, {})[status] = number
    return found
