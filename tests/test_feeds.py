"""The public archive, feeds and calendar files, served and built: feedparser reads every feed
without a complaint (bozo 0), GUIDs stay put, and a canary string in private blocks, only blocks,
join links and merge fields never reaches any public output."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import icalendar
import pytest
from starlette.testclient import TestClient

from newsroom.database import transaction
from newsroom.models import Mailing
from newsroom.people import lists
from newsroom.site import Site
from newsroom.web import archive, feeds
from newsroom.web.app import create_app
from tests.conftest import Run

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CANARY = "CANARY"
ISSUE = """\
---
title: Canary test for {{first_name|friend}}
date: 2026-02-01
to: all-members
summary: A test issue for {{first_name|reader}}.
---
Hello {{first_name|friend}}, this is PUBLICWORD for {{email|you}}.

::: meeting Members meeting
when: 2026-02-10 18:30
until: 20:00
where: Online
register: https://example.org/register
join: https://example.org/join-CANARY-JOIN

Public description of the meeting.
:::

::: private
Secret CANARY-PRIVATE text for {{name|you}}.

::: meeting Private meeting CANARY-PMEETING
when: 2026-02-11 18:00
where: CANARY-PLACE
:::
:::

::: only disability-group
Only CANARY-ONLY text.
:::
"""
OLDER = """\
---
title: An older bulletin
date: 2025-12-24
---
Season's greetings & <news>.
"""
DRAFT = """\
---
title: A draft CANARY-DRAFT
date: 2026-12-01
---
Not yet.
"""
PUBLIC_ROUTES = (
    "/",
    "/subscribe",
    "/feed.xml",
    "/atom.xml",
    "/lists/all-members/feed.xml",
    "/lists/disability-group/feed.xml",
    "/issues/canary/",
    "/issues/canary/meeting-1.ics",
    "/issues/older-bulletin/",
    "/style.css",
)


@pytest.fixture
def issues_site(site: Site) -> Site:
    for name, text in (
        ("2026-02-01-canary.md", ISSUE),
        ("2025-12-24-older-bulletin.md", OLDER),
        ("2026-12-01-draft.md", DRAFT),
    ):
        (site.issues_dir / name).write_text(text, encoding="utf-8")
    lists.sync(site, NOW)
    return site


@pytest.fixture
def client(issues_site: Site) -> Iterator[TestClient]:
    with TestClient(create_app(issues_site, clock=lambda: NOW)) as test_client:
        yield test_client


def sent(site: Site, slug: str, expression: str, status: str = "done") -> None:
    with transaction(site.engine) as session:
        session.add(
            Mailing(
                issue_slug=slug,
                issue_path=f"issues/{slug}.md",
                subject="s",
                expression=expression,
                status=status,
                frozen_at=datetime(2026, 11, 20, tzinfo=UTC),
            )
        )


def assert_public(text: str) -> None:
    assert CANARY not in text
    assert "{{" not in text and "first_name" not in text
    for route in ("/unsubscribe/", "/preferences/", "/confirm/"):
        assert route not in text


def test_no_canary_on_any_public_route(client: TestClient) -> None:
    for route in PUBLIC_ROUTES:
        answer = client.get(route)
        assert answer.status_code == 200, route
        assert_public(answer.text)
    assert "PUBLICWORD" in client.get("/issues/canary/").text
    assert client.get("/issues/draft/").status_code == 404  # dated later: not published yet
    assert "draft" not in client.get("/feed.xml").text.lower()
    assert client.get("/issues/canary/meeting-2.ics").status_code == 404  # the private meeting


def test_issue_page_is_accessible_with_a_strict_csp(client: TestClient) -> None:
    page = client.get("/issues/canary/")
    assert '<html lang="en-GB">' in page.text
    assert "Skip to content" in page.text and "<main" in page.text
    csp = page.headers["content-security-policy"]
    assert "'sha256-" in csp and "unsafe-inline" not in csp and "script" not in csp
    assert "<script" not in page.text


def test_index_lists_published_issues_newest_first(client: TestClient) -> None:
    page = client.get("/").text
    assert page.index("/issues/canary/") < page.index("/issues/older-bulletin/")
    assert "Canary test for friend" in page


def test_feeds_parse_cleanly_with_full_content_and_stable_ids(client: TestClient) -> None:
    for route in ("/feed.xml", "/atom.xml"):
        answer = client.get(route)
        assert answer.headers["content-type"].startswith("application/")
        feed = feedparser.parse(answer.content)
        assert feed.bozo == 0, (route, feed.get("bozo_exception"))
        assert feed.feed.title == "Test Newsroom"
        assert [e.title for e in feed.entries] == ["Canary test for friend", "An older bulletin"]
        first = feed.entries[0]
        assert first.id == "http://localhost:8000/issues/canary/"
        assert first.link == "http://localhost:8000/issues/canary/"
        assert "PUBLICWORD" in first.content[0].value  # the full text, not a summary
        assert "Public description of the meeting" in first.content[0].value
        assert "greetings &amp;" in feed.entries[1].content[0].value
        assert client.get(route).content == answer.content  # the same bytes every time
        assert feed.feed.link == "http://localhost:8000/"  # the site, not the feed itself
    rss = ElementTree.fromstring(client.get("/feed.xml").content)
    assert rss.findtext("channel/link") == "http://localhost:8000/"
    atom = ElementTree.fromstring(client.get("/atom.xml").content)
    names = [e.text for e in atom.iterfind("{http://www.w3.org/2005/Atom}author/{*}name")]
    assert names == ["Test Newsroom"]  # RFC 4287 4.1.1: a feed without one is invalid


def test_feed_dates_are_noon_in_the_site_zone_and_the_same_day_everywhere(
    client: TestClient,
) -> None:
    """A date alone is published at noon in site.timezone (London, winter here): the instant a
    feed reader shows in its own zone falls on the issue's day from UTC-11 to UTC+11, where
    midnight in London was the day before for every reader west of it."""
    rss = ElementTree.fromstring(client.get("/feed.xml").content)
    assert [e.text for e in rss.iterfind("channel/item/pubDate")] == [
        "Sun, 01 Feb 2026 12:00:00 +0000",
        "Wed, 24 Dec 2025 12:00:00 +0000",
    ]
    assert rss.findtext("channel/lastBuildDate") == "Sun, 01 Feb 2026 12:00:00 +0000"
    atom = ElementTree.fromstring(client.get("/atom.xml").content)
    ns = "{http://www.w3.org/2005/Atom}"
    assert atom.findtext(f"{ns}updated") == "2026-02-01T12:00:00+00:00"
    [entry, _older] = atom.iterfind(f"{ns}entry")
    assert entry.findtext(f"{ns}published") == "2026-02-01T12:00:00+00:00"
    assert entry.findtext(f"{ns}updated") == "2026-02-01T12:00:00+00:00"
    instant = datetime.fromisoformat(entry.findtext(f"{ns}published") or "")
    for hours in (-11, -5, 0, 5.5, 11):
        seen = instant.astimezone(timezone(timedelta(hours=hours)))
        assert seen.date().isoformat() == "2026-02-01", hours


def test_an_issue_with_a_time_appears_then_and_feeds_carry_it(site: Site) -> None:
    """`date: 2026-07-03 18:30` (London, summer time): published at 18:30 and not a second
    before, with that instant and its offset in the feeds, byte for byte the same each time."""
    (site.issues_dir / "2026-07-03-evening.md").write_text(
        "---\ntitle: Evening\ndate: 2026-07-03 18:30\n---\nAt half past six.\n",
        encoding="utf-8",
    )
    (site.issues_dir / "2026-07-03-morning.md").write_text(
        "---\ntitle: Morning\ndate: 2026-07-03 08:00 -04:00\n---\nFrom New York.\n",
        encoding="utf-8",
    )
    now = datetime(2026, 7, 3, 17, 29, 59, tzinfo=UTC)  # 18:29:59 BST
    shelf = archive.Archive(site, lambda: now)
    assert [p.slug for p in shelf.issues()] == ["morning"]  # 12:00 UTC, well before
    now = datetime(2026, 7, 3, 17, 30, tzinfo=UTC)
    assert [p.slug for p in shelf.issues()] == ["evening", "morning"]  # newest first
    evening = shelf.issues()[0]
    assert evening.date_words == "3 July 2026"  # the day in words: no time shown
    rss = feeds.rss(site.config, shelf.issues())
    assert rss == feeds.rss(site.config, archive.Archive(site, lambda: now).issues())
    assert b"<pubDate>Fri, 03 Jul 2026 18:30:00 +0100</pubDate>" in rss
    assert b"<pubDate>Fri, 03 Jul 2026 08:00:00 -0400</pubDate>" in rss
    assert b"<lastBuildDate>Fri, 03 Jul 2026 18:30:00 +0100</lastBuildDate>" in rss
    atom = feeds.atom(site.config, shelf.issues())
    assert b"<published>2026-07-03T18:30:00+01:00</published>" in atom
    assert b"<updated>2026-07-03T18:30:00+01:00</updated>" in atom


def test_per_list_feeds_hold_the_issues_sent_to_that_list(
    client: TestClient, issues_site: Site
) -> None:
    sent(issues_site, "canary", "all-members and not disability-group")
    sent(issues_site, "older-bulletin", "disability-group", status="cancelled")
    members = feedparser.parse(client.get("/lists/all-members/feed.xml").content)
    assert members.bozo == 0
    assert members.feed.title == "Test Newsroom: All members"
    assert [e.id for e in members.entries] == ["http://localhost:8000/issues/canary/"]
    group = feedparser.parse(client.get("/lists/disability-group/feed.xml").content)
    assert group.bozo == 0 and group.entries == []  # negated, or cancelled: not sent to it
    assert client.get("/lists/clp-secretaries/feed.xml").status_code == 404  # not public
    assert client.get("/lists/no-such-list/feed.xml").status_code == 404


def test_addressed_lists_of_an_expression() -> None:
    assert archive.addressed("all-members and not clp-secretaries") == {"all-members"}
    assert archive.addressed("(a or b) and tag:press") == {"a", "b"}
    assert archive.addressed("not (a or b)") == set()
    assert archive.addressed("a and (") == set()


def test_meeting_calendar_file_has_public_details_only(client: TestClient) -> None:
    answer = client.get("/issues/canary/meeting-1.ics")
    assert answer.headers["content-type"].startswith("text/calendar")
    calendar = icalendar.Calendar.from_ical(answer.content)
    (event,) = calendar.walk("VEVENT")
    assert str(event["summary"]) == "Members meeting"
    assert "join" not in answer.text.lower()


def test_build_writes_the_public_part_without_private_content(
    cli: Run, issues_site: Site, tmp_path: Path
) -> None:
    sent(issues_site, "canary", "all-members")
    out = tmp_path / "public"
    result = cli("build", "--out", str(out), now=NOW)  # the draft's date is still to come
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "2 issues" in result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        ".newsroom-build",
        "atom.xml",
        "feed.xml",
        "index.html",
        "issues/canary/index.html",
        "issues/canary/meeting-1.ics",
        "issues/older-bulletin/index.html",
        "lists/all-members/feed.xml",
        "lists/disability-group/feed.xml",
        "style.css",
    ]
    for path in out.rglob("*"):
        if path.is_file():
            assert_public(path.read_text(encoding="utf-8"))
    for name in ("feed.xml", "atom.xml", "lists/all-members/feed.xml"):
        assert feedparser.parse((out / name).read_bytes()).bozo == 0
    assert len(feedparser.parse((out / "lists/all-members/feed.xml").read_bytes()).entries) == 1
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="/subscribe"' in index and "form_token" not in index
    assert 'http-equiv="Content-Security-Policy"' in index
    # building again replaces the earlier build
    (issues_site.issues_dir / "2025-12-24-older-bulletin.md").unlink()
    again = cli("build", "--out", str(out), now=NOW)
    assert again.exit_code == 0 and not (out / "issues/older-bulletin").exists()


def test_build_refuses_a_folder_it_did_not_write(cli: Run, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"jpeg")
    result = cli("build", "--out", str(folder))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "is not empty and was not written by" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    result = cli("build", "--out", str(a_file))
    assert result.exit_code == 1 and "is a file" in result.output


def test_build_reports_every_problem_of_the_issues(cli: Run, site: Site, tmp_path: Path) -> None:
    (site.issues_dir / "2026-01-01-broken.md").write_text(
        "---\ntitle: Broken\ndate: 2026-01-01\n---\n::: nonsense\n\ntext\n:::\n", encoding="utf-8"
    )
    result = cli("build", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "issues/2026-01-01-broken.md:5:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_serve_skips_a_broken_issue_and_publishes_the_rest(
    client: TestClient, issues_site: Site
) -> None:
    (issues_site.issues_dir / "2026-01-01-broken.md").write_text(
        "---\ntitle: Broken\ndate: 2026-01-01\n---\n::: nonsense\n\ntext\n:::\n", encoding="utf-8"
    )
    feed = feedparser.parse(client.get("/feed.xml").content)
    assert [e.title for e in feed.entries] == ["Canary test for friend", "An older bulletin"]


def test_a_summary_is_text_in_every_feed(site: Site) -> None:
    """The front matter's summary is plain text (the inbox preview line). RSS readers take
    <description> as HTML, so there it is escaped; Atom's <summary> is text (RFC 4287)."""
    summary = "MPs <b>back</b> it & <img src=x onerror=alert(1)>"
    (site.issues_dir / "2026-02-01-markup.md").write_text(
        f"---\ntitle: Markup\ndate: 2026-02-01\nsummary: '{summary}'\n---\nHello.\n",
        encoding="utf-8",
    )
    lists.sync(site, NOW)
    with TestClient(create_app(site, clock=lambda: NOW)) as client:
        rss_bytes, atom_bytes = client.get("/feed.xml").content, client.get("/atom.xml").content
    rss, atom = ElementTree.fromstring(rss_bytes), ElementTree.fromstring(atom_bytes)
    description = rss.find("channel/item/description")
    assert description is not None and description.text == html.escape(summary)
    assert "<img" not in (description.text or "")  # what a reader renders as HTML
    entry = atom.find("{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}summary")
    assert entry is not None and entry.text == summary
    assert entry.get("type") in (None, "text")
    # what a reader makes of them: HTML that shows the text as written, or the text itself
    as_html = feedparser.parse(rss_bytes).entries[0].summary_detail
    assert as_html.type == "text/html" and "<" not in as_html.value
    assert html.unescape(as_html.value) == summary
    as_text = feedparser.parse(atom_bytes).entries[0].summary_detail
    assert as_text.type == "text/plain" and as_text.value == summary


