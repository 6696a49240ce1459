"""Every page a member or reader can reach, and the email, checked by axe-core (the engine behind
most accessibility checkers) in a real browser: no WCAG 2.1 A or AA violation, and on the web
pages none of axe's best practices either (one main landmark, all content in landmarks, ...)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from sqlalchemy import select

from newsroom import tokens
from newsroom.compose.issues import load_all, load_issue
from newsroom.compose.rendering import render
from newsroom.database import transaction
from newsroom.models import MailingList, Subscriber, Subscription, utcnow
from newsroom.people import lists as lists_
from newsroom.site import Site
from tests.smtpserver import TestSMTPServer
from tests.webserver import Server, start

ROOT = Path(__file__).resolve().parent.parent
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

pytestmark = pytest.mark.browser


@pytest.fixture
def server(site_dir: Path, smtp_server: TestSMTPServer, tmp_path: Path) -> Iterator[Server]:
    for example in (ROOT / "issues").iterdir():
        shutil.copy(example, site_dir / "issues" / example.name)
    running = start(site_dir, tmp_path / "serve.log")
    yield running
    running.stop()


def violations(page: Any, rules: list[str]) -> list[str]:
    options = {"runOnly": {"type": "tag", "values": rules}}
    found = Axe().run(page, options=options).response["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes'][0]['target']}" for v in found]


def person_links(site: Site) -> dict[str, str]:
    """The token pages of a subscriber who asked to join all-members: confirm, unsubscribe and
    preferences, as the links in their emails would open them."""
    now = utcnow()  # rows written directly: Playwright's loop leaves no room for sending mail
    lists_.sync(site)
    with transaction(site.engine) as session:
        person = Subscriber(email="ann@example.org", name="Ann Lee", created_at=now)
        session.add(person)
        session.flush()
        lists = list(session.scalars(select(MailingList.id)))
        session.add(Subscription(subscriber_id=person.id, list_id=lists[0], status="pending"))
        who = tokens.for_subscriber(person.id, person.email, person.token_key)
    config, day = site.config, timedelta(days=1)
    return {
        "confirm": tokens.make(config, "confirm", {**who, "l": lists}, now=now, ttl=day),
        "unsubscribe": tokens.make(config, "unsubscribe", who, now=now),
        "preferences": tokens.make(config, "preferences", who, now=now, ttl=day),
    }


def test_every_web_page_passes_axe(browser: Any, server: Server, site_dir: Path) -> None:
    site = Site.open(site_dir)
    try:
        links = person_links(site)
        slugs = [issue.slug for issue in load_all(site)]
    finally:
        site.close()
    paths = [
        "/",
        "/subscribe",
        *(f"/issues/{slug}/" for slug in slugs),
        *(f"/{route}/{token}" for route, token in links.items()),
        "/unsubscribe/not-a-token",
        "/no-such-page",
    ]
    page = browser.new_page()
    found = {}
    for path in paths:
        page.goto(server.url + path)
        found[path] = violations(page, [*WCAG, "best-practice"]) + outside_landmarks(page)
    page.goto(server.url + "/subscribe")  # a form sent back with an error on it
    page.fill("input[name=email]", "ann@example")
    page.click("button[type=submit]")
    found["/subscribe (with an error)"] = violations(page, [*WCAG, "best-practice"])
    page.close()
    assert found == {path: [] for path in found}
    assert len(found) == len(slugs) + 8


# Landmark roles (WAI-ARIA 1.2): axe lets a skip link stand outside them, IBM's Equal Access
# checker does not (issue #14, item 6). A <form> is one only once it has a name.
LANDMARKS = "header, nav, main, aside, footer, form[aria-label], form[aria-labelledby], [role]"


def outside_landmarks(page: Any) -> list[str]:
    """The links outside every landmark, which IBM's checker reports."""
    script = f"[...document.querySelectorAll('body a')].filter(a => !a.closest({LANDMARKS!r}))"
    return [
        f"outside every landmark: {text}"
        for text in page.evaluate(f"{script}.map(a => a.textContent)")
    ]


def test_forms_have_names_and_nothing_overflows_a_phone(
    browser: Any, server: Server, site_dir: Path
) -> None:
    """The preferences page's forms have accessible names (one landmark each, named apart);
    at 375px, a phone's width, no page scrolls sideways (the subscribe form was 1px over)."""
    site = Site.open(site_dir)
    try:
        links = person_links(site)
    finally:
        site.close()
    page = browser.new_page(viewport={"width": 375, "height": 800})
    widths = {}
    for path in ("/", f"/preferences/{links['preferences']}", "/subscribe"):
        page.goto(server.url + path)
        widths[path] = page.evaluate("document.documentElement.scrollWidth")
    page.fill("input[name=email]", "ann@example")  # the form with its error on it
    page.click("button[type=submit]")
    widths["/subscribe (with an error)"] = page.evaluate("document.documentElement.scrollWidth")
    assert widths == {path: 375 for path in widths}

    page.goto(f"{server.url}/preferences/{links['preferences']}")
    assert page.get_by_role("form").count() == page.locator("form").count() == 4
    for name in ("Lists you receive", "Leave everything", "Download your data", "Erase your data"):
        assert page.get_by_role("form", name=name, exact=True).count() == 1, name
    assert page.get_by_role("button", name="Download my data", exact=True).is_visible()
    page.close()


def test_the_email_passes_axe(browser: Any, site: Site) -> None:
    issue = load_issue(ROOT / "issues" / "2022-10-03-sln-bulletin.md", site.config)
    page = browser.new_page()
    page.set_content(render(issue, site.config).variants["email"].html)
    # Email clients drop landmarks, so axe's best practice on them does not apply; WCAG does.
    assert violations(page, WCAG) == []
    page.close()
