"""Imports on SQLite, each in a fresh process (issue #15, item 5): a 100,000-row plain CSV
(`email,name,tags,lists`, --confirmed) beside a 100,000-row Mailchimp audience export (all its
columns, consent evidence kept on every event); a sync of 100,000 with 1 % changed (1,000 gone,
1,000 new); and peak memory (ru_maxrss of the child) at 10,000 against 100,000 rows, which
should barely move: the import streams.

    .venv/bin/python bench/bench_import.py
    .venv/bin/python bench/bench_import.py --before OLD_TREE [--rounds N]  # plain CSV, before vs after

OLD_TREE is a checkout of the code to compare with (`git worktree add /tmp/old COMMIT`): the
same 100,000-row plain CSV is imported by it and by this tree, interleaved, N rounds (2), with
the medians and the CPU ratio of each round (the machine is shared: read the ratios).
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

SIZES = (10_000, 100_000)
TAGS = ["access-needs", "press", "youth", "trade-union", "councillor"]
LISTS = ["all-members", "disability-group", "clp-secretaries"]
MAILCHIMP_HEADER = (
    '"Email Address","First Name","Last Name",Address,"Phone Number",MEMBER_RATING,OPTIN_TIME,'
    "OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,"
    "LAST_CHANGED,LEID,EUID,NOTES,TAGS\r\n"
)


def write_plain(path: Path, rows: int, rng: random.Random) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,tags,lists\n")
        for n in range(rows):
            tags = " ".join(rng.sample(TAGS, rng.randint(0, 2)))
            lists = " ".join(rng.sample(LISTS[1:], rng.randint(0, 2)))
            out.write(f"person{n}@example.org,Person {n},{tags},{lists}\n")


def write_mailchimp(path: Path, rows: int, rng: random.Random) -> None:
    """What Mailchimp's audience export writes: BOM, CRLF, quoted cells, tags in quotes."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        out.write(MAILCHIMP_HEADER)
        for n in range(rows):
            tags = ",".join(f'""{t.replace("-", " ").title()}""' for t in rng.sample(TAGS, rng.randint(0, 2)))  # fmt: skip
            ip = f"192.0.2.{n % 250 + 1}"
            out.write(
                f'Person{n}@Example.org,Person,"Number {n}","{n} High Street, Leeds",0113 496 0000,'
                f'{rng.randint(1, 5)},"2021-03-14 09:12:31",{ip},"2021-03-14 09:14:02",{ip},'
                f'53.8,-1.5,0,1,Europe/London,GB,ENG,"2024-01-02 10:00:00",{n},e{n:09x},,"{tags}"\r\n'
            )


def write_sync(path: Path, rows: int, start: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name\n")
        for n in range(start, start + rows):
            out.write(f"member{n}@example.org,Member {n}\n")


def child(site_dir: str, file: str, sync: str) -> None:
    from newsroom.people import imports, lists
    from newsroom.site import Site

    site = Site.open(site_dir)
    lists.sync(site)
    options: dict[str, object] = {"sync": True} if sync == "sync" else {}
    # The code before issue #15 called it import_csv (--before).
    go = getattr(imports, "import_file", None) or imports.import_csv  # type: ignore[attr-defined]
    started, cpu = time.perf_counter(), time.process_time()
    report = go(
        site,
        Path(file),
        list_slugs=["all-members"],
        confirmed=True,
        consent_text="Members who joined before 2026",
        now=datetime.now(UTC),
        **options,
    )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    found = getattr(report, "sync", None)
    changed = (found.added, found.removed) if found else (0, 0)
    print(json.dumps([report.rows, report.subscribed, seconds, cpu, peak_mb, *changed]))


Result = tuple[int, int, float, float, float, int, int]  # rows, subscribed, s, CPU s, MB, +, -


def run(site_dir: Path, file: Path, sync: bool = False, tree: str | None = None) -> Result:
    env = {
        **os.environ,
        **({"PYTHONPATH": tree} if tree else {}),
        "NEWSROOM_SECRET_KEY": "bench",
        "NEWSROOM_DATABASE_URL": f"sqlite:///{site_dir}/newsroom.db",
    }
    if not site_dir.exists():  # by the tree's own code: an older one cannot read today's settings
        init = f"from newsroom import site; site.init(__import__('pathlib').Path({str(site_dir)!r}), 'Bench')"  # fmt: skip
        subprocess.run([sys.executable, "-c", init], env=env, check=True, cwd=site_dir.parent)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(site_dir), str(file), "sync" if sync else "-"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"the import in {site_dir} failed:\n{done.stderr}")
    rows, subscribed, seconds, cpu, peak, added, removed = json.loads(done.stdout)
    return rows, subscribed, seconds, cpu, peak, added, removed


