"""Rendering: email HTML structure, plain text (golden files), variants, personalisation, web, .ics."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path

import icalendar
import pytest

from newsroom.compose import calendar
from newsroom.compose.issues import Issue, load_issue
from newsroom.compose.personalise import compile_template, personalise
from newsroom.compose.rendering import Rendered, render, web_page
from newsroom.site import Site

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "issues").glob("*.md"))
GOLDEN = Path(__file__).parent / "golden"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of the document."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def named(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]

    def headings(self) -> list[int]:
        return [int(tag[1]) for tag, _ in self.tags if re.fullmatch(r"h[1-6]", tag)]


@pytest.fixture(params=EXAMPLES, ids=[p.stem for p in EXAMPLES])
def example(request: pytest.FixtureRequest, site: Site, examples: Path) -> tuple[Issue, Rendered]:
    issue = load_issue(examples / request.param.name, site.config)
    return issue, render(issue, site.config)


def test_email_html_structure(example: tuple[Issue, Rendered]) -> None:
    issue, rendered = example
    for key, variant in rendered.variants.items():
        html = variant.html
        tags = Tags(html)
        assert tags.named("html")[0]["lang"] == "en-GB"
        levels = tags.headings()
        assert levels.count(1) == 1 and levels[0] == 1, key
        assert all(b <= a + 1 for a, b in pairwise(levels)), levels
        assert all(t.get("role") == "presentation" for t in tags.named("table"))
        assert all(img.get("alt") for img in tags.named("img"))
        assert len(html.encode()) < 90 * 1024
        metas = {m.get("name"): m.get("content") for m in tags.named("meta")}
        assert metas["color-scheme"] == "light dark"
        assert metas["supported-color-schemes"] == "light dark"
        assert issue.summary in html  # the preheader
        # no tracking pixels, no third-party fonts or images
        assert not tags.named("link") and "googleapis" not in html
        assert not [
            img for img in tags.named("img") if "1" in (img.get("width"), img.get("height"))
        ]


def test_footer_says_who_why_and_how_to_leave(example: tuple[Issue, Rendered]) -> None:
    _, rendered = example
    email = rendered.variants["email"]
    for part in (email.html, email.text):
        assert "{{unsubscribe_url}}" in part and "{{preferences_url}}" in part
        assert "Sent by Test Newsroom" in part
        assert "You get this email because you subscribed to Test Newsroom" in part
    public = rendered.public
    for part in (public.html, public.text, public.content_html, public.subject):
        assert "{{" not in part and "\ue000" not in part


def test_private_only_and_join_links_never_in_the_public_variant(site: Site) -> None:
    issue = load_issue(ROOT / "issues/2022-10-03-sln-bulletin.md", site.config)
    rendered = render(issue, site.config)
    assert rendered.only_expressions == ("disability-group",)
    assert set(rendered.variants) == {"public", "email", "email+1"}
    join = "https://zoom.example.org/j/81234567890"
    private = "Members will receive the recording"
    only = "The next meeting of the Disability Group"
    public = rendered.public
    for part in (public.html, public.text, public.content_html):
        assert join not in part and private not in part and only not in part
    everyone, group = rendered.variants["email"], rendered.variants["email+1"]
    for part in (everyone.html, everyone.text):
        assert join in part and private in part and only not in part
    for part in (group.html, group.text):
        assert only in part
    assert rendered.variant_for(lambda expression: expression == "disability-group") == "email+1"
    assert rendered.variant_for(lambda expression: False) == "email"
    page = web_page(issue, site.config)
    assert join not in page and private not in page and only not in page


def test_meeting_card_and_calendar(site: Site) -> None:
    issue = load_issue(ROOT / "issues/2022-10-03-sln-bulletin.md", site.config)
    email = render(issue, site.config).variants["email"]
    assert "Wednesday 5 October 2022, 6.30pm–8pm" in email.html
    assert "Register for All members meeting" in email.html
    ics_url = "http://localhost:8000/issues/sln-bulletin/meeting-1.ics"
    assert f'href="{ics_url}"' in email.html and "Add to calendar" in email.html
    assert f"Calendar: {ics_url}" in email.text
    files = calendar.ics_files(issue, site.config, now=datetime(2022, 10, 3, tzinfo=UTC))
    assert list(files) == ["meeting-1.ics"]
    event = icalendar.Calendar.from_ical(files["meeting-1.ics"]).walk("VEVENT")[0]
    assert str(event["SUMMARY"]) == "All members meeting"
    assert event.decoded("DTSTART") == datetime(2022, 10, 5, 17, 30, tzinfo=UTC)
    assert "zoom.example.org" not in files["meeting-1.ics"].decode()


def test_calendar_files_carry_the_time_zone_they_name(site: Site) -> None:
    """RFC 5545 3.6.5: a DTSTART with TZID=Europe/London needs a VTIMEZONE of that TZID (khal
    and others warn without it), with the zone's summer and winter rules."""
    issue = load_issue(ROOT / "issues/2022-10-03-sln-bulletin.md", site.config)
    data = calendar.ics_files(issue, site.config)["meeting-1.ics"]
    assert b"DTSTART;TZID=Europe/London:20221005T183000" in data
    [zone] = icalendar.Calendar.from_ical(data).walk("VTIMEZONE")
    assert str(zone["TZID"]) == "Europe/London"
    assert {part.name for part in zone.subcomponents} == {"STANDARD", "DAYLIGHT"}
    # no wall clock: DTSTAMP is the issue's publication instant unless given (noon in London,
    # in summer time, in UTC as RFC 5545 3.8.7.2 says), so the bytes never change
    assert b"DTSTAMP:20221003T110000Z" in data
    assert calendar.ics_files(issue, site.config) == {"meeting-1.ics": data}


