"""`newsroom report` over 50 mailings of 2,000 deliveries each (100,000 deliveries, 3 % hard
bounces, 1 % complaints and unsubscribes, beside a ledger of 100,000 import events), against
asking `mailings show`'s question (`reputation.mailing_returns`) once per mailing, in the same
run. SQLite in a temporary folder; PostgreSQL too when NEWSROOM_TEST_POSTGRES_URL is set (its
database must be empty). Run: .venv/bin/python bench/bench_report.py"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from newsroom import site as sites
from newsroom.database import transaction
from newsroom.delivery import reports, reputation
from newsroom.models import Base, ConsentKind
from newsroom.people import consent
from newsroom.people.consent import Origin

MAILINGS, EACH = 50, 2000
NOW = datetime(2026, 11, 23, tzinfo=UTC)


def fill(site: sites.Site) -> None:
    tables = Base.metadata.tables
    with transaction(site.engine) as session:
        session.execute(
            insert(tables["subscribers"]),
            [
                {"id": n, "email": f"p{n}@example.org", "created_at": NOW}
                for n in range(1, EACH + 1)
            ],
        )
        consent.record_many(session, [
            consent.event_row(ConsentKind.IMPORTED, subscriber_id=1 + n % EACH, list_id=None,
                              origin=Origin("import", "admin"), now=NOW)
            for n in range(100_000)
        ])  # fmt: skip
        for m in range(1, MAILINGS + 1):
            created = NOW - timedelta(days=7 * (MAILINGS - m))
            session.execute(
                insert(tables["mailings"]),
                [{"id": m, "issue_slug": f"issue-{m}", "issue_path": f"issues/{m}.md",
                  "subject": "S", "expression": "all-members", "status": "done",
                  "paused_reason": "", "created_at": created}],
            )  # fmt: skip
            base = (m - 1) * EACH
            session.execute(
                insert(tables["deliveries"]),
                [{"id": base + n, "mailing_id": m, "subscriber_id": n, "email": f"p{n}@example.org",
                  "variant_key": "email", "status": "failed" if n % 100 == 0 else "sent"}
                 for n in range(1, EACH + 1)],
            )  # fmt: skip
            session.execute(
                insert(tables["bounce_events"]),
                [{"subscriber_id": n, "delivery_id": base + n, "at": created,
                  "kind": "complaint" if n % 100 == 7 else "hard"}
                 for n in range(1, EACH + 1) if n % 100 in (0, 7, 13, 29)],
            )  # fmt: skip
            consent.record_many(session, [
                consent.event_row(ConsentKind.UNSUBSCRIBED, subscriber_id=n, list_id=None,
                                  origin=Origin("web", "one-click"), now=created,
                                  detail=consent.from_mailing(m))
                for n in range(1, EACH + 1) if n % 100 == 42
            ])  # fmt: skip


def timed(function: object, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        function()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(url: str, root: Path) -> None:
    os.environ["NEWSROOM_DATABASE_URL"] = url
    os.environ.setdefault("NEWSROOM_SECRET_KEY", "bench-secret")
    sites.init(root, "Bench")
    site = sites.Site.open(root)
    fill(site)
    period = reports.Period(last=MAILINGS)
    made = reports.build(site, period, now=NOW)
    one = [reputation.mailing_returns(site.engine, m).as_dict() for m in range(1, MAILINGS + 1)]
    assert [r.returns.as_dict() for r in made.rows] == one  # the same numbers either way
    report = timed(lambda: reports.build(site, period, now=NOW))
    each = timed(lambda: [reputation.mailing_returns(site.engine, m) for m in range(1, 51)])
    name = site.engine.dialect.name
    print(f"{name:10}  report of {MAILINGS} mailings {report * 1000:7.1f} ms   "
          f"{MAILINGS} x mailing_returns {each * 1000:7.1f} ms   ratio {report / each:.2f}")  # fmt: skip
    site.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        measure(f"sqlite:///{Path(work) / 'newsroom.db'}", Path(work) / "site")
        if os.environ.get("NEWSROOM_TEST_POSTGRES_URL"):
            measure(os.environ["NEWSROOM_TEST_POSTGRES_URL"], Path(work) / "pg-site")


if __name__ == "__main__":
    main()
