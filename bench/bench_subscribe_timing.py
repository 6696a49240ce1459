"""Does the subscribe form's answer time tell a stranger what state an address is in?

`newsroom serve` on loopback with a real SMTP server (`newsroom dev-smtp`) beside it. The same
form is posted for addresses in each state — new, pending (asked two days ago, so a new email is
due), pending (asked today: none is due), confirmed, unsubscribed, erased (suppressed) — one
request at a time on one keep-alive connection, the states interleaved in a shuffled order so
drift hits all alike. Printed per state: the median time to the whole answer, and the median of a
`/healthz` sent right after it (work left running after the answer could show there). Then how
often a threshold classifier, trained on half the samples and tested on the other half (two-fold),
tells each state from a new address by one request's time: 50 % is a coin toss.

Run: `.venv/bin/python bench/bench_subscribe_timing.py [--samples 50]`.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from newsroom import site as sites
from newsroom.people import erasure, imports, lists, subscribers
from newsroom.site import Site

HOST = "127.0.0.1"
STATES = ("new", "pending", "pending today", "confirmed", "unsubscribed", "erased")
PAUSE = 0.25  # seconds between samples, so one request's work is over before the next


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with status {process.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on port {port} within 30 s")


def prepare(site_dir: Path, samples: int) -> dict[str, list[str]]:
    """SAMPLES addresses in each state, made through the library as people would have made
    them two days ago (so the one-confirmation-a-day limit has passed), except 'pending today'."""
    site = Site.open(site_dir)
    now = datetime.now(UTC)
    past = now - timedelta(days=2)
    lists.sync(site)
    people = {state: [f"{state.replace(' ', '-')}-{n}@example.org" for n in range(samples)]
              for state in STATES}  # fmt: skip
    members = site_dir / "members.csv"
    settled = people["confirmed"] + people["unsubscribed"] + people["erased"]
    members.write_text("email\n" + "".join(f"{e}\n" for e in settled), encoding="utf-8")
    imports.import_file(
        site, members, list_slugs=["all-members"], confirmed=True, consent_text="bench", now=past
    )
    for email in people["pending"]:
        subscribers.add(site, email, ["all-members"], now=past)
    for email in people["pending today"]:
        subscribers.add(site, email, ["all-members"], now=now - timedelta(hours=1))
    for email in people["unsubscribed"]:
        subscribers.remove(site, email, now=past)
    for email in people["erased"]:
        erasure.erase(site, email, now=past)
    site.close()
    return people


class Connection:
    """One HTTP/1.1 keep-alive connection, spoken to by hand so nothing else is timed."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, method: str, path: str, body: bytes = b"", cookie: str = "") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
        if cookie:
            head += f"Cookie: {cookie}\r\n"
        if body:
            head += "Content-Type: application/x-www-form-urlencoded\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        answer, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        found = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", answer)
        length = int(found.group(1)) if found else 0
        while len(self.buffer) < length:
            self._read()
        body_, self.buffer = self.buffer[:length], self.buffer[length:]
        return answer + b"\r\n\r\n" + body_

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise SystemExit("the server closed the connection")
        self.buffer += data


def measure(port: int, people: dict[str, list[str]]) -> dict[str, tuple[list[float], list[float]]]:
    http = Connection(port)
    home = http.request("GET", "/").decode()
    cookie = re.search(r"(?i)set-cookie: (newsroom_form=[^;]+)", home)
    token = re.search(r'name="form_token" value="([^"]+)"', home)
    assert cookie and token, home[:500]
    order = [(state, email) for state in STATES for email in people[state]]
    random.Random(8).shuffle(order)
    times: dict[str, tuple[list[float], list[float]]] = {s: ([], []) for s in STATES}
    for state, email in order:
        form = {"form_token": token.group(1), "email": email, "name": "Ann", "lists": "all-members"}
        body = urlencode(form).encode()
        started = time.perf_counter()
        answer = http.request("POST", "/subscribe", body, cookie.group(1))
        answered = time.perf_counter()
        http.request("GET", "/healthz")
        probed = time.perf_counter()
        assert answer.startswith(b"HTTP/1.1 200") and b"Check your inbox" in answer, answer[:300]
        times[state][0].append(answered - started)
        times[state][1].append(probed - answered)
        time.sleep(PAUSE)
    return times