def test_supporters_in_two_columns_with_their_count(site: Site) -> None:
    issue = load_issue(ROOT / "issues/2021-05-10-supporters.md", site.config)
    email = render(issue, site.config).variants["email"]
    assert "26 supporters" in email.html and "8 supporters" in email.html
    assert email.html.count("mj-column-per-50") >= 4  # two half-width columns per list
    assert "- Workers’ International Network" in email.text


def test_motion_keeps_numbers_and_letters(site: Site) -> None:
    issue = load_issue(ROOT / "issues/2022-10-03-sln-bulletin.md", site.config)
    email = render(issue, site.config).variants["email"]
    for marker in ("1.", "8.", "9.", "a)", "b)", "c)"):  # each in a cell of its own
        assert re.search(rf'<td class="nr-marker"[^>]*>{re.escape(marker)}</td>', email.html)
    # a hanging number by negative text-indent is lost in Gmail and Yahoo, which drop it
    assert "text-indent" not in email.html
    assert "\n    a) Strike together" in email.text


GOLDEN_CASES = [(path, key) for path in EXAMPLES for key in ("email", "public")]


@pytest.mark.parametrize(
    ("path", "key"), GOLDEN_CASES, ids=[f"{p.stem}-{k}" for p, k in GOLDEN_CASES]
)
def test_plain_text_golden(site: Site, examples: Path, path: Path, key: str) -> None:
    """Set UPDATE_GOLDEN=1 to rewrite the files after a deliberate change; read the diff."""
    issue = load_issue(examples / path.name, site.config)
    text = render(issue, site.config).variants[key].text
    golden = GOLDEN / f"{path.stem}.{key}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    placeholders = re.sub(r"\{\{[a-z_]+(\|[^}]*)?\}\}", "x" * 10, text)  # a typical value
    too_long = [
        line
        for line in placeholders.splitlines()
        if len(line) > 72 and not re.fullmatch(r".{0,12}\S+://\S+", line)  # a long URL may
    ]
    assert too_long == []


def test_text_carries_every_piece_of_content(site: Site) -> None:
    issue = load_issue(ROOT / "issues/2021-03-29-fightback-meeting-report.md", site.config)
    text = render(issue, site.config).variants["email"].text
    assert "the working groups on our website [1]" in " ".join(text.split())
    assert "[1] https://www.labour-in-exile.org/working-groups/" in text
    assert "    — Carel Buxton, chair of West Ham local Labour Party" in text
    assert "Join Labour In Exile: https://membermojo.co.uk/lien" in text


def test_an_untitled_statement_after_a_headed_block_gets_a_heading_in_text(site: Site) -> None:
    """Issue #14, item 6: the text part has no border, so an untitled statement right after
    another block's heading read as part of that block. Between paragraphs it needs none."""
    path = site.issues_dir / "2020-12-24-quotes.md"
    path.write_text(
        "---\ntitle: Quotes\ndate: 2020-12-24\n---\nIntro.\n\n"
        "::: statement\nby: First Person\n\n“One.”\n:::\n\n"
        "::: statement From the chair\nby: Second Person\n\n“Two.”\n:::\n\n"
        "::: statement\nby: Third Person\n\n“Three.”\n:::\n",
        encoding="utf-8",
    )
    text = render(load_issue(path, site.config), site.config).variants["email"].text
    assert "Intro.\n\n    “One.”\n    — First Person\n\nFrom the chair\n--------------\n\n" in text
    assert "— Second Person\n\nStatement\n---------\n\n    “Three.”\n    — Third Person" in text


