"""Scale, side by side (issue #17 item 4): freezing a mailing of SIZE deliveries on SQLite and on
PostgreSQL (and the part of it that reads the audience); three `newsroom worker`s against one on
PostgreSQL sending MESSAGES messages to postfix's smtp-sink, beside `smtp-source` → `smtp-sink`
(the limit) with the same size and count; peak memory per worker at 10,000 and 1,000,000.

    .venv/bin/python bench/bench_scale.py                        # 1,000,000; 200,000 messages
    .venv/bin/python bench/bench_scale.py --size 10000 --messages 5000 --no-memory   # quick
    .venv/bin/python bench/bench_scale.py --only freeze           # freeze, memory, workers

PostgreSQL: a database of its own, `bench_scale`, made afresh (and dropped) on the server of
--postgres (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres). The subscribers are
made by the database itself (one INSERT … SELECT), not by the import path: bench_import.py
measures that. smtp-sink and smtp-source: the Debian package postfix (see bench_send.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_send import (  # noqa: E402
    PARAGRAPH,
    SESSIONS,
    ensure_postfix,
    free_port,
    limit,
    sample_message,
    start_sink,
)
from sqlalchemy import bindparam, create_engine, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from newsroom import site as sites  # noqa: E402
from newsroom.database import transaction  # noqa: E402
from newsroom.delivery import outbox  # noqa: E402
from newsroom.models import MailingList, UTCDateTime, utcnow  # noqa: E402
from newsroom.people import lists, selection  # noqa: E402

DATABASE = "bench_scale"
ISSUE = "bench"


# --- sites -----------------------------------------------------------------------------------


@contextmanager
def postgres(server: str, name: str = DATABASE) -> Iterator[str]:
    """The URL of a fresh database NAME on SERVER's PostgreSQL, dropped afterwards."""
    url = make_url(server)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")

    def drop() -> None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    drop()
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        drop()
        admin.dispose()


def make_site(folder: Path, url: str, size: int, port: int) -> sites.Site:
    """A site on URL with SIZE subscribers confirmed on all-members and an issue of about
    32 KB per message (bench_send.py's)."""
    os.environ.update(
        NEWSROOM_DATABASE_URL=url,
        NEWSROOM_SECRET_KEY="bench-secret",
        NEWSROOM_SMTP_PORT=str(port or 25),
        NEWSROOM_SMTP_HOST="127.0.0.1",
        NEWSROOM_SMTP_CONNECTIONS=str(SESSIONS),
        NEWSROOM_SENDING_RATE="1000000/second",
        NEWSROOM_SENDING_BATCH="500",
        NEWSROOM_SENDING_PROCESSES="1",  # one process per worker: the workers are the question
        NEWSROOM_SITE_BASE_URL="https://news.example.org",
        NEWSROOM_SITE_LOCAL="true",  # a bench site: its mailings go to smtp-sink on loopback
    )
    sites.init(folder, "Bench News")
    site = sites.Site.open(folder)
    lists.sync(site)
    fill(site, size)
    body = "\n\n".join(
        f"## Part {i}\n\nDear {{{{first_name|friend}}}}, {PARAGRAPH * 3}" for i in range(11)
    )
    (folder / "issues" / f"2020-12-24-{ISSUE}.md").write_text(
        f"---\ntitle: Bench bulletin\ndate: 2020-12-24\nto: all-members\nsummary: A bench.\n---\n"
        f"{body}\n",
        encoding="utf-8",
    )
    return site


def fill(site: sites.Site, size: int) -> None:
    """SIZE subscribers p0@example.net … confirmed on all-members, made by the database."""
    sqlite = site.engine.dialect.name == "sqlite"
    numbers = (
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :size) "
        "SELECT i FROM n"
        if sqlite
        else "SELECT i FROM generate_series(0, :size - 1) AS n(i)"
    )
    key = "lower(hex(randomblob(16)))" if sqlite else "md5(i::text)"
    now = bindparam("now", utcnow(), type_=UTCDateTime())
    with site.engine.begin() as connection:
        list_id = connection.scalar(select(MailingList.id).where(MailingList.slug == "all-members"))
        connection.execute(
            text(
                "INSERT INTO subscribers (email, name, created_at, token_key, old_links) "
                f"SELECT 'p' || i || '@example.net', 'Person ' || i, :now, {key}, false "
                f"FROM ({numbers}) AS numbers"
            ).bindparams(now, size=size)
        )
        connection.execute(
            text(
                "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, "
                "updated_at) SELECT id, :list, 'confirmed', :now, :now FROM subscribers"
            ).bindparams(now, list=list_id)
        )
    if not sqlite:
        vacuum(site, "subscribers, subscriptions")


