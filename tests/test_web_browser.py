"""A person in a real browser (headless Chromium): subscribe on the web page, get the confirmation
email from the SMTP server, open its link and confirm, receive an issue, then leave by the
message's List-Unsubscribe one-click POST and, for another list, by the footer link."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from newsroom.database import transaction
from newsroom.models import MailingList, Subscription
from newsroom.site import Site
from tests.smtpserver import TestSMTPServer
from tests.webserver import Server, free_port, start

ISSUE = """\
---
title: {title}
date: 2026-01-10
to: {to}
summary: News for the {to} list.
---
Hello {{{{first_name|friend}}}}, here is the news.
"""

pytestmark = pytest.mark.browser


@pytest.fixture
def server(
    site_dir: Path, smtp_server: TestSMTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    port = free_port()
    # links in every email point at this server
    monkeypatch.setenv("NEWSROOM_SITE_BASE_URL", f"http://127.0.0.1:{port}")
    running = start(site_dir, tmp_path / "serve.log", port=port)
    yield running
    running.stop()


def statuses(site_dir: Path) -> dict[str, str]:
    site = Site.open(site_dir)
    try:
        with transaction(site.engine) as session:
            rows = session.execute(
                select(MailingList.slug, Subscription.status).join(
                    MailingList, MailingList.id == Subscription.list_id
                )
            )
            return {slug: status for slug, status in rows}
    finally:
        site.close()


def send(site_dir: Path, slug: str, to: str) -> None:
    (site_dir / "issues" / f"2026-01-10-{slug}.md").write_text(
        ISSUE.format(title=f"News for {to}", to=to), encoding="utf-8"
    )
    done = subprocess.run(
        [sys.executable, "-m", "newsroom", "--site", str(site_dir), "send", slug, "--yes"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_reader_subscribes_confirms_receives_and_leaves(
    browser: Any, server: Server, site_dir: Path, smtp_server: TestSMTPServer
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    page.get_by_label("Email address").fill("ann@example.org")
    page.get_by_label("Name").fill("Ann Example")
    page.get_by_label(re.compile("^All members")).check()
    page.get_by_label(re.compile("^Disability Group")).check()
    page.get_by_role("button", name="Subscribe").click()
    assert page.get_by_role("heading", name="Check your inbox").is_visible()

    (confirmation,) = smtp_server.wait_for("ann@example.org")  # sent after the answer
    text = confirmation.body()
    link = re.search(rf"{re.escape(server.url)}/confirm/\S+", text)
    assert link, text
    page.goto(link.group(0))
    assert statuses(site_dir) == {"all-members": "pending", "disability-group": "pending"}
    page.get_by_role("button", name="Yes, subscribe me").click()
    assert page.get_by_role("heading", name="You are subscribed").is_visible()
    assert statuses(site_dir) == {"all-members": "confirmed", "disability-group": "confirmed"}

    # an issue arrives; the mail provider's one-click button POSTs to its List-Unsubscribe URL
    send(site_dir, "members-news", "all-members")
    issue = smtp_server.to("ann@example.org")[-1].message
    assert issue["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https?://[^>]+)>", str(issue["List-Unsubscribe"]))
    assert url and url.group(1).startswith(f"{server.url}/unsubscribe/")
    answer = httpx.post(url.group(1), data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert answer.status_code == 200 and not answer.is_redirect
    assert statuses(site_dir) == {"all-members": "unsubscribed", "disability-group": "confirmed"}

    # another issue, another list: the person clicks the footer link and the button
    send(site_dir, "group-news", "disability-group")
    html = smtp_server.to("ann@example.org")[-1].body("html")
    footer = re.search(r'href="([^"]*/unsubscribe/[^"]+)"', html)
    assert footer
    page.goto(footer.group(1).replace("&amp;", "&"))
    assert statuses(site_dir)["disability-group"] == "confirmed"  # opening it changes nothing
    page.get_by_role("button", name="Unsubscribe").click()
    assert page.get_by_role("heading", name="You are unsubscribed").is_visible()
    assert statuses(site_dir) == {"all-members": "unsubscribed", "disability-group": "unsubscribed"}

    # the preferences link shows what is held, and the skip link is the first stop of the keyboard
    preferences = re.search(r'href="([^"]*/preferences/[^"]+)"', html)
    assert preferences
    page.goto(preferences.group(1))
    assert page.get_by_role("heading", name="Your subscriptions").is_visible()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    context.close()
