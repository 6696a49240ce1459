"""Resolve segment expressions over 1,000,000 subscriptions on SQLite, against a plain SQL count
of one list's confirmed subscriptions measured in the same run."""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select

from newsroom import site as sites
from newsroom.database import transaction
from newsroom.models import Base, Subscription
from newsroom.people import lists, selection

PEOPLE = 400_000  # about 2.5 subscriptions each: 1,000,000 subscriptions
EXPRESSIONS = (
    "all-members",
    "all-members and not clp-secretaries",
    "disability-group or tag:access-needs",
    "(all-members or disability-group) and not (tag:press or clp-secretaries)",
)
NOW = datetime(2026, 1, 5, tzinfo=UTC)


def fill(site: sites.Site, rng: random.Random) -> int:
    tables = Base.metadata.tables
    with transaction(site.engine) as session:
        ids = [row.id for row in lists.active_lists(session).values()]
        for start in range(0, PEOPLE, 50_000):
            people = range(start + 1, min(start + 50_000, PEOPLE) + 1)
            session.execute(
                insert(tables["subscribers"]),
                [
                    {"id": n, "email": f"p{n}@example.org", "name": "", "created_at": NOW}
                    for n in people
                ],
            )
            subs, tags = [], []
            for n in people:
                for list_id in ids:
                    if rng.random() < 0.83:
                        status = (
                            "confirmed"
                            if rng.random() < 0.85
                            else rng.choice(["pending", "unsubscribed", "bounced"])
                        )
                        subs.append(
                            {
                                "subscriber_id": n,
                                "list_id": list_id,
                                "status": status,
                                "created_at": NOW,
                                "updated_at": NOW,
                            }
                        )
                if rng.random() < 0.1:
                    tags.append({"subscriber_id": n, "tag": rng.choice(["access-needs", "press"])})
            session.execute(insert(tables["subscriptions"]), subs)
            session.execute(insert(tables["subscriber_tags"]), tags)
        return session.scalar(select(func.count()).select_from(Subscription)) or 0


def timed(function: object, repeat: int = 5) -> float:
    assert callable(function)
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "site"
        os.environ.update(
            {
                "NEWSROOM_SECRET_KEY": "bench",
                "NEWSROOM_DATABASE_URL": f"sqlite:///{root}/newsroom.db",
            }
        )
        sites.init(root, "Bench")
        site = sites.Site.open(root)
        lists.sync(site, NOW)
        started = time.perf_counter()
        total = fill(site, random.Random(1))
        print(
            f"{total:,} subscriptions of {PEOPLE:,} subscribers written in {time.perf_counter() - started:.1f} s"
        )
        with transaction(site.engine) as session:
            all_members = lists.active_lists(session)["all-members"].id
            reference = select(func.count()).where(
                Subscription.list_id == all_members, Subscription.status == "confirmed"
            )
            base = timed(lambda: session.scalar(reference))
            print(
                f"reference: plain SQL count of all-members' confirmed subscriptions: {base * 1000:7.1f} ms"
            )
            for expression in EXPRESSIONS:
                segment = selection.resolve(session, expression)
                count = segment.count(session)
                took = timed(
                    lambda s=segment: selection.resolve(session, s.expression).count(session)
                )
                fetch = timed(lambda s=segment: session.execute(s.select()).all(), repeat=3)
                print(
                    f"{expression!r}: {count:,} match; resolve+count {took * 1000:7.1f} ms "
                    f"({took / base:4.1f}x reference), fetch all {fetch * 1000:7.1f} ms"
                )
        site.close()


if __name__ == "__main__":
    main()