def vacuum(site: sites.Site, tables: str) -> None:
    with site.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM ANALYZE {tables}")


# --- freezing --------------------------------------------------------------------------------


def freeze(site: sites.Site) -> tuple[float, int]:
    """Seconds to freeze a mailing of ISSUE to its whole audience (`outbox.create`, as `newsroom
    send` does after its question), and how many deliveries it made."""
    planned = outbox.plan(site, ISSUE)
    started = time.perf_counter()
    created = outbox.create(site, planned, planned.target, again=True, now=utcnow())
    return time.perf_counter() - started, created.count


def audience_read(site: sites.Site) -> float:
    """Seconds to read the audience alone (the segment's query, every row fetched)."""
    planned = outbox.plan(site, ISSUE)
    started = time.perf_counter()
    with transaction(site.engine) as session:
        segment = selection.resolve(session, planned.target)
        for _ in session.execute(segment.select(), execution_options={"yield_per": 10_000}):
            pass
    return time.perf_counter() - started


def forget_mailings(site: sites.Site) -> None:
    """Delete every mailing (and its deliveries), so each round freezes into the same table."""
    with site.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM deliveries")
        connection.exec_driver_sql("DELETE FROM mailing_variants")
        connection.exec_driver_sql("DELETE FROM mailings")
    if site.engine.dialect.name != "sqlite":
        vacuum(site, "deliveries, mailings")


def freezes(site: sites.Site, rounds: int) -> tuple[list[float], list[float]]:
    """(freeze seconds, audience-read seconds) for ROUNDS rounds, the two interleaved."""
    frozen, read = [], []
    for _ in range(rounds):
        read.append(audience_read(site))
        seconds, _count = freeze(site)
        frozen.append(seconds)
        forget_mailings(site)
    return frozen, read


# --- workers ---------------------------------------------------------------------------------


def workers(folder: Path, count: int, peak: Callable[[int], None] | None = None,
            stop_after: float | None = None) -> float:  # fmt: skip
    """Seconds for COUNT `newsroom worker --once` processes, started together, to send the
    mailing under way; PEAK, when given, is told each worker's VmHWM (KB) as they run, and
    STOP_AFTER seconds of sending end them with SIGTERM (a clean stop)."""
    command = [sys.executable, "-m", "newsroom", "--site", str(folder), "worker", "--once"]
    started = time.perf_counter()
    stopped = False
    running = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(count)
    ]
    while any(p.poll() is None for p in running):
        if peak is not None:
            for process in running:
                peak(_vmhwm(process.pid))
        if stop_after is not None and time.perf_counter() - started > stop_after:
            for process in running:
                process.send_signal(signal.SIGTERM)
            stop_after, stopped = None, True
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    for process in running:
        errors = process.stderr.read().decode() if process.stderr else ""
        if process.returncode != 0 and not stopped:
            sys.exit(f"newsroom worker failed ({process.returncode}): {errors}")
    return elapsed