def test_personalise_escapes_and_never_expands_values(site: Site) -> None:
    issue = load_issue(ROOT / "issues/2020-12-24-save-our-socialists.md", site.config)
    email = render(issue, site.config).variants["email"]
    assert "Dear {{first_name|friend}}," in email.html
    fields = {"first_name": "<script>alert(1)</script>", "email": "a@example.org"}
    html = personalise(email.html, fields, html=True)
    assert "<script>" not in html and "Dear &lt;script&gt;alert(1)&lt;/script&gt;," in html
    text = personalise(email.text, {"first_name": "{{email}}"}, html=False)
    assert "Dear {{email}}," in text and "a@example.org" not in text
    assert "Dear friend," in personalise(email.text, {}, html=False)
    url = "https://news.example.org/unsubscribe/abc?x=1&y=2"
    assert 'href="https://news.example.org/unsubscribe/abc?x=1&amp;y=2"' in personalise(
        email.html, {"unsubscribe_url": url}, html=True
    )


def test_compiled_template_parts() -> None:
    template = compile_template("Hi {{first_name|you &amp; yours}}, {{unknown}} {{email}}.", True)
    assert template.literals == ("Hi ", ", {{unknown}} ", ".")
    assert template.slots == (("first_name", "you &amp; yours"), ("email", ""))
    assert template.fill({"email": "a&b@example.org"}) == (
        "Hi you &amp; yours, {{unknown}} a&amp;b@example.org."
    )


def test_raw_html_is_sanitised(site: Site) -> None:
    path = site.issues_dir / "2020-12-24-raw.md"
    path.write_text(
        "---\ntitle: Raw\ndate: 2020-12-24\n---\n"
        '<script>alert(1)</script><p onclick="x()">Hi <b>there</b></p>\n\n'
        "<h1>Big</h1>\n\n&#123;&#123;email}}\n",
        encoding="utf-8",
    )
    rendered = render(load_issue(path, site.config), site.config)
    html = rendered.variants["email"].html
    assert "<script" not in html and "onclick" not in html and "<b>there</b>" in html
    assert Tags(html).headings().count(1) == 1
    filled = personalise(html, {"email": "secret@example.org"}, html=True)
    assert "secret@example.org" not in filled  # an entity-made "{{email}}" is not a placeholder


def test_web_page_is_accessible(site: Site) -> None:
    issue = load_issue(ROOT / "issues/2020-12-24-save-our-socialists.md", site.config)
    page = web_page(issue, site.config)
    tags = Tags(page)
    assert tags.named("html")[0]["lang"] == "en-GB"
    assert tags.named("a")[0] == {"class": "skip", "href": "#content"}
    assert [a["id"] for a in tags.named("main")] == ["content"]
    assert tags.named("header") and tags.named("footer")
    assert tags.headings().count(1) == 1
    assert ":focus" in page
    assert "Dear friend," in page and "For secretaries only" not in page
    assert "— Diane Abbott MP, 16 December 2020" in page


def test_every_block_type_has_its_renderings() -> None:
    """One table drives a block's email, text and web renderings (docs/blocks.md): every block
    type that is not a container has its view, its email template and its web branch."""
    from newsroom.compose import blocks, views

    templates = ROOT / "newsroom" / "templates"
    web = (templates / "web" / "content.html.j2").read_text(encoding="utf-8")
    shown = {name for name, spec in blocks.SPECS.items() if not spec.container}
    assert set(views.VIEWS) == shown
    for name in shown:
        assert (templates / "email" / f"{name}.mjml.j2").is_file(), name
        assert f'item.kind == "{name}"' in web, name


def test_preview_and_send_fill_merge_fields_alike(
    example: tuple[Issue, Rendered], site: Site
) -> None:
    """Two engines fill merge fields: personalise (preview --as) and the message template a
    mailing splices encoded values into (messages.py). For the same recipient, with a name that
    needs escaping and encoding, both must give the same text and the same HTML."""
    from email import message_from_bytes, policy
    from email.message import EmailMessage

    from newsroom.delivery.mailings import Content
    from newsroom.delivery.sending import templates
    from newsroom.mail.messages import DateHeader, Recipient, new_message_id

    _issue, rendered = example
    variant = rendered.variants[rendered.variant_for(lambda _: True)]
    content = Content(variant.subject, variant.html, variant.text)
    template = templates(site.config, "all-members", {"v": content})["v"]
    recipient = Recipient(
        "zoë@example.net", "Zoë <Ó'Brien> & Co", "https://news.example.org/unsubscribe/TOKEN",
        "https://news.example.org/preferences/TOKEN",
    )  # fmt: skip
    sent = message_from_bytes(
        template.build(recipient, new_message_id("example.org"), DateHeader().date()),
        policy=policy.default,
    )
    assert isinstance(sent, EmailMessage)
    fields = recipient.fields()
    for kind, html in (("plain", False), ("html", True)):
        part = sent.get_body((kind,))
        assert part is not None
        body = str(part.get_content()).replace("\r\n", "\n")
        preview = personalise(variant.html if html else variant.text, fields, html=html)
        assert body.strip() == preview.replace("\r\n", "\n").strip(), kind
