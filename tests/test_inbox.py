"""The inbox of what `newsroom dev-smtp` received: messages sent through the real dev-smtp
server, listed and shown (HTML, text part, headers) by the library and by `newsroom inbox` in
headless Chromium — a volunteer's `send --test` copy read without opening raw files, its HTML
running no script and loading nothing. Requests never reach outside the one Maildir."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsroom.mail.devsmtp import DevSMTP
from newsroom.web.inbox import Inbox
from tests.conftest import Run
from tests.smtpserver import free_port
from tests.webserver import Server, start

HTML = """<!doctype html><html><head><meta name="color-scheme" content="light dark"><style>
body { background: #ffffff; color: #1a1a1a; }
@media (prefers-color-scheme: dark) { body { background: #121212 !important; color: #eeeeee !important; } }
</style></head><body><h1>Hello Ann</h1><img src="https://images.example.org/photo.png" alt="A photo">
<script>document.title = "ran"</script></body></html>"""


def message(subject: str, to: str = "ann@example.net", html: str = HTML) -> EmailMessage:
    made = EmailMessage()
    made["From"] = "Newsroom <news@example.org>"
    made["To"] = to
    made["Subject"] = subject
    made["Date"] = "Sat, 10 Jan 2026 12:30:00 +0000"
    made.set_content("Hello Ann, in plain text.\n")
    made.add_alternative(html, subtype="html")
    return made


@pytest.fixture
def dev_smtp(tmp_path: Path) -> Iterator[DevSMTP]:
    server = DevSMTP(tmp_path / "maildir", port=free_port()).start()
    yield server
    server.stop()


def send(server: DevSMTP, made: EmailMessage, to: list[str] | None = None) -> None:
    with smtplib.SMTP(server.host, server.port) as client:
        client.send_message(made, "bounces@example.org", to or [str(made["To"])])


def test_messages_are_listed_newest_first_and_shown_whole(dev_smtp: DevSMTP) -> None:
    send(dev_smtp, message("Café news"), ["ann@example.net", "bob@example.net"])
    send(dev_smtp, message("Second"))
    inbox = Inbox(dev_smtp.maildir)
    files = sorted((dev_smtp.maildir / "new").iterdir())
    for seconds, path in enumerate(sorted(files, key=lambda p: b"Second" in p.read_bytes())):
        os.utime(path, ns=(1_000_000_000 * (seconds + 1),) * 2)  # the order they arrived in
    first, second = inbox.listing()
    assert (first.subject, second.subject) == ("Second", "Café news")
    assert second.sender == "Newsroom <news@example.org>" and second.to == "ann@example.net"
    assert second.date == "10 Jan 2026 12:30"

    opened = inbox.open(second.key)
    assert opened is not None and opened.problem == ""
    assert opened.text == "Hello Ann, in plain text.\n"
    assert opened.html is not None and "<h1>Hello Ann</h1>" in opened.html
    headers = [name for name, _ in opened.headers]
    assert headers[:3] == ["Return-Path", "X-Envelope-To", "X-Envelope-To"]  # both, in order
    assert ("Subject", "Café news") in opened.headers  # decoded (RFC 2047 on the wire)
    assert opened.parts == ("text/plain", "text/html")


def test_a_request_names_no_path_outside_the_maildir(dev_smtp: DevSMTP, tmp_path: Path) -> None:
    send(dev_smtp, message("Inside"))
    secret = tmp_path / "secret.eml"
    secret.write_bytes(b"Subject: outside\r\n\r\nnot for the inbox\r\n")
    (dev_smtp.maildir / "new" / "1700000000.M1P1Q1.host").symlink_to(secret)
    inbox = Inbox(dev_smtp.maildir)
    assert [m.subject for m in inbox.listing()] == ["Inside"]  # the symlink is skipped
    assert inbox.open("1700000000.M1P1Q1.host") is None
    for key in ("../secret.eml", "..", ".hidden", "new/x", "", "a" * 201, "x\0y", "%2e%2e"):
        assert inbox.open(key) is None, key
    assert Inbox(dev_smtp.maildir.parent / "none-yet").listing() == []  # dev-smtp not run yet


def test_what_cannot_be_shown_is_said(dev_smtp: DevSMTP) -> None:
    broken = (
        b"From: a@example.org\r\nSubject: Odd\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\nbonjour\r\n"
    )
    with smtplib.SMTP(dev_smtp.host, dev_smtp.port) as client:
        client.sendmail("a@example.org", ["ann@example.net"], broken)
    send(dev_smtp, message("Big", html=HTML + "<!--" + "x" * 5000 + "-->"))
    inbox = Inbox(dev_smtp.maildir, max_bytes=4000)
    shown = {m.subject: inbox.open(m.key) for m in inbox.listing()}
    odd, big = shown["Odd"], shown["Big"]
    assert odd is not None and odd.html is None
    assert odd.text is not None and odd.text.startswith("(this part cannot be decoded:")
    assert big is not None and big.text is None
    assert big.problem.startswith("is ") and "more than the 4,000 shown here: open " in big.problem


ISSUE = """\
---
title: Spring bulletin
date: 2026-01-10
to: all-members
summary: The news in one line.
---
Hello {{first_name|friend}}, here is the news.

![Members at the spring meeting](https://images.example.org/meeting.jpg)
"""


def send_test_copy(site_dir: Path, address: str) -> None:
    """`newsroom send spring --test ADDRESS`, as the volunteer types it (in its own process:
    the browser's driver holds this one's event loop)."""
    done = subprocess.run(
        [sys.executable, "-m", "newsroom", "--site", str(site_dir), "send", "spring", "--test",
         address],
        capture_output=True, text=True, env=dict(os.environ), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def inbox_server(
    site_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Server, DevSMTP]]:
    """`newsroom dev-smtp`'s server keeping the site's maildir/, the site's relay, and
    `newsroom inbox` reading it."""
    smtp = DevSMTP(site_dir / "maildir", port=free_port()).start()
    monkeypatch.setenv("NEWSROOM_SMTP_HOST", smtp.host)
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(smtp.port))
    running = start(site_dir, tmp_path / "inbox.log", command=("inbox",), ready="/inbox/")
    yield running, smtp
    running.stop()
    smtp.stop()


def test_inbox_over_http_refuses_other_hosts_and_unknown_messages(
    inbox_server: tuple[Server, DevSMTP],
) -> None:
    server, _ = inbox_server
    home = httpx.get(server.url + "/", timeout=10, follow_redirects=True)
    assert home.status_code == 200 and "Nothing yet" in home.text
    assert ">Preview</a>" not in home.text  # `newsroom inbox` serves no preview
    assert httpx.get(server.url + "/inbox/x/", timeout=10).status_code == 404
    assert httpx.get(server.url + "/inbox/..%2f..%2fetc/", timeout=10).status_code == 404
    rebound = httpx.get(server.url + "/inbox/", headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 400
    assert f"the inbox of {server.log_path.parent / 'site' / 'maildir'} on" in server.stop()


@pytest.mark.browser
def test_a_volunteer_reads_their_test_copy_in_the_inbox(
    browser: Any, inbox_server: tuple[Server, DevSMTP], site_dir: Path
) -> None:
    from playwright.sync_api import expect

    server, _ = inbox_server
    (site_dir / "issues" / "2026-01-10-spring.md").write_text(ISSUE, encoding="utf-8")
    send_test_copy(site_dir, "ann@example.net")

    context = browser.new_context(color_scheme="light")
    asked: list[str] = []  # what reached the network: a load CSP blocks never does

    def route(found: Any) -> None:
        asked.append(found.request.url)
        found.continue_() if found.request.url.startswith(server.url) else found.abort()

    context.route("**/*", route)
    failed: list[str] = []
    context.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    page = context.new_page()
    page.goto(server.url + "/inbox/", wait_until="load")
    row = page.get_by_role("row").nth(1)
    expect(row).to_contain_text("ann@example.net")
    expect(row).to_contain_text("Newsroom <newsroom@example.org>")
    expect(row).to_contain_text("[TEST] Spring bulletin")

    # another copy arrives while the volunteer looks: the list shows it by itself
    expect(page.locator("#reload-status")).to_have_text("Watching for changes.")
    send_test_copy(site_dir, "bob@example.net")
    expect(page.get_by_role("row")).to_have_count(3, timeout=15_000)

    page.get_by_role("link", name="[TEST] Spring bulletin").last.click()  # ann's, the older
    expect(page.get_by_role("heading", level=1)).to_have_text("[TEST] Spring bulletin")
    body = page.frame_locator("iframe").locator("body")
    expect(body).to_contain_text("Hello friend, here is the news.")
    expect(page.locator("pre.text")).to_contain_text("Hello friend, here is the news.")
    headers = page.locator("table.headers")
    expect(headers).to_contain_text("List-Unsubscribe-Post")
    expect(headers).to_contain_text("X-Envelope-To")

    page.get_by_role("link", name="dark").click()
    page.wait_for_url("**scheme=dark")
    dark = page.frame_locator("iframe[data-scheme=dark]").locator("body")
    expect(dark).to_contain_text("Hello friend")
    back = dark.evaluate("(body) => getComputedStyle(body).backgroundColor")
    assert back == "rgb(18, 18, 18)", back  # the email's own dark rules, browser in light mode
    # the issue's remote image was never asked for: nothing came from anywhere but the inbox
    assert asked and [url for url in asked if not url.startswith(server.url)] == []
    assert "https://images.example.org/meeting.jpg csp" in failed  # refused by the frame's CSP
    assert all(f.endswith(" csp") for f in failed), failed
    context.close()


def test_inbox_of_a_file_is_refused(cli: Run, site_dir: Path) -> None:
    (site_dir / "notes.txt").write_text("not a Maildir")
    result = cli("inbox", "--maildir", str(site_dir / "notes.txt"))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {site_dir / 'notes.txt'} is a file, not a Maildir folder: give --maildir DIR\n"
    )


def test_a_script_in_a_received_message_never_runs(
    browser: Any, inbox_server: tuple[Server, DevSMTP]
) -> None:
    server, smtp = inbox_server
    send(smtp, message("Scripted"))
    page = browser.new_page()
    try:
        page.goto(server.url + "/inbox/", wait_until="load")
        page.get_by_role("link", name="Scripted").click()
        frame = page.frame_locator("iframe")
        from playwright.sync_api import expect

        expect(frame.locator("h1")).to_have_text("Hello Ann")
        assert page.frames[1].evaluate("document.title") != "ran"
    finally:
        page.close()