def accuracy(one: Sequence[float], other: Sequence[float]) -> float:
    """Two-fold cross-validated accuracy of the best threshold telling ONE from OTHER (balanced,
    so 0.5 is chance): each half picks a threshold and a side, the other half scores it."""
    scores = []
    for fold in (0, 1):
        train = (one[fold::2], other[fold::2])
        test = (one[1 - fold :: 2], other[1 - fold :: 2])
        best, rule = -1.0, (0.0, True)
        for threshold in sorted({*train[0], *train[1]}):
            for below in (True, False):
                score = _balanced(train, threshold, below)
                if score > best:
                    best, rule = score, (threshold, below)
        scores.append(_balanced(test, *rule))
    return sum(scores) / len(scores)


def _balanced(
    samples: tuple[Sequence[float], Sequence[float]], threshold: float, below: bool
) -> float:
    """Mean of the hit rates when 'time <= threshold' (or '>', if not BELOW) means 'ONE'."""
    one, other = samples
    hits_one = sum((t <= threshold) == below for t in one) / len(one)
    hits_other = sum((t <= threshold) != below for t in other) / len(other)
    return (hits_one + hits_other) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=50, help="requests per state")
    samples = parser.parse_args().samples
    with tempfile.TemporaryDirectory() as work:
        site_dir = Path(work) / "site"
        smtp_port, web_port = free_port(), free_port()
        os.environ.update(
            NEWSROOM_SECRET_KEY="bench-secret-key-not-for-production",
            NEWSROOM_SMTP_HOST=HOST,
            NEWSROOM_SMTP_PORT=str(smtp_port),
            NEWSROOM_WEB_SUBSCRIBE_RATE="100000/hour",
        )
        os.environ.pop("NEWSROOM_DATABASE_URL", None)
        sites.init(site_dir, "Bench")
        newsroom = [sys.executable, "-m", "newsroom", "--site", str(site_dir)]
        log = (Path(work) / "servers.log").open("wb")
        smtp = subprocess.Popen(
            [*newsroom, "dev-smtp", "--port", str(smtp_port)], stdout=log, stderr=log
        )
        server = None
        try:
            wait_for_port(smtp_port, smtp, "newsroom dev-smtp")
            people = prepare(site_dir, samples)
            server = subprocess.Popen(
                [*newsroom, "serve", "--port", str(web_port)], stdout=log, stderr=log
            )
            wait_for_port(web_port, server, "newsroom serve")
            times = measure(web_port, people)
        finally:
            for process in (server, smtp):
                if process is not None:
                    process.terminate()
                    process.wait(10)
            log.close()
        mails = len(list((site_dir / "maildir" / "new").iterdir()))
    report(times, samples, mails)


def report(times: dict[str, tuple[list[float], list[float]]], samples: int, mails: int) -> None:
    print(f"POST /subscribe to newsroom serve on {HOST}, {samples} requests per state, shuffled")
    print(f"  {'state':<14} {'answer (ms)':>12} {'healthz after (ms)':>19} {'vs new':>8}")
    new = times["new"][0]
    for state in STATES:
        answer, after = times[state]
        versus = "" if state == "new" else f"{accuracy(answer, new):7.0%}"
        print(
            f"  {state:<14} {statistics.median(answer) * 1000:12.1f} "
            f"{statistics.median(after) * 1000:19.1f} {versus:>8}"
        )
    pairs = [(a, b) for i, a in enumerate(STATES) for b in STATES[i + 1 :]]
    worst = max(pairs, key=lambda p: accuracy(times[p[0]][0], times[p[1]][0]))
    print(
        f"  best classifier of any two states by answer time: {worst[0]} vs {worst[1]}, "
        f"{accuracy(times[worst[0]][0], times[worst[1]][0]):.0%} right (50 % is chance)"
    )
    after_worst = max(pairs, key=lambda p: accuracy(times[p[0]][1], times[p[1]][1]))
    print(
        f"  by the healthz right after: {after_worst[0]} vs {after_worst[1]}, "
        f"{accuracy(times[after_worst[0]][1], times[after_worst[1]][1]):.0%} right"
    )
    print(f"  confirmation emails received by dev-smtp: {mails}")


if __name__ == "__main__":
    main()