def _vmhwm(pid: int) -> int:
    """PID's peak resident memory so far (KB), 0 once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sent_count(site: sites.Site) -> int:
    with site.engine.connect() as connection:
        return int(connection.scalar(text("SELECT count(*) FROM deliveries WHERE status = 'sent'")))


def throughput(folder: Path, site: sites.Site, port: int, messages: int, rounds: int) -> None:
    """3 workers, 1 worker and the limit, interleaved ROUNDS times, for MESSAGES messages."""
    size = len(sample_message(folder))
    rates: dict[str, list[float]] = {"limit": [], "1 worker": [], "3 workers": []}
    for round_ in range(rounds):
        rates["limit"].append(limit(port, messages, size))
        for count in (1, 3):
            forget_mailings(site)
            freeze(site)
            seconds = workers(folder, count)
            sent = sent_count(site)
            if sent != messages:
                sys.exit(f"{count} worker(s) sent {sent} of {messages}")
            rates[f"{count} worker{'s' if count > 1 else ''}"].append(messages / seconds)
        print(
            f"  round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items())
        )
    best = {name: statistics.median(values) for name, values in rates.items()}
    print(f"sending {messages:,} messages of {size:,} bytes on PostgreSQL, {os.cpu_count()} CPUs "
          f"(median msgs/s of {rounds} round(s), start-up included):")  # fmt: skip
    print(f"  smtp-source → smtp-sink {best['limit']:8,.0f}/s")
    print(f"  1 worker                {best['1 worker']:8,.0f}/s  "
          f"{best['1 worker'] / best['limit']:.2f} × limit")  # fmt: skip
    print(f"  3 workers               {best['3 workers']:8,.0f}/s  "
          f"{best['3 workers'] / best['limit']:.2f} × limit, "
          f"{best['3 workers'] / best['1 worker']:.2f} × 1 worker")  # fmt: skip


def memory(folder: Path, site: sites.Site, seconds: float) -> int:
    """Peak RSS (KB) of any of three workers sending a freshly frozen mailing for SECONDS."""
    forget_mailings(site)
    freeze(site)
    highest = 0

    def peak(kb: int) -> None:
        nonlocal highest
        highest = max(highest, kb)

    workers(folder, 3, peak, stop_after=seconds)
    return highest


# --- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="subscribers to freeze")
    parser.add_argument("--messages", type=int, default=200_000, help="messages the workers send")
    parser.add_argument("--rounds", type=int, default=2, help="freezes per database")
    parser.add_argument("--send-rounds", type=int, default=1)
    parser.add_argument("--only", choices=("freeze", "send", "memory"), action="append")
    parser.add_argument("--no-memory", action="store_true", help="skip peak memory")
    parser.add_argument("--memory-seconds", type=float, default=20.0)
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    args = parser.parse_args()
    parts = set(args.only or ("freeze", "send", "memory"))
    if args.no_memory:
        parts.discard("memory")
    port = 0
    sink = None
    if parts & {"send", "memory"}:
        ensure_postfix()
        port = free_port()
        sink = start_sink(port)
    try:
        with tempfile.TemporaryDirectory() as work:
            run(Path(work), args, parts, port)
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()


def run(tmp: Path, args: argparse.Namespace, parts: set[str], port: int) -> None:
    peaks: list[int] = []
    if "memory" in parts:
        with postgres(args.postgres, f"{DATABASE}_small") as url:
            site = make_site(tmp / "small", url, 10_000, port)
            peaks.append(memory(tmp / "small", site, args.memory_seconds))
            site.close()
    if parts & {"freeze", "memory"}:
        with postgres(args.postgres) as url:
            results: dict[str, tuple[list[float], list[float]]] = {}
            for name, where in (("SQLite", f"sqlite:///{tmp / 'sqlite.db'}"), ("PostgreSQL", url)):
                if name == "SQLite" and "freeze" not in parts:
                    continue
                started = time.perf_counter()
                site = make_site(tmp / name, where, args.size, port)
                built = time.perf_counter() - started
                if "freeze" in parts:
                    results[name] = freezes(site, args.rounds)
                    frozen, read = results[name]
                    print(f"  {name}: built in {built:.1f} s; freeze "
                          f"{', '.join(f'{s:.1f}' for s in frozen)} s; audience read "
                          f"{', '.join(f'{s:.1f}' for s in read)} s")  # fmt: skip
                if name == "PostgreSQL" and "memory" in parts:
                    peaks.append(memory(tmp / name, site, args.memory_seconds))
                site.close()
        if results:
            report_freezes(args.size, args.rounds, results)
    if peaks:
        print(f"peak RSS per worker (3 workers, {args.memory_seconds:.0f} s of sending): "
              f"10,000 {peaks[0] / 1024:.0f} MB, {args.size:,} {peaks[1] / 1024:.0f} MB "
              f"= {peaks[1] / peaks[0]:.2f} ×")  # fmt: skip
    if "send" in parts:
        with postgres(args.postgres) as url:
            site = make_site(tmp / "send", url, args.messages, port)
            throughput(tmp / "send", site, port, args.messages, args.send_rounds)
            site.close()


def report_freezes(
    size: int, rounds: int, results: dict[str, tuple[list[float], list[float]]]
) -> None:
    print(f"freezing {size:,} deliveries (median of {rounds}):")
    print(f"  {'':12}{'freeze':>10}{'audience read':>16}")
    for name, (frozen, read) in results.items():
        print(f"  {name:12}{statistics.median(frozen):9.1f}s{statistics.median(read):15.1f}s")
    sqlite, pg = (statistics.median(results[n][0]) for n in ("SQLite", "PostgreSQL"))
    print(f"  PostgreSQL / SQLite: {pg / sqlite:.2f} ×")


if __name__ == "__main__":
    main()
