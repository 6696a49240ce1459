"""`make demo`: the whole flow on a throw-away site, each step the command a volunteer would type."""

from __future__ import annotations

import mailbox
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
DEMO = Path(os.environ.get("NEWSROOM_DEMO_DIR", ROOT / "demo-site")).resolve()
console = Console(highlight=False)
ENV: dict[str, str] = {}  # settings the demo gives every step, e.g. the dev-smtp port


def newsroom(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `newsroom ARGS` in the demo site as a volunteer would, showing the command."""
    console.print(f"\n[bold cyan]$ newsroom {' '.join(args)}[/]")
    done = subprocess.run(
        [sys.executable, "-m", "newsroom", *args],
        cwd=DEMO if DEMO.exists() else ROOT,
        text=True,
        capture_output=True,
        env={
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("NEWSROOM_") or k == "NEWSROOM_DATABASE_URL"
            },
            **ENV,
        },
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if check and done.returncode != 0:
        console.print(f"[bold red]demo step failed with exit status {done.returncode}[/]")
        sys.exit(done.returncode)
    return done


def main() -> None:
    console.rule("[bold]newsroom demo")
    shutil.rmtree(DEMO, ignore_errors=True)
    newsroom("init", str(DEMO), "--name", "Socialist Network Demo")
    newsroom("init", str(DEMO))  # a second run changes nothing
    newsroom("db", "upgrade")
    newsroom("settings")
    # Lists and subscribers (issue 4): members who already consented, then a segment of them.
    sample = str(ROOT / "subscribers" / "sample.csv")
    newsroom(
        "subscribers",
        "import",
        sample,
        "--list",
        "all-members",
        "--confirmed",
        "--consent",
        "Joined as a member; agreed to receive members' bulletins",
    )
    newsroom("lists")
    newsroom("segment", "all-members and not clp-secretaries")
    newsroom("segment", "disability-group or tag:access-needs")
    newsroom("subscribers", "show", "carys.jenkins@example.org")
    compose()
    outbox = DEMO / "maildir"
    smtp = start_dev_smtp(outbox)
    try:
        send()
    finally:
        smtp.terminate()
        smtp.wait(timeout=10)
    count = len(mailbox.Maildir(outbox, create=False))
    console.print(f"\n[bold]{count} messages are in the dev-smtp Maildir {outbox}[/]")
    bounce(outbox)
    newsroom("build", "--out", str(DEMO / "public"))
    console.rule("[bold green]demo finished")
    console.print(f"The demo site is in {DEMO}")
    console.print(
        f"Open {DEMO / 'public' / 'index.html'} for the archive, {outbox} for the emails."
    )


def compose() -> None:
    """The example issues of this project, checked and previewed as a volunteer would."""
    for path in (ROOT / "issues").iterdir():
        shutil.copy(path, DEMO / "issues" / path.name)
    issues = sorted(str(p.relative_to(DEMO)) for p in (DEMO / "issues").glob("*.md"))
    newsroom("check", *issues)
    newsroom("preview", "issues/2022-10-03-sln-bulletin.md", "--as", "carys.jenkins@example.org",
             "--out", str(DEMO / "preview"))  # fmt: skip


def start_dev_smtp(outbox: Path) -> subprocess.Popen[bytes]:
    """`newsroom dev-smtp` in the background, on a free port the later steps are told about."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ENV["NEWSROOM_SMTP_PORT"] = str(port)
    console.print(f"\n[bold cyan]$ newsroom dev-smtp --maildir {outbox} --port {port} &[/]")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "newsroom",
            "dev-smtp",
            "--maildir",
            str(outbox),
            "--port",
            str(port),
        ],
        cwd=DEMO,
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("dev-smtp did not start")


def bounce(outbox: Path) -> None:
    """Two reports come back to the VERP addresses: a hard bounce and an abuse complaint."""
    sent = [m for m in mailbox.Maildir(outbox, create=False) if "+" in str(m["Return-Path"])]
    reports = mailbox.mbox(DEMO / "bounces.mbox")
    for kind, message in zip(("dsn", "arf"), sent[:2], strict=False):
        verp, to = (
            str(message["Return-Path"]).strip("<>"),
            str(message["X-Envelope-To"]).strip("<>"),
        )
        reports.add(REPORT[kind].format(verp=verp, to=to).encode())
    reports.close()
    newsroom("bounces", "process", "bounces.mbox", "--delete")
    newsroom("bounces")
    newsroom("lists")


REPORT = {
    "dsn": """From: MAILER-DAEMON@mx.example.com
To: {verp}
Subject: Undelivered Mail Returned to Sender
Message-ID: <demo-dsn@mx.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message to {to} could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; {to}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--B--
""",
    "arf": """From: abuse@mailbox.example
To: {verp}
Subject: Abuse report
Message-ID: <demo-arf@mailbox.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B"

--B
Content-Type: text/plain

A recipient marked your message as spam.

--B
Content-Type: message/feedback-report

Feedback-Type: abuse
Version: 1

--B
Content-Type: text/rfc822-headers

Return-Path: <{verp}>
To: {to}

--B--
""",
}


def send() -> None:
    """A dry run, a test copy, then the real mailing to a segment."""
    bulletin = "issues/2022-10-03-sln-bulletin.md"
    newsroom("send", bulletin, "--to", "all-members", "--dry-run")
    newsroom("send", bulletin, "--test", "editor@example.org")
    newsroom("send", bulletin, "--to", "all-members", "--yes")
    newsroom("send", bulletin, "--to", "all-members", "--yes", check=False)  # refused: no doubles
    newsroom("mailings")


if __name__ == "__main__":
    main()
