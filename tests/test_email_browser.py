"""Each example email in a real headless Chromium at phone (375 px) and desktop (600 px) widths:
no horizontal scrolling, and every block visible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from newsroom.compose.issues import load_issue
from newsroom.compose.personalise import personalise
from newsroom.compose.rendering import render
from newsroom.site import Site

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "issues").glob("*.md"))
# What each block type shows, as a CSS selector on the email.
SHOWS = {
    "statement": ".nr-attribution",
    "meeting": ".nr-when",
    "supporters": ".nr-names li",
    "motion": ".nr-marker",
    "action": ".nr-button a",
    "private": ".nr-private",
}

pytestmark = pytest.mark.browser


OFFENDERS = """(width) => [...document.querySelectorAll('h1,h2,h3,p,li,a,blockquote,img,table')]
  .filter(e => { const r = e.getBoundingClientRect(); return r.right > width + 1 || r.left < -1; })
  .map(e => e.tagName + ': ' + (e.textContent || '').slice(0, 40))"""


@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_email_fits_and_shows_every_block(
    browser: Any, site: Site, examples: Path, path: Path, width: int
) -> None:
    issue = load_issue(examples / path.name, site.config)
    rendered = render(issue, site.config)
    key = rendered.variant_for(lambda _expression: True)  # every only block shown
    fields = {"first_name": "Ann", "unsubscribe_url": "https://example.org/u"}
    html = personalise(rendered.variants[key].html, fields, html=True)
    page = browser.new_page(viewport={"width": width, "height": 800})
    try:
        page.route("**/*", lambda route: route.abort())  # nothing may load from the network
        page.set_content(html, wait_until="load")
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"horizontal scrolling: {scroll}px content in {width}px"
        assert page.evaluate(OFFENDERS, width) == []
        for block in {b.type for b in issue.blocks} - {"only"}:
            found = page.locator(SHOWS[block])
            assert found.count() > 0, block
            assert found.first.is_visible(), block
        for heading in page.locator("h1, h2").all():
            assert heading.is_visible()
    finally:
        page.close()
