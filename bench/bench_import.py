"""Import 10,000 and 100,000 CSV rows (--confirmed) on SQLite, each in a fresh process: time, rows
per second and peak RSS. The import streams, so peak memory should barely move with file size."""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

SIZES = (10_000, 100_000)
TAGS = ["access-needs", "press", "youth", "trade-union", "councillor"]
LISTS = ["all-members", "disability-group", "clp-secretaries"]


def write_csv(path: Path, rows: int, rng: random.Random) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,tags,lists\n")
        for n in range(rows):
            tags = " ".join(rng.sample(TAGS, rng.randint(0, 2)))
            lists = " ".join(rng.sample(LISTS[1:], rng.randint(0, 2)))
            out.write(f"person{n}@example.org,Person {n},{tags},{lists}\n")


def child(site_dir: str, csv: str) -> None:
    from newsroom.people import imports, lists
    from newsroom.site import Site

    site = Site.open(site_dir)
    lists.sync(site)
    started = time.perf_counter()
    report = imports.import_file(
        site,
        Path(csv),
        list_slugs=["all-members"],
        confirmed=True,
        consent_text="Members who joined before 2026",
        now=datetime.now(UTC),
    )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{report.rows} {report.subscribed} {seconds:.3f} {peak_mb:.1f}")


def run(rows: int, work: Path) -> tuple[float, float]:
    from newsroom import site as sites

    site_dir = work / f"site-{rows}"
    csv = work / f"people-{rows}.csv"
    write_csv(csv, rows, random.Random(rows))
    env = {
        **os.environ,
        "NEWSROOM_SECRET_KEY": "bench",
        "NEWSROOM_DATABASE_URL": f"sqlite:///{site_dir}/newsroom.db",
    }
    os.environ.update(env)
    sites.init(site_dir, "Bench")
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(site_dir), str(csv)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    read, subscribed, seconds, peak = done.stdout.split()
    print(
        f"{rows:>7} rows: {float(seconds):6.2f} s, {int(read) / float(seconds):8.0f} rows/s, "
        f"{subscribed} subscriptions, peak RSS {float(peak):6.1f} MB"
    )
    return float(seconds), float(peak)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (small_s, small_mb), (big_s, big_mb) = (run(n, Path(tmp)) for n in SIZES)
    print(
        f"10x the rows: {big_s / small_s:.1f}x the time, {big_mb / small_mb:.2f}x the peak memory"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main()
