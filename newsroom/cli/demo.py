"""`make demo`: the whole flow on a throw-away site, each step the command a volunteer would type."""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from rich.console import Console

ROOT = Path(__file__).resolve().parents[2]  # the repository: its issues/ and subscribers/
DEMO = Path(os.environ.get("NEWSROOM_DEMO_DIR", ROOT / "demo-site")).resolve()
console = Console(highlight=False)
ENV: dict[str, str] = {}  # settings the demo gives every step, e.g. the dev-smtp port


def environment() -> dict[str, str]:
    """This process's environment without newsroom settings (but the database URL), plus ENV."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NEWSROOM_") or k == "NEWSROOM_DATABASE_URL"
    }
    return {**kept, **ENV}


def newsroom(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `newsroom ARGS` in the demo site as a volunteer would, showing the command."""
    console.print(f"\n[bold cyan]$ newsroom {' '.join(args)}[/]")
    done = subprocess.run(
        [sys.executable, "-m", "newsroom", *args],
        cwd=DEMO if DEMO.exists() else ROOT,
        text=True,
        capture_output=True,
        env=environment(),
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
    web_port = free_port()
    # The links in emails point at the demo's own `newsroom serve`, started further on.
    ENV["NEWSROOM_SITE_BASE_URL"] = f"http://127.0.0.1:{web_port}"
    smtp = start_dev_smtp(outbox)
    try:
        send()
        web(outbox, web_port)
    finally:
        smtp.terminate()
        smtp.wait(timeout=10)
    count = len(mailbox.Maildir(outbox, create=False))
    console.print(f"\n[bold]{count} messages are in the dev-smtp Maildir {outbox}[/]")
    bounce(outbox)
    newsroom("build", "--out", str(DEMO / "public"))
    console.rule("[bold green]demo finished")
    console.print(f"The demo site is in {DEMO}; the emails it sent are in {outbox}.")
    console.print(
        f"To browse it: .venv/bin/newsroom --site {DEMO} serve, then open http://127.0.0.1:8000/"
        f" (or put {DEMO / 'public'} on any web server: its links start at the site's root)."
    )


def compose() -> None:
    """The example issues of this project, checked and previewed as a volunteer would."""
    for path in (ROOT / "issues").iterdir():
        shutil.copy(path, DEMO / "issues" / path.name)
    issues = sorted(str(p.relative_to(DEMO)) for p in (DEMO / "issues").glob("*.md"))
    newsroom("check", *issues)
    newsroom("preview", "issues/2022-10-03-sln-bulletin.md", "--as", "carys.jenkins@example.org",
             "--out", str(DEMO / "preview"))  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_dev_smtp(outbox: Path) -> subprocess.Popen[bytes]:
    """`newsroom dev-smtp` in the background, on a free port the later steps are told about."""
    port = free_port()
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


def web(outbox: Path, port: int) -> None:
    """The web side as people and mail providers use it: a reader subscribes and confirms (double
    opt-in), and a member's mail provider unsubscribes them with one click (RFC 8058)."""
    console.print(f"\n[bold cyan]$ newsroom serve --port {port} &[/]")
    server = subprocess.Popen(
        [sys.executable, "-m", "newsroom", "serve", "--port", str(port)],
        cwd=DEMO,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz", server)
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        reader = "new.reader@example.org"
        step(f"a reader opens {base}/ and subscribes {reader} to all-members")
        page = browser.open(f"{base}/").read().decode()
        token = re.search(r'name="form_token" value="([^"]+)"', page)
        assert token, "the subscribe form has no form token"
        form = {"form_token": token.group(1), "email": reader, "lists": "all-members"}
        show(browser.open(f"{base}/subscribe", urlencode(form).encode()))
        confirm = link_in(outbox, reader, "/confirm/", wait=10.0)  # sent after the answer
        step("they open the link in the confirmation email, then press its button")
        show(browser.open(confirm))
        show(browser.open(confirm, b""))
        member = "carys.jenkins@example.org"
        unsubscribe = link_in(outbox, member, "/unsubscribe/", header="List-Unsubscribe")
        step(f"{member}'s mail provider POSTs List-Unsubscribe=One-Click (RFC 8058)")
        one_click = urllib.request.Request(
            unsubscribe,
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        show(urllib.request.urlopen(one_click))
    finally:
        server.terminate()
        server.wait(timeout=10)
    newsroom("subscribers", "show", reader)
    newsroom("subscribers", "show", member)


def wait_for(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"newsroom serve did not answer at {url}")


def step(text: str) -> None:
    console.print(f"\n[bold cyan]# {text}[/]")


def show(answer: Any) -> None:
    """An HTTP answer as a browser's user would read it: status and page title."""
    body = answer.read().decode()
    title = re.search(r"<title>(.*?)</title>", body, re.DOTALL)
    shown = title.group(1).strip() if title else body.strip()
    console.print(f"{answer.status} {answer.geturl().split('/')[3] or '/'}: {shown}")


def link_in(outbox: Path, to: str, route: str, header: str = "", wait: float = 0.0) -> str:
    """The newest link to ROUTE in the mail to TO in the dev-smtp Maildir: in HEADER if given
    (List-Unsubscribe), else in the plain-text part; polled for up to WAIT seconds."""
    deadline = time.monotonic() + wait
    while not (found := _newest_link(outbox, to, route, header)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not found:
        raise SystemExit(f"no {route} link in the mail to {to}")
    return found


def _newest_link(outbox: Path, to: str, route: str, header: str) -> str:
    found = ""
    for stored in mailbox.Maildir(outbox, create=False):
        message = email.message_from_bytes(stored.as_bytes(), policy=email.policy.default)
        if not isinstance(message, EmailMessage) or to not in str(message["To"]):
            continue
        plain = message.get_body(("plain",))
        text = str(message[header] or "") if header else plain.get_content() if plain else ""
        match = re.search(rf"(http://\S+?{route}[^\s>]+)", text)
        if match:
            found = match.group(1)
    return found


def bounce(outbox: Path) -> None:
    """Two reports come back to the VERP addresses: a hard bounce and an abuse complaint."""
    # a mailing's messages: bounces+<delivery>-<tag>@ (a confirmation's is bounces+c<id>-…)
    delivery = re.compile(r"<[^+>]*\+\d+-")
    sent = [
        m for m in mailbox.Maildir(outbox, create=False) if delivery.match(str(m["Return-Path"]))
    ]
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