def test_serve_survives_drafts_that_are_not_utf8_or_hold_control_characters(
    client: TestClient, issues_site: Site, cli: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """A future-dated draft saved as Latin-1, and one with a control character pasted from a
    PDF, used to make every public route answer 500."""
    folder = issues_site.issues_dir
    (folder / "2026-12-02-latin.md").write_bytes(
        b"---\ntitle: Draft\ndate: 2026-12-02\n---\nCaf\xe9 society.\n"
    )
    (folder / "2026-12-03-pasted.md").write_text(
        "---\ntitle: Pasted\ndate: 2026-12-03\n---\nFrom the PDF:\x02 the text.\n", "utf-8"
    )
    for route in PUBLIC_ROUTES:
        assert client.get(route).status_code == 200, route
    feed = feedparser.parse(client.get("/feed.xml").content)
    assert [e.title for e in feed.entries] == ["Canary test for friend", "An older bulletin"]
    logged = [r.getMessage() for r in caplog.records if r.name == "newsroom.web.archive"]
    assert logged == [
        "not published: issues/2026-12-02-latin.md:5: not UTF-8 (byte 0xE9 at column 4): "
        "save the file as UTF-8",
        "not published: issues/2026-12-03-pasted.md:5: control character U+0002 at column 14: "
        "delete it (it is invisible, and often comes with text pasted from a PDF or a word "
        "processor)",
    ]
    checked = cli(
        "check", str(folder / "2026-12-02-latin.md"), str(folder / "2026-12-03-pasted.md")
    )
    assert checked.exit_code == 1
    assert checked.stderr.splitlines() == [m.removeprefix("not published: ") for m in logged]


def test_serve_leaves_out_both_issues_of_a_slug_two_files_share(
    client: TestClient, issues_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    (issues_site.issues_dir / "2026-01-15-canary.md").write_text(
        OLDER.replace("An older bulletin", "Another canary"), encoding="utf-8"
    )
    assert client.get("/issues/canary/").status_code == 404
    feed = feedparser.parse(client.get("/feed.xml").content)
    assert [e.title for e in feed.entries] == ["An older bulletin"]
    assert client.get("/").status_code == 200
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert logged == [
        f'not published: issues/{first}.md:1: the slug "canary" is also the slug of '
        f'issues/{second}.md: give one of them its own with "slug: ..." in its front matter '
        "(a slug is an issue's web address, and what sending goes by to know who already had it)"
        for first, second in (
            ("2026-01-15-canary", "2026-02-01-canary"),
            ("2026-02-01-canary", "2026-01-15-canary"),
        )
    ]


def test_a_file_outside_issues_is_never_published(
    client: TestClient, issues_site: Site, cli: Run, tmp_path: Path
) -> None:
    secret = (issues_site.root / ".env").read_text(encoding="utf-8").split("=", 1)[1].strip()
    (issues_site.issues_dir / "2026-01-20-leak.md").write_text(
        "---\ntitle: Leak\ndate: 2026-01-20\n---\n::: supporters Our friends\nsource: ../.env\n:::\n",
        encoding="utf-8",
    )
    assert client.get("/issues/leak/").status_code == 404
    for route in PUBLIC_ROUTES:
        assert secret not in client.get(route).text, route
    checked = cli("check", str(issues_site.issues_dir / "2026-01-20-leak.md"))
    assert checked.exit_code == 1 and secret not in checked.output
    assert checked.stderr == (
        'issues/2026-01-20-leak.md:6: supporters file "../.env" is outside the issues/ folder: '
        "an issue may only name files in issues/ (the file is published with it)\n"
    )
    built = cli("build", "--out", str(tmp_path / "public"))
    assert built.exit_code == 1 and not (tmp_path / "public").exists()
