"""`newsroom db copy` (newsroom/dbcopy.py): a SQLite site of N subscribers copied into a new
PostgreSQL database on 127.0.0.1, for two sizes side by side in one run, each in a process of its
own, with the time and the peak memory (ru_maxrss) before and after the copy: memory must stay
flat as N grows (issue #17, item 5). Run: .venv/bin/python bench/bench_dbcopy.py [N ...]"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ADMIN = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def one(n: int, root: Path) -> str:
    """Make a site of N subscribers in ROOT, copy it; one line of figures."""
    from sqlalchemy import create_engine, insert, text

    os.environ["NEWSROOM_SECRET_KEY"] = "bench-" * 8
    os.environ["NEWSROOM_DATABASE_URL"] = f"sqlite:///{root}/newsroom.db"
    from newsroom import database, dbcopy
    from newsroom import site as sites
    from newsroom.models import Subscriber, utcnow

    sites.init(root, "Bench")
    engine = database.connect(os.environ["NEWSROOM_DATABASE_URL"])
    now = utcnow()
    with engine.begin() as conn:
        for start in range(0, n, 10_000):
            rows = range(start, min(n, start + 10_000))
            people = [
                {"email": f"p{i}@example.net", "name": f"P {i}", "created_at": now} for i in rows
            ]
            conn.execute(insert(Subscriber), people)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    admin = create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    name = f"newsroom_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        started = time.perf_counter()
        dbcopy.copy(engine, ADMIN.rsplit("/", 1)[0] + f"/{name}")
        took = time.perf_counter() - started
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return f"{n:>9,} subscribers  {took:6.1f} s  {n / took:>8,.0f} rows/s  peak {before} MB -> {after} MB"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        with tempfile.TemporaryDirectory() as folder:
            print(one(int(sys.argv[2]), Path(folder) / "site"))
        return
    for n in [int(a) for a in sys.argv[1:]] or [20_000, 200_000]:
        subprocess.run([sys.executable, __file__, "--one", str(n)], check=True)


if __name__ == "__main__":
    main()
