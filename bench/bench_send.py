"""Sending throughput: postfix smtp-source → smtp-sink (the limit), a naive smtplib loop (the floor)
and `newsroom send` end to end (rendering, freezing 2,000 and 20,000 deliveries, database bookkeeping; one
process, one without the per-message journal, two processes, and one process signing every
message with DKIM) to the same smtp-sink; same message size, same number of messages, one run.
Then the cost of the per-message look for unsubscribes, and peak memory of `newsroom send` for
10,000 and 1,000,000 recipients.

    .venv/bin/python bench/bench_send.py [--messages 2000,20000] [--rounds 2] [--skip-memory]
    .venv/bin/python bench/bench_send.py --journal --rounds 6   # the journal's cost alone

Needs postfix's smtp-sink and smtp-source (Debian package postfix). As root this script installs
it with no configuration, so no mail daemon starts:
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402

from newsroom import site as sites  # noqa: E402
from newsroom.database import transaction  # noqa: E402
from newsroom.delivery import outbox  # noqa: E402
from newsroom.delivery.sending import templates  # noqa: E402
from newsroom.mail.messages import DateHeader, Recipient, new_message_id  # noqa: E402
from newsroom.models import (  # noqa: E402
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from newsroom.people import lists  # noqa: E402

SESSIONS = 16
PARAGRAPH = (
    "Members of Parliament have sent statements backing our campaign to get the suspensions of "
    "constituency Labour Party officers lifted. Please share them with your members, and ask "
    "your MP to add their name — “the more voices, the sooner this ends”. "
)


def ensure_postfix() -> None:
    if shutil.which("smtp-sink") and shutil.which("smtp-source"):
        return
    if os.geteuid() != 0:
        sys.exit(__doc__)
    preset = "postfix postfix/main_mailer_type select No configuration\n"
    subprocess.run(["debconf-set-selections"], input=preset, text=True, check=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", "postfix"], env=env, check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    # smtp-sink offers PIPELINING and throws every message away; 256 is its listen backlog.
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "256"])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink
        except OSError:
            time.sleep(0.05)
    sys.exit("smtp-sink did not start")


def make_site(folder: Path, subscribers: int, port: int) -> Path:
    """A site with SUBSCRIBERS confirmed on all-members and an issue of about 32 KB per message."""
    os.environ.update(
        NEWSROOM_DATABASE_URL=f"sqlite:///{folder / 'newsroom.db'}",
        NEWSROOM_SECRET_KEY="bench-secret",
        NEWSROOM_SMTP_PORT=str(port),
        NEWSROOM_SMTP_HOST="127.0.0.1",
        NEWSROOM_SMTP_CONNECTIONS=str(SESSIONS),
        NEWSROOM_SENDING_RATE="1000000/second",
        NEWSROOM_SENDING_BATCH="500",
        NEWSROOM_SITE_BASE_URL="https://news.example.org",
        NEWSROOM_SITE_LOCAL="true",  # a bench site: its mailings go to smtp-sink on loopback
    )
    sites.init(folder, "Bench News")
    site = sites.Site.open(folder)
    lists.sync(site)
    now = utcnow()
    with transaction(site.engine) as session:
        list_id = session.scalar(select(MailingList.id).where(MailingList.slug == "all-members"))
        for start in range(0, subscribers, 50_000):
            rows = [
                {"email": f"p{i}@example.net", "name": f"Person {i}", "created_at": now}
                for i in range(start, min(start + 50_000, subscribers))
            ]
            session.execute(insert(Subscriber), rows)
        ids = session.scalars(select(Subscriber.id)).all()
        for start in range(0, len(ids), 50_000):
            session.execute(
                insert(Subscription),
                [
                    {
                        "subscriber_id": sid,
                        "list_id": list_id,
                        "status": SubscriptionStatus.CONFIRMED,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for sid in ids[start : start + 50_000]
                ],
            )
    body = "\n\n".join(
        f"## Part {i}\n\nDear {{{{first_name|friend}}}}, {PARAGRAPH * 3}" for i in range(11)
    )
    issue = folder / "issues" / "2020-12-24-bench.md"
    issue.write_text(
        f"---\ntitle: Bench bulletin\ndate: 2020-12-24\nto: all-members\nsummary: A bench.\n---\n{body}\n",
        encoding="utf-8",
    )
    site.close()
    return issue


def sample_message(folder: Path) -> bytes:
    site = sites.Site.open(folder)
    planned = outbox.plan(site, "bench")
    key = planned.choose(lambda _only: False)
    template = templates(site.config, "all-members", {key: planned.variants[key]})[key]
    recipient = Recipient(
        "p1@example.net", "Person 1", "https://news.example.org/unsubscribe/" + "x" * 90
    )
    data = template.build(recipient, new_message_id("example.org"), DateHeader().date())
    site.close()
    return data


def limit(port: int, messages: int, size: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["smtp-source", "-s", str(SESSIONS), "-l", str(size), "-m", str(messages),
         "-f", "bounces@example.org", "-t", "p1@example.net", f"127.0.0.1:{port}"],
        check=True,
    )  # fmt: skip
    return messages / (time.perf_counter() - started)


def naive(port: int, messages: int, data: bytes) -> float:
    started = time.perf_counter()
    for i in range(messages):
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("bounces@example.org", [f"p{i}@example.net"], data)
    return messages / (time.perf_counter() - started)


def newsroom_send(
    folder: Path, processes: int, dkim: bool = False, journal: bool = True
) -> tuple[float, int]:
    """`newsroom send ISSUE --yes` as a volunteer runs it; (msgs/s, peak RSS in KB). With DKIM,
    every message is signed (RSA 2048, as `dkim.key_file` would have it); without JOURNAL,
    `sending.journal = false`."""
    rate, rss, _cpu = newsroom_send_cpu(folder, processes, dkim, journal)
    return rate, rss


def newsroom_send_cpu(
    folder: Path, processes: int, dkim: bool = False, journal: bool = True
) -> tuple[float, int, float]:
    """`newsroom_send`, and the CPU seconds the sender process used (user + system): on a
    shared machine this drifts far less than the wall clock does."""
    command = [sys.executable, "-m", "newsroom", "--site", str(folder), "send", "bench", "--yes"]
    env = dict(os.environ, NEWSROOM_SENDING_PROCESSES=str(processes))
    env["NEWSROOM_SENDING_JOURNAL"] = "true" if journal else "false"
    if dkim:
        key = folder / "dkim.pem"
        if not key.exists():
            subprocess.run(
                ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
            )
        env.update(NEWSROOM_DKIM_DOMAIN="example.org", NEWSROOM_DKIM_SELECTOR="news",
                   NEWSROOM_DKIM_KEY_FILE=str(key))  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen([*command, "--again"], stdout=subprocess.PIPE, text=True, env=env)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    output = process.stdout.read() if process.stdout else ""
    if process.stdout:
        process.stdout.close()
    if status != 0:
        sys.exit(f"newsroom send failed: {output}")
    sent = int(output.split(" done: ")[1].split(" sent")[0])
    return sent / elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def memory(port: int, size: int, seconds: float) -> int:
    """Peak RSS (KB) of `newsroom send` for SIZE recipients: rendering, freezing every delivery,
    then sending for SECONDS (or to the end), then Ctrl-C (a clean pause).

    Read from /proc/PID/status (VmHWM) while it runs: getrusage's ru_maxrss would count the
    memory of this script at the fork, which made the site."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site"
        make_site(folder, size, port)
        command = [
            sys.executable,
            "-m",
            "newsroom",
            "--site",
            str(folder),
            "send",
            "bench",
            "--yes",
        ]
        env = dict(os.environ, NEWSROOM_SENDING_PROCESSES="1")
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
        status = Path(f"/proc/{process.pid}/status")
        peak = 0
        started = None
        while process.poll() is None:
            try:
                fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            except (OSError, ValueError):
                break
            if "VmHWM" not in fields:  # exited, not yet reaped
                break
            peak = max(peak, int(fields["VmHWM"].split()[0]))
            if started is None and _frozen(folder):
                started = time.monotonic()
            if started is not None and time.monotonic() - started > seconds:
                process.send_signal(signal.SIGINT)  # a clean pause, as Ctrl-C
                process.wait()
            time.sleep(0.1)
        return peak


