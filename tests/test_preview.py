"""`newsroom preview --serve` as a volunteer uses it: a real server in its own process, its page
and frames over HTTP and in headless Chromium — each variant at phone and desktop width, light
and dark (and the dark frame really dark), the inbox line, the text part — reloading by itself
when the issue or newsroom.toml is edited, and showing a mistake at its line instead of falling
over. Then the command's refusals, each one line."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from newsroom.site import Site
from newsroom.web.preview import Preview
from tests.conftest import Run
from tests.test_cli_startup import imported
from tests.webserver import Server, start

ISSUE = """\
---
title: {title}
date: 2026-01-10
to: all-members
summary: "{{{{first_name|Friend}}}}, the news in one line."
---
Hello {{{{first_name|friend}}}}, here is the news.

::: only disability-group
For the Disability Group only.
:::
"""
NAME = "2026-01-10-news.md"
SHOWN = f"issues/{NAME}"


def write_issue(site_dir: Path, title: str = "The news", extra: str = "") -> Path:
    path = site_dir / "issues" / NAME
    path.write_text(ISSUE.format(title=title) + extra, encoding="utf-8")
    return path


@pytest.fixture
def issue(site_dir: Path) -> Path:
    return write_issue(site_dir)


@pytest.fixture
def preview(site_dir: Path, issue: Path, tmp_path: Path) -> Iterator[Server]:
    command = ("preview", str(issue), "--serve")
    running = start(site_dir, tmp_path / "preview.log", command=command, ready="/version")
    yield running
    running.stop()


def version(server: Server) -> str:
    return str(httpx.get(f"{server.url}/version", timeout=10).json()["version"])


def wait_for_version_change(server: Server, before: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while (now := version(server)) == before:
        assert time.monotonic() < deadline, "the version did not change"
        time.sleep(0.02)
    return now


def rename_site(site_dir: Path, name: str) -> None:
    toml = site_dir / "newsroom.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', text), encoding="utf-8")


def test_the_page_shows_every_variant_its_inbox_line_and_text_part(preview: Server) -> None:
    page = httpx.get(preview.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for label in ("Web page (public)", "Email", "Email + only disability-group"):
        assert f">{label}</a>" in html
    assert '<span class="subject">The news</span>' in html
    assert '<span class="preheader">Friend, the news in one line.</span>' in html  # filled
    assert "Hello friend, here is the news." in html  # the text part
    assert "For the Disability Group only." not in html  # the default variant has no only
    for scheme in ("light", "dark"):
        assert html.count(f'src="/frame/email/{scheme}"') == 2  # phone and desktop
    assert 'width="375"' in html and 'width="720"' in html

    fuller = httpx.get(preview.url + "/?variant=email%2B1", timeout=10).text
    assert "For the Disability Group only." in fuller

    frame = httpx.get(preview.url + "/frame/email+1/dark", timeout=10)
    assert frame.status_code == 200
    assert frame.headers["content-security-policy"].startswith("sandbox; default-src 'none'")
    assert "For the Disability Group only." in frame.text
    assert "prefers-color-scheme" not in frame.text and "@media (color)" in frame.text
    web = httpx.get(preview.url + "/frame/public/light", timeout=10).text
    assert "Skip to content" in web and "Disability Group only" not in web  # the archive page

    assert httpx.get(preview.url + "/frame/email+7/dark", timeout=10).status_code == 404
    assert httpx.get(preview.url + "/frame/email/dim", timeout=10).status_code == 404
    # another site's name pointed at 127.0.0.1 (DNS rebinding) cannot read the page
    rebound = httpx.get(preview.url + "/", headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 400
    inbox = httpx.get(preview.url + "/inbox/", timeout=10)
    assert inbox.status_code == 200 and "Nothing yet" in inbox.text
    log = preview.stop()
    assert f"preview of {SHOWN} on {preview.url}/ (Ctrl-C to stop)" in log
    assert "GET /version" not in log  # no access log: the page asks once a second


def test_a_mistake_is_shown_at_its_line_and_the_page_recovers(
    preview: Server, site_dir: Path
) -> None:
    before = version(preview)
    write_issue(site_dir, extra="\n::: petition\nSign it.\n:::\n")
    before = wait_for_version_change(preview, before)
    page = httpx.get(preview.url + "/", timeout=10)
    assert page.status_code == 200
    assert "This issue cannot be shown yet" in page.text
    assert f"{SHOWN}:13: unknown block type &#34;petition&#34;" in page.text
    assert "<iframe" not in page.text

    rename_site(site_dir, "Broken = [")  # newsroom.toml itself wrong: said, at its line
    toml = site_dir / "newsroom.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + "\nx = [\n", encoding="utf-8")
    before = wait_for_version_change(preview, before)
    assert re.search(r"newsroom\.toml:\d+: ", httpx.get(preview.url + "/", timeout=10).text)

    rename_site(site_dir, "Mended")
    toml.write_text(toml.read_text(encoding="utf-8").replace("\nx = [\n", ""), encoding="utf-8")
    write_issue(site_dir, title="Mended")
    wait_for_version_change(preview, before)
    page = httpx.get(preview.url + "/", timeout=10)
    assert '<span class="subject">Mended</span>' in page.text
    assert preview.process.poll() is None  # still serving


def test_the_version_moves_with_the_issue_the_settings_the_lists_and_templates(
    site: Site, issue: Path, examples: Path
) -> None:
    watched = Preview(site.root, issue, None, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    first = watched.shown()
    assert first.problems == () and first.version == watched.version()
    assert watched.shown() is first  # nothing changed: not rendered again
    steps = [
        lambda: write_issue(site.root, title="Edited"),
        lambda: rename_site(site.root, "Renamed"),
        lambda: (site.root / "templates").mkdir(),
        lambda: (site.root / "templates" / "footer.html").write_text("x", encoding="utf-8"),
        lambda: site.lists_file.write_text(
            site.lists_file.read_text(encoding="utf-8") + "\n", encoding="utf-8"
        ),
    ]
    seen = {watched.version()}
    for step in steps:
        step()
        assert watched.version() not in seen
        seen.add(watched.version())
    assert watched.shown().rendered is not None

    # a supporters file the issue names is watched too, once the issue has been read
    supporters = examples / "2021-08-24-labour-left-rallies.md"
    names = Preview(site.root, supporters, None, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    assert names.shown().problems == ()
    before = names.version()
    signatories = examples / "labour-left-signatories.txt"
    signatories.write_text(signatories.read_text(encoding="utf-8") + "A new group\n", "utf-8")
    assert names.version() != before
    assert "A new group" in (names.shown().document("email") or "")


def test_the_theme_logo_and_the_issue_images_are_watched(site: Site) -> None:
    """Saving a new logo, or a new version of a photo the issue shows, reloads the page."""
    from PIL import Image

    (site.root / "theme").mkdir()
    logo, photo = site.root / "theme" / "logo.png", site.root / "issues" / "images" / "hall.png"
    photo.parent.mkdir()
    Image.new("RGB", (120, 40), "#1a1a1a").save(logo)
    Image.new("RGB", (200, 100), "#336699").save(photo)
    toml = site.root / "newsroom.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace("[theme]\n", '[theme]\nlogo = "theme/logo.png"\n', 1), "utf-8")
    path = write_issue(site.root, extra="\n![The hall, full](images/hall.png)\n")
    watched = Preview(site.root, path, None, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    assert watched.shown().problems == ()
    seen = {watched.version()}
    Image.new("RGB", (120, 40), "#b00020").save(logo)
    assert watched.version() not in seen
    seen.add(watched.version())
    Image.new("RGB", (200, 100), "#663399").save(photo)
    assert watched.version() not in seen


def test_as_a_subscriber_shows_their_variant_and_name(
    cli: Run, site: Site, issue: Path, tmp_path: Path
) -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    members = tmp_path / "members.csv"
    members.write_text("email,name,lists\nann@example.org,Ann Example,disability-group\n")
    done = cli("subscribers", "import", str(members), "--confirmed", "--consent", "Asked")
    assert done.exit_code == 0, done.output
    shown = Preview(site.root, issue, "ann@example.org", lambda: when).shown()
    assert shown.problems == () and shown.key == "email+1"
    document = shown.document("email+1") or ""
    assert "Hello Ann, here is the news." in document
    assert "For the Disability Group only." in document
    nobody = Preview(site.root, issue, "bob@example.org", lambda: when).shown()
    assert nobody.rendered is None and "bob@example.org" in nobody.problems[0]


def test_a_free_port_is_chosen_and_printed(site_dir: Path, issue: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "preview.log"
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "newsroom", "--site", str(site_dir), "preview", str(issue),
             "--serve"],
            stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (said := re.search(r"on (http://127\.0\.0\.1:\d+/) ", log_path.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert httpx.get(said.group(1), timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(10)


def test_preview_help_loads_no_web_stack() -> None:
    loaded = imported("preview", "--help")
    assert sorted(loaded & {"starlette", "uvicorn"}) == []


def test_serve_and_out_together_are_refused(cli: Run, issue: Path, tmp_path: Path) -> None:
    result = cli("preview", str(issue), "--serve", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.output == "Error: --out writes files and --serve shows a page: choose one\n"
    assert not (tmp_path / "out").exists()


def test_a_missing_issue_is_refused_before_serving(cli: Run) -> None:
    result = cli("preview", "issues/2026-01-10-nothing.md", "--serve")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no issue 'issues/2026-01-10-nothing.md': give a file")


def test_a_port_in_use_is_said_in_one_line(cli: Run, issue: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("preview", str(issue), "--serve", "--port", str(port))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; another server"
    )


# -- in a real browser ------------------------------------------------------------------------

COLOURS = """(element) => {
  let back = element;
  while (back && ['rgba(0, 0, 0, 0)', 'transparent'].includes(getComputedStyle(back).backgroundColor))
    back = back.parentElement;
  return [getComputedStyle(element).color, back ? getComputedStyle(back).backgroundColor : ''];
}"""


def luminance(colour: str) -> float:
    """WCAG 2.1 relative luminance of a computed `rgb(r, g, b)`."""
    red, green, blue = (int(v) / 255 for v in re.findall(r"\d+", colour)[:3])

    def linear(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def frames_by_scheme(page: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {"light": [], "dark": []}
    for frame in page.frames[1:]:
        found[frame.url.rsplit("/", 1)[1]].append(frame)
    return found


@pytest.mark.browser
def test_a_volunteer_watches_the_preview_while_editing(
    browser: Any, preview: Server, site_dir: Path
) -> None:
    from playwright.sync_api import expect

    # the browser's own preference is light: the dark frames must be dark all the same
    context = browser.new_context(color_scheme="light", viewport={"width": 1400, "height": 900})
    remote: list[str] = []
    context.on("request", lambda r: None if r.url.startswith(preview.url) else remote.append(r.url))
    page = context.new_page()
    page.goto(preview.url + "/", wait_until="load")
    expect(page.get_by_role("link", name="Email + only disability-group")).to_be_visible()
    expect(page.locator(".inbox-line .subject")).to_have_text("The news")
    expect(page.get_by_role("heading", name="Plain-text part")).to_be_visible()
    assert page.locator("iframe").count() == 4
    frames = frames_by_scheme(page)
    assert len(frames["light"]) == len(frames["dark"]) == 2
    for scheme, found in frames.items():
        for frame in found:
            text, back = frame.locator("h1").first.evaluate(COLOURS)
            if scheme == "dark":  # light text on a dark card
                assert luminance(back) < 0.05 and luminance(text) > 0.6, (scheme, text, back)
            else:
                assert luminance(back) > 0.8 and luminance(text) < 0.05, (scheme, text, back)
    widths = sorted(f.evaluate("document.documentElement.clientWidth") for f in page.frames[1:])
    assert widths == [375, 375, 720, 720]

    # the page is watching; an edit of the issue shows without touching the browser
    expect(page.locator("#reload-status")).to_have_text("Watching for changes.")
    write_issue(site_dir, title="Edited while watching")
    expect(page.locator(".inbox-line .subject")).to_have_text(
        "Edited while watching", timeout=15_000
    )
    # and so does a change of the settings (the theme lives in newsroom.toml)
    rename_site(site_dir, "Renamed Group")
    masthead = page.frame_locator("iframe[data-scheme=dark]").first.locator("body")
    expect(masthead).to_contain_text("Renamed Group", timeout=15_000)
    for index in range(2):  # both dark frames, phone and desktop, after the reload
        title = page.frame_locator("iframe[data-scheme=dark]").nth(index).locator("h1").first
        assert luminance(title.evaluate(COLOURS)[1]) < 0.05

    # a mistake shows at its line, and the page carries on watching
    write_issue(site_dir, title="Edited while watching", extra="\n::: petition\nx\n:::\n")
    expect(page.locator(".problems")).to_contain_text(
        f'{SHOWN}:13: unknown block type "petition"', timeout=15_000
    )
    write_issue(site_dir, title="Fixed")
    expect(page.locator(".inbox-line .subject")).to_have_text("Fixed", timeout=15_000)

    page.get_by_role("link", name="Email + only disability-group").click()
    only = page.frame_locator("iframe[data-scheme=light]").first.locator("body")
    expect(only).to_contain_text("For the Disability Group only.")
    assert remote == []  # nothing asked of any other host
    context.close()


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_preview_and_its_inbox_pass_axe(browser: Any, preview: Server, scheme: str) -> None:
    """The volunteer's pages themselves (the email in the frames is checked by
    test_accessibility.py; axe cannot run inside a frame that runs no script)."""
    from tests.test_accessibility import violations

    page = browser.new_page(color_scheme=scheme)
    try:
        for path in ("/", "/?variant=public", "/inbox/"):
            page.goto(preview.url + path, wait_until="load")
            rules = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
            assert violations(page, rules) == [], path
    finally:
        page.close()
