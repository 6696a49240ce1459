"""Start-up: what a `newsroom` command costs before it does anything, side by side in one run
with a click "hello" CLI in the same environment (the reference) and `python -c pass` (the floor).

Measures `newsroom --help`, `newsroom --version`, `newsroom check ISSUE`, `newsroom lists`, and
the time from `newsroom send ISSUE --yes` starting to the first message arriving at a local SMTP
sink (aiosmtpd in this process), next to the rendering that send needs (reading and rendering the
issue in a fresh interpreter, libraries included). Rounds are interleaved: the machine is shared.

    .venv/bin/python bench/bench_startup.py [--rounds 7] [--recipients 20]

Targets (issue #13): `--help` at most 2 × the click hello; the first message at most 0.5 s after
the rendering it needs. `--cli-only` runs only the commands (for a tree without the library's
current layout, such as the one before issue #13: `PYTHONPATH=OLD_TREE`).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

PYTHON = sys.executable
ISSUE_FILE = "2020-12-24-bench.md"
ISSUE = """---
title: Start-up bulletin
date: 2020-12-24
to: all-members
summary: A bench.
---
Dear {{first_name|friend}}, the suspensions must be lifted.

::: action Write to your MP
url: https://www.writetothem.com/
button: Write now

Ask them to sign the statement.
:::
"""
HELLO = '''import click


@click.command()
def hello() -> None:
    """Say hello."""
    click.echo("hello")


hello()
'''
RENDER = """import sys, time
started = time.perf_counter()
from newsroom.delivery import outbox
from newsroom import site
opened = site.Site.open(sys.argv[1])
outbox.plan(opened, "bench")
print(time.perf_counter() - started)
"""


class FirstMessage:
    """An SMTP handler that remembers when each message arrived (time.perf_counter)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrivals.append(time.perf_counter())
        self.arrived.set()
        return "250 OK"

    def reset(self) -> None:
        self.arrivals.clear()
        self.arrived.clear()


def newsroom(folder: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "newsroom", "--site", str(folder), *args]


def run(command: list[str], env: dict[str, str]) -> float:
    """Seconds COMMAND took, start to exit; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return elapsed


def make_site(folder: Path, recipients: int, env: dict[str, str]) -> None:
    """A site made as a volunteer makes one: init, a confirmed import, one issue."""
    subprocess.run([PYTHON, "-m", "newsroom", "init", str(folder)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    people = folder / "people.csv"
    rows = [f"p{i}@campaign-bench.org,Person {i}" for i in range(recipients)]
    people.write_text("email,name\n" + "\n".join(rows) + "\n", encoding="utf-8")
    run(newsroom(folder, "subscribers", "import", str(people), "--list", "all-members",
                 "--confirmed", "--consent", "Bench consent", "--no-email"), env)  # fmt: skip
    (folder / "issues" / ISSUE_FILE).write_text(ISSUE, encoding="utf-8")


def first_message(folder: Path, env: dict[str, str], sink: FirstMessage) -> tuple[float, float]:
    """(seconds to the first message at the sink, seconds to the end) of `newsroom send`."""
    sink.reset()
    command = newsroom(folder, "send", "bench", "--yes", "--again")
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate()
    ended = time.perf_counter()
    if process.returncode != 0 or not sink.arrivals:
        sys.exit(f"newsroom send failed:\n{out.decode()}{err.decode()}")
    return sink.arrivals[0] - started, ended - started


def render(folder: Path, env: dict[str, str]) -> float:
    """Seconds a fresh interpreter takes to read and render the issue, imports included."""
    done = subprocess.run([PYTHON, "-c", RENDER, str(folder)], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--recipients", type=int, default=20)
    parser.add_argument("--cli-only", action="store_true", help="no in-process rendering")
    args = parser.parse_args()
    sink = FirstMessage()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = int(free.getsockname()[1])
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            measure(Path(tmp), port, sink, args)
    finally:
        controller.stop()


def measure(tmp: Path, port: int, sink: FirstMessage, args: argparse.Namespace) -> None:
    env = dict(
        os.environ,
        NEWSROOM_SECRET_KEY="bench-secret",
        NEWSROOM_SITE_BASE_URL="https://news.campaign-bench.org",
        NEWSROOM_SITE_SENDER="Bench <news@campaign-bench.org>",
        NEWSROOM_SENDING_BOUNCE_ADDRESS="bounces@campaign-bench.org",
        NEWSROOM_SMTP_HOST="127.0.0.1",
        NEWSROOM_SMTP_PORT=str(port),
        NEWSROOM_SENDING_RATE="1000000/second",
    )
    env.pop("NEWSROOM_DATABASE_URL", None)
    folder = tmp / "site"
    make_site(folder, args.recipients, env)
    hello = tmp / "hello.py"
    hello.write_text(HELLO, encoding="utf-8")
    commands = {
        "python -c pass": [PYTHON, "-c", "pass"],
        "click hello --help": [PYTHON, str(hello), "--help"],
        "newsroom --help": newsroom(folder, "--help"),
        "newsroom --version": newsroom(folder, "--version"),
        "newsroom check ISSUE": newsroom(folder, "check", str(folder / "issues" / ISSUE_FILE)),
        "newsroom lists": newsroom(folder, "lists"),
    }
    results: dict[str, list[float]] = {name: [] for name in commands}
    results.update({"send: first message": [], "send: whole": [], "rendering": []})
    for round_ in range(args.rounds):
        for name, command in commands.items():
            results[name].append(run(command, env))
        first, whole = first_message(folder, env, sink)
        results["send: first message"].append(first)
        results["send: whole"].append(whole)
        if not args.cli_only:
            results["rendering"].append(render(folder, env))
        print(
            f"round {round_ + 1}: "
            + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in results.items() if v)
        )
    report({name: statistics.median(values) for name, values in results.items() if values}, args)


def report(median: dict[str, float], args: argparse.Namespace) -> None:
    hello = median["click hello --help"]
    print(f"median of {args.rounds} rounds, {args.recipients} recipients, {os.cpu_count()} CPUs:")
    for name, seconds in median.items():
        print(f"  {name:24} {seconds:6.3f} s  {seconds / hello:5.2f} × click hello")
    print(
        f"newsroom --help: {median['newsroom --help'] / hello:.2f} × the click hello (target ≤ 2)"
    )
    if "rendering" in median:
        beyond = median["send: first message"] - median["rendering"]
        print(
            f"send: first message {median['send: first message']:.3f} s, "
            f"{beyond:.3f} s beyond the rendering it needs ({median['rendering']:.3f} s; "
            "target ≤ 0.5 s)"
        )


if __name__ == "__main__":
    main()