def show(label: str, result: Result) -> None:
    rows, subscribed, seconds, cpu, peak, _, _ = result
    print(
        f"{label:28} {rows:>7} rows: {seconds:6.2f} s ({cpu:6.2f} s CPU), "
        f"{rows / seconds:6.0f} rows/s, {subscribed:>7} subscriptions, peak RSS {peak:5.1f} MB"
    )


def main() -> None:
    rng = random.Random(15)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = {}
        for kind, writer in (("plain CSV", write_plain), ("Mailchimp export", write_mailchimp)):
            for rows in SIZES:
                file = work / f"{kind.split()[0]}-{rows}.csv"
                writer(file, rows, rng)
                results[kind, rows] = run(work / f"site-{kind.split()[0]}-{rows}", file)
                show(f"{kind}, {rows:,}", results[kind, rows])
        big = SIZES[-1]
        write_sync(work / "whole.csv", big, 0)
        run(work / "site-sync", work / "whole.csv")
        write_sync(work / "changed.csv", big, big // 100)  # the first 1 % gone, 1 % new at the end
        synced = run(work / "site-sync", work / "changed.csv", sync=True)
        show(f"sync, {big:,}, 1 % changed", synced)
        print(f"{'':28} {synced[5]:,} added, {synced[6]:,} unsubscribed")
    plain, mailchimp = results["plain CSV", big], results["Mailchimp export", big]
    print(
        f"{big:,} rows: Mailchimp export {mailchimp[2]:.2f} s against plain CSV {plain[2]:.2f} s "
        f"({mailchimp[2] / plain[2]:.2f}x; CPU {mailchimp[3] / plain[3]:.2f}x); sync with 1 % "
        f"changed {synced[2]:.2f} s ({synced[2] / plain[2]:.2f}x; CPU {synced[3] / plain[3]:.2f}x)"
    )
    for kind in ("plain CSV", "Mailchimp export"):
        small, large = results[kind, SIZES[0]], results[kind, big]
        print(
            f"{kind}: 10x the rows, {large[3] / small[3]:.1f}x the CPU time, "
            f"{large[4] / small[4]:.2f}x the peak memory ({small[4]:.1f} MB -> {large[4]:.1f} MB)"
        )


def before_and_after(tree: str, rounds: int) -> None:
    rows = SIZES[-1]
    found: dict[str, list[Result]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_plain(work / "plain.csv", rows, random.Random(15))
        for round_ in range(rounds):
            for label, path in (("before", tree), ("after", str(Path(__file__).parents[1]))):
                result = run(work / f"site-{label}-{round_}", work / "plain.csv", tree=path)
                found[label].append(result)
                show(f"plain CSV, {rows:,}, {label}", result)
    (seconds, cpu), (seconds_, cpu_) = (
        (statistics.median(r[2] for r in found[k]), statistics.median(r[3] for r in found[k]))
        for k in ("before", "after")
    )
    print(
        f"median of {rounds}: before {seconds:.2f} s ({cpu:.2f} s CPU), after {seconds_:.2f} s "
        f"({cpu_:.2f} s CPU): after/before {seconds_ / seconds:.2f}x, CPU {cpu_ / cpu:.2f}x"
    )
    ratios = sorted(a[3] / b[3] for b, a in zip(found["before"], found["after"], strict=True))
    print(f"CPU after/before in each round, sorted: {', '.join(f'{r:.2f}x' for r in ratios)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1:2] == ["--before"]:
        before_and_after(sys.argv[2], int(sys.argv[4]) if sys.argv[3:4] == ["--rounds"] else 2)
    else:
        main()