def _frozen(folder: Path) -> bool:
    """Whether the mailing exists yet (sending has begun)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(folder / "newsroom.db", timeout=1)) as db:
        try:
            return bool(db.execute("SELECT count(*) FROM mailings").fetchone()[0])
        except sqlite3.Error:
            return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages",
        default="2000,20000",
        help="comma-separated sizes: at 2,000 (a group's list) start-up is most of a send",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only-memory", action="store_true")
    parser.add_argument(
        "--journal", action="store_true", help="only newsroom with and without the journal"
    )
    args = parser.parse_args()
    ensure_postfix()
    port = free_port()
    sink = start_sink(port)
    try:
        if args.journal:
            journal_cost(port, int(args.messages.split(",")[-1]), args.rounds)
            return
        if not args.only_memory:
            for size in (int(n) for n in args.messages.split(",")):
                throughput(port, size, args.rounds)
        if not args.skip_memory:
            small = memory(port, 10_000, 30.0)
            large = memory(port, 1_000_000, 30.0)
            print(
                f"peak memory: 10,000 recipients {small / 1024:.0f} MB, 1,000,000 recipients "
                f"{large / 1024:.0f} MB = {large / small:.2f} ×"
            )
    finally:
        sink.terminate()
        sink.wait()


def throughput(port: int, messages: int, rounds: int) -> None:
    """The limit, the floor and newsroom (1 and 2 processes), interleaved ROUNDS times."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site"
        make_site(folder, messages, port)
        data = sample_message(folder)
        print(
            f"{messages} messages of {len(data):,} bytes, {SESSIONS} sessions, {os.cpu_count()} CPUs"
        )
        names = ("limit", "naive", "newsroom 1", "newsroom 1 no journal", "newsroom 2")
        results: dict[str, list[float]] = {n: [] for n in (*names, "newsroom 1 DKIM")}
        for round_ in range(rounds):  # interleaved: the machine is shared and drifts
            results["limit"].append(limit(port, messages, len(data)))
            results["naive"].append(naive(port, messages, data))
            for processes in (1, 2):
                rate, _rss = newsroom_send(folder, processes)
                results[f"newsroom {processes}"].append(rate)
            results["newsroom 1 no journal"].append(newsroom_send(folder, 1, journal=False)[0])
            results["newsroom 1 DKIM"].append(newsroom_send(folder, 1, dkim=True)[0])
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in results.items())
            )
        watch = look_cost(folder)
    best = {name: statistics.median(values) for name, values in results.items()}
    print("median msgs/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in best.items()))
    for name in ("newsroom 1", "newsroom 2", "newsroom 1 DKIM"):
        rate = best[name]
        print(
            f"{name}: {rate / best['limit']:.2f} × limit, {rate / best['naive']:.2f} × naive loop"
        )
    print(
        f"journal: {best['newsroom 1'] / best['newsroom 1 no journal']:.3f} × the throughput "
        "without it"
    )
    print(
        f"the look for unsubscribes before each message: {watch * 1e6:.1f} µs, "
        f"{watch * best['newsroom 1']:.1%} of a second at newsroom 1's rate"
    )


def journal_cost(port: int, messages: int, rounds: int) -> None:
    """`newsroom send` with and without `sending.journal`, in pairs whose order alternates:
    messages/s, and the sender's CPU time per message; then the journal's own writes alone."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "site"
        make_site(folder, messages, port)
        rates: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(rounds):
            for journal in (True, False) if round_ % 2 == 0 else (False, True):
                rate, _rss, seconds = newsroom_send_cpu(folder, 1, journal=journal)
                rates[journal].append(rate)
                cpu[journal].append(seconds)
            print(
                f"round {round_ + 1}: with journal {rates[True][-1]:,.0f}/s "
                f"({cpu[True][-1]:.2f} s CPU), without {rates[False][-1]:,.0f}/s "
                f"({cpu[False][-1]:.2f} s CPU)"
            )
        ratios = [a / b for a, b in zip(rates[True], rates[False], strict=True)]
        extra = [(a - b) / messages for a, b in zip(cpu[True], cpu[False], strict=True)]
        each = statistics.median(cpu[False]) / messages
        print(
            f"median: with {statistics.median(rates[True]):,.0f}/s, without "
            f"{statistics.median(rates[False]):,.0f}/s; with/without per round "
            + ", ".join(f"{r:.3f}" for r in ratios)
            + f"; median {statistics.median(ratios):.3f}"
        )
        print(
            f"CPU per message, end to end: without the journal {each * 1e6:.0f} µs, the "
            f"journal adds {statistics.median(extra) * 1e6:+.1f} µs (median of the pairs)"
        )
        written = journal_write_cost(folder)
        print(
            f"the journal's two writes per message alone: {written * 1e6:.1f} µs "
            f"= {written / each:.1%} of a message's CPU time end to end"
        )


def journal_write_cost(folder: Path, count: int = 100_000) -> float:
    """Seconds per message of a journal's `handed` and `answered`, and a `settled` per 500."""
    from newsroom.delivery import journal

    written = journal.Journal(folder / "bench-journal", "bench:1:ab", 1)
    try:
        started = time.perf_counter()
        for key in range(count):
            written.handed(key)
            written.answered(key, 250)
            if key % 500 == 499:
                written.settled()
        return (time.perf_counter() - started) / count
    finally:
        written.close()


def look_cost(folder: Path, calls: int = 100_000) -> float:
    """Seconds per `Changes.changed()`, the look a sender takes before each message."""
    from newsroom.delivery.changes import Changes

    site = sites.Site.open(folder)
    changes = Changes(site.engine)
    try:
        started = time.perf_counter()
        for _ in range(calls):
            changes.changed()
        return (time.perf_counter() - started) / calls
    finally:
        changes.close()
        site.close()


if __name__ == "__main__":
    main()
