"""Dark mode done right (issue #14, item 4), in a real headless Chromium: each example theme's
emails (the issues' and the confirmation's) and web pages at 375 and 600 px, in light and in dark mode (prefers-color-scheme
emulated, as Apple Mail and iOS Mail apply it). Every element with text is measured against the
background it really sits on (WCAG 2.x contrast: 4.5:1, 3:1 for large text), axe-core's
colour-contrast rule runs too, and on a wide screen nothing around the card stays light in dark
mode. Screenshots land in the test's tmp folder (look at them after a failure)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from newsroom import colours
from newsroom.compose.issues import load_issue
from newsroom.compose.personalise import personalise
from newsroom.compose.rendering import render
from newsroom.people import confirmation, lists
from newsroom.site import Site
from newsroom.web.app import static_files
from tests.conftest import TEST_SECRET
from tests.themes import SURVEY, THEMES, make_site

pytestmark = pytest.mark.browser
ISSUES = ["2022-10-03-sln-bulletin", "2020-12-24-save-our-socialists", SURVEY.stem]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

# Every element that has text of its own, its colour over the backgrounds below it (composited,
# alpha included), and the ratio WCAG 2.x gives them; the canvas is white, or Chromium's dark
# canvas when the page asks for dark.
LOW_CONTRAST = """([canvas]) => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat([1]);
  const backdrop = el => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
    return layers.reverse().reduce((under, layer) => over(layer, under), canvas); };
  const lum = c => { const f = v => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const found = []; let measured = 0;
  for (const el of document.body.querySelectorAll('*')) {
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    if (style.visibility !== 'visible' || box.width < 2 || box.height < 2 || box.right < 0 || box.bottom < 0) continue;
    let hidden = false; for (let e = el; e; e = e.parentElement) if (getComputedStyle(e).opacity === '0') hidden = true;
    if (hidden) continue;
    const back = backdrop(el), fore = over(parse(style.color), back);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5, got = ratio(fore, back);
    measured++;
    if (got < need) found.push(`${el.tagName} "${el.textContent.trim().slice(0, 30)}": ${style.color} on rgb(${back.slice(0, 3).map(Math.round)}) is ${got.toFixed(2)}:1, needs ${need}:1`);
  }
  return [measured, found];
}"""

# The background at the left edge of a wide window, top to bottom: what is around the card.
# Below a body shorter than the window there is only the root element, which is painted with
# the body's background when it has none of its own (CSS Backgrounds 3, section 2.11.2).
EDGE = """([canvas]) => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const root = [document.documentElement, document.body].map(e => parse(getComputedStyle(e).backgroundColor))
    .find(c => c[3] >= 1) || canvas;
  const seen = new Set(), height = document.documentElement.scrollHeight;
  for (let y = 2; y < height; y += 40) {
    window.scrollTo(0, y); let colour = root;
    for (let e = document.elementFromPoint(3, y - window.scrollY); e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor); if (c[3] >= 1) { colour = c; break; } }
    seen.add('#' + colour.slice(0, 3).map(v => Math.round(v).toString(16).padStart(2, '0')).join(''));
  }
  return [...seen];
}"""

BEHIND = """e => { for (; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor;
  if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; } return 'none'; }"""


@pytest.fixture(params=sorted(THEMES))
def themed(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Site]:
    monkeypatch.setenv("NEWSROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("NEWSROOM_SECRET_KEY", TEST_SECRET)
    site = make_site(tmp_path / "site", request.param)
    lists.sync(site, NOW)
    yield site
    site.close()


def documents(site: Site) -> dict[str, tuple[str, str]]:
    """name -> (address, HTML): each issue's email (every only block shown, personalised) and
    its web page, and the archive's index, all at the site's own address."""
    config = site.config
    base = config.text("site.base_url").rstrip("/")
    found = {}
    for slug in ISSUES:
        rendered = render(load_issue(site.issues_dir / f"{slug}.md", config), config)
        variant = rendered.variants[rendered.variant_for(lambda _expression: True)]
        fields = {
            "first_name": "Ann",
            "unsubscribe_url": f"{base}/u",
            "preferences_url": f"{base}/p",
        }
        found[f"email-{slug}"] = (
            f"{base}/email/{slug}",
            personalise(variant.html, fields, html=True),
        )
    html, _text = confirmation.render(config, confirmation.sample_context(config, NOW))
    found["email-confirmation"] = (f"{base}/email/confirmation", html)  # the first one sent
    return found


def serve(page: Any, site: Site, files: dict[str, bytes | Path]) -> None:
    """The site's address answers from FILES (as `newsroom build` wrote them); nothing else
    loads, so a third-party image or font would show up as missing."""
    base = site.config.text("site.base_url").rstrip("/")

    def answer(route: Any) -> None:
        url = route.request.url
        name = url[len(base) + 1 :] if url.startswith(base + "/") else None
        if name is not None and (name == "" or name.endswith("/")):
            name += "index.html"
        if name is None or name not in files:
            route.abort()
            return
        kind = {"css": "text/css", "png": "image/png", "jpg": "image/jpeg", "gif": "image/gif"}
        data = files[name]
        body = data.read_bytes() if isinstance(data, Path) else data  # an image copy
        route.fulfill(body=body, content_type=kind.get(name.rsplit(".", 1)[-1], "text/html"))

    page.route("**/*", answer)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_reads_in_light_and_dark(
    browser: Any, themed: Site, scheme: str, tmp_path: Path
) -> None:
    files = static_files(themed, NOW)
    base = themed.config.text("site.base_url").rstrip("/")
    pages = {
        **documents(themed),
        "web-index": (f"{base}/", ""),
        **{f"web-{slug}": (f"{base}/issues/{slug.split('-', 3)[3]}/", "") for slug in ISSUES},
    }
    for address, html in pages.values():
        if html:
            files[address[len(base) + 1 :]] = html.encode()
    canvas = [255, 255, 255, 1] if scheme == "light" else [18, 18, 18, 1]
    palette = themed.config.theme.light if scheme == "light" else themed.config.theme.dark
    problems: dict[str, list[str]] = {}
    for width in (375, 600, 1000):
        page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
        serve(page, themed, files)
        for name, (address, _html) in pages.items():
            page.goto(address, wait_until="load")
            shot = tmp_path / f"{name}-{scheme}-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            broken = page.evaluate(
                "[...document.images].filter(i => !i.naturalWidth).map(i => i.src)"
            )
            assert broken == [], name  # logo and icons are published with the archive
            if width == 1000:  # what is around the card: the theme's, never a light leftover
                around = palette.surround if name.startswith("email") else palette.background
                edge = page.evaluate(EDGE, [canvas])
                assert set(edge) <= {around, palette.header}, (name, edge)
                continue
            measured, low = page.evaluate(LOW_CONTRAST, [canvas])
            assert measured > 10, name  # the walk found the text
            if width == 600:  # axe too, once per page: WCAG 2.1 AA (and best practice on the web)
                rules = [*WCAG, *([] if name.startswith("email") else ["best-practice"])]
                axe = Axe().run(page, options={"runOnly": {"type": "tag", "values": rules}})
                low += [
                    f"axe {v['id']}: {n['target']}: {n['failureSummary']}"
                    for v in axe.response["violations"]
                    for n in v["nodes"]
                ]
            if low:
                problems[f"{name} {width}px"] = low
        page.close()
    assert problems == {}, f"screenshots in {tmp_path}"


def test_the_dark_card_fills_a_wide_screen(browser: Any, themed: Site) -> None:
    """The bug of issue 14: dark CSS turned the footer's text light and left its background
    light (1.43:1), and the area around the card stayed light."""
    (name, (address, html)), *_ = documents(themed).items()
    dark = themed.config.theme.dark
    page = browser.new_page(viewport={"width": 1200, "height": 800}, color_scheme="dark")
    page.route("**/*", lambda route: route.abort())
    page.set_content(html, wait_until="load")
    footer = page.locator(".nr-footer p").first
    colour = footer.evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb({}, {}, {})".format(*colours.channels(dark.muted))
    behind = footer.evaluate(BEHIND)
    assert behind == "rgb({}, {}, {})".format(*colours.channels(dark.surround))
    edge = page.evaluate(EDGE, [[18, 18, 18, 1]])
    assert set(edge) <= {dark.surround, dark.header}, (name, address, edge)
    page.close()
