"""Reading issues: front matter, blocks, and every problem of a file reported at once."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsroom.compose import blocks
from newsroom.compose.issues import Block, Markdown, load_all, load_issue
from newsroom.compose.rendering import render
from newsroom.errors import ProblemsError
from newsroom.site import Site

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
---
title: Save our socialists
date: 2020-12-24
to: clp-secretaries
summary: MPs back the campaign.
---
Dear {{first_name|friend}},

::: statement A statement from Diane Abbott
by: Diane Abbott MP
date: 2020-12-16

“I fully support this important campaign.”
:::

::: private
Secret.

::: only disability-group
Only for the group.
:::
:::
"""


def write(site: Site, text: str, name: str = "2020-12-24-save-our-socialists.md") -> Path:
    path = site.issues_dir / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(site: Site, text: str, name: str = "2020-12-24-save-our-socialists.md") -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        load_issue(write(site, text, name), site.config)
    return [str(p) for p in caught.value.problems]


def test_reads_front_matter_and_blocks(site: Site) -> None:
    issue = load_issue(write(site, GOOD), site.config)
    assert (issue.slug, issue.title, issue.date) == (
        "save-our-socialists",
        "Save our socialists",
        dt.date(2020, 12, 24),
    )
    assert issue.to == "clp-secretaries"
    assert issue.summary == "MPs back the campaign."
    first, statement, private = issue.body
    assert isinstance(first, Markdown) and first.line == 7
    assert isinstance(statement, Block) and statement.line == 9
    assert statement.data == blocks.Statement("Diane Abbott MP", "", dt.date(2020, 12, 16), False)
    assert statement.body == "“I fully support this important campaign.”"
    assert isinstance(private, Block) and private.type == "private"
    assert [type(n).__name__ for n in private.children] == ["Markdown", "Block"]
    only = private.children[1]
    assert isinstance(only, Block) and only.data == blocks.Only("disability-group")


def test_slug_from_front_matter(site: Site) -> None:
    issue = load_issue(write(site, GOOD.replace("summary:", "slug: sos\nsummary:")), site.config)
    assert issue.slug == "sos"


def test_every_problem_of_a_file_at_once(site: Site) -> None:
    text = """\
---
title: Save our socialists
date: 2020-12-24
colour: red
---
Hello {{nmae}}, see [the page](page.html), [this](javascript:alert(1)) and ![](https://example.org/a.png).

::: statment
:::

::: statement
role: MP
mood: happy

Quote.
:::

::: meeting Members meeting
when: 2022-10-05 25:30
timezone: Europe/Londn
:::

::: supporters
source: missing.txt
:::

::: action
url: /petition
:::

Text {{unsubscribe_url}}

::: motion
1. never closed
"""
    assert problems(site, text) == [
        'issues/2020-12-24-save-our-socialists.md:4: unknown key "colour" in the front matter: '
        "allowed keys are title, date, to, summary, slug",
        "issues/2020-12-24-save-our-socialists.md:6: unknown merge field {{nmae}}: use one of "
        "first_name, name, email (with a fallback if you like: {{first_name|friend}})",
        'issues/2020-12-24-save-our-socialists.md:6: link "page.html" is not a full address: '
        "write it with https://, such as https://example.org/page",
        'issues/2020-12-24-save-our-socialists.md:6: link "javascript:alert(1)" is not allowed: '
        "addresses must start with https://",
        'issues/2020-12-24-save-our-socialists.md:6: image "https://example.org/a.png" has no alt '
        "text: write ![what the image shows](https://example.org/a.png)",
        'issues/2020-12-24-save-our-socialists.md:8: unknown block type "statment": use one of '
        "statement, meeting, supporters, motion, action, private, only",
        'issues/2020-12-24-save-our-socialists.md:11: missing key "by" in the statement block '
        "(required: by)",
        'issues/2020-12-24-save-our-socialists.md:13: unknown key "mood" in the statement block: '
        "allowed keys are by, role, date",
        'issues/2020-12-24-save-our-socialists.md:19: bad date and time "2022-10-05 25:30" for '
        '"when": write it as YYYY-MM-DD HH:MM, such as 2022-10-05 18:30',
        'issues/2020-12-24-save-our-socialists.md:20: unknown time zone "Europe/Londn" for '
        '"timezone": use a name such as Europe/London',
        'issues/2020-12-24-save-our-socialists.md:24: supporters file "missing.txt" not found in '
        "issues/, the folder of the issue: create it there, one name per line",
        'issues/2020-12-24-save-our-socialists.md:28: "url" must be a full https:// address, such '
        'as https://example.org/page, not "/petition"',
        "issues/2020-12-24-save-our-socialists.md:31: {{unsubscribe_url}} is filled in by "
        "newsroom for the footer: it cannot be used in an issue",
        "issues/2020-12-24-save-our-socialists.md:33: the motion block opened here is never "
        'closed: add a line ":::" after its content',
    ]


def test_missing_front_matter_keys_and_bad_date(site: Site) -> None:
    assert problems(site, "---\ndate: 2020-13-01\n---\nText\n") == [
        'issues/2020-12-24-save-our-socialists.md:1: missing key "title" in the front matter '
        "(required: title, date)",
        'issues/2020-12-24-save-our-socialists.md:2: bad date "2020-13-01" for "date": write it '
        "as YYYY-MM-DD, such as 2020-12-24, or with a time: 2020-12-24 18:30 (in Europe/London), "
        "2020-12-24 18:30 Europe/Paris or 2020-12-24 18:30 +01:00",
    ]


LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("written", "instant"),
    [
        # a date alone: noon in site.timezone, the same day for readers from UTC-11 to UTC+11
        ("2026-11-20", dt.datetime(2026, 11, 20, 12, 0, tzinfo=LONDON)),
        ("2026-07-01", dt.datetime(2026, 7, 1, 11, 0, tzinfo=dt.UTC)),  # BST
        ("2026-11-20 18:30", dt.datetime(2026, 11, 20, 18, 30, tzinfo=LONDON)),
        ("2026-11-20 7:05", dt.datetime(2026, 11, 20, 7, 5, tzinfo=LONDON)),
        ("2026-11-20 18:30 America/New_York", dt.datetime(2026, 11, 20, 23, 30, tzinfo=dt.UTC)),
        ("2026-11-20 18:30 +01:00", dt.datetime(2026, 11, 20, 17, 30, tzinfo=dt.UTC)),
        ("2026-11-20 18:30 -05:30", dt.datetime(2026, 11, 21, 0, 0, tzinfo=dt.UTC)),
        ("2026-11-20 18:30 UTC", dt.datetime(2026, 11, 20, 18, 30, tzinfo=dt.UTC)),
        # the zone as `send --at` takes it too (one parser: clock.zone)
        ("2026-11-20 18:30 Z", dt.datetime(2026, 11, 20, 18, 30, tzinfo=dt.UTC)),
        ("2026-11-20 18:30 +0100", dt.datetime(2026, 11, 20, 17, 30, tzinfo=dt.UTC)),
        # the hour that comes twice when the clocks go back: the first one (still summer time)
        ("2026-10-25 01:30", dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)),
    ],
)
def test_the_date_gives_the_publication_instant(
    site: Site, written: str, instant: dt.datetime
) -> None:
    issue = load_issue(write(site, f"---\ntitle: T\ndate: {written}\n---\nText\n"), site.config)
    assert issue.published == instant
    assert issue.published.utcoffset() is not None
    assert issue.date == dt.date.fromisoformat(written[:10])  # the day as written, zone and all


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (
            "2026-11-20 25:00",
            'bad time "25:00" in "date": write HH:MM from 00:00 to 23:59, such as 18:30',
        ),
        (
            "2026-11-20 18:30:00",
            'bad date "2026-11-20 18:30:00" for "date": write it as YYYY-MM-DD, such as '
            "2020-12-24, or with a time: 2020-12-24 18:30 (in Europe/London), 2020-12-24 18:30 "
            "Europe/Paris or 2020-12-24 18:30 +01:00",
        ),
        (
            "2026-11-20 18:30 Europe/Londn",
            'unknown time zone "Europe/Londn" in "date": use a name such as Europe/London or an '
            "offset such as +01:00",
        ),
        (
            "2026-11-20 18:30 ../../../etc/passwd",
            'unknown time zone "../../../etc/passwd" in "date": use a name such as Europe/London '
            "or an offset such as +01:00",
        ),
        (
            "2026-11-20 18:30 +15:00",
            'bad UTC offset "+15:00" in "date": write +HH:MM or -HH:MM, such as +01:00',
        ),
        (
            "2026-03-29 01:30",
            "2026-03-29 01:30 does not exist in Europe/London: the clocks go forward then, "
            "choose another time",
        ),
        (
            "9999-12-31 23:59 -12:00",
            'the year 9999 in "date" is out of range: an issue is published between 1900 and 2999',
        ),
    ],
)
def test_a_bad_publication_time_is_reported_at_its_line(
    site: Site, written: str, message: str
) -> None:
    text = f"---\ntitle: T\nsummary: S\ndate: {written}\n---\nText\n"
    assert problems(site, text) == [f"issues/2020-12-24-save-our-socialists.md:4: {message}"]


def test_no_front_matter(site: Site) -> None:
    assert problems(site, "Just text\n") == [
        'issues/2020-12-24-save-our-socialists.md:1: an issue starts with front matter: a line "---", '
        'then "title: …" and "date: YYYY-MM-DD", then "---"',
    ]


def test_stray_close_nested_leaf_and_bad_segment(site: Site) -> None:
    text = """\
---
title: T
date: 2020-12-24
to: all-members and
---
:::

::: statement
by: X

::: action
url: https://example.org
:::
:::

::: only
x
:::
"""
    assert problems(site, text) == [
        'issues/2020-12-24-save-our-socialists.md:4: bad segment expression in "to": segment: '
        "expected a list, tag:NAME, segment:NAME, 'not' or '(', found the end at column 16",
        'issues/2020-12-24-save-our-socialists.md:6: ":::" closes no block: remove it, or open a '
        'block before it with "::: TYPE"',
        "issues/2020-12-24-save-our-socialists.md:11: a statement block cannot hold other blocks: "
        'close it with ":::" first',
        "issues/2020-12-24-save-our-socialists.md:16: the only block needs a segment expression "
        "after its type, such as ::: only disability-group",
    ]


def test_at_most_six_different_only_expressions(site: Site) -> None:
    names = ["all-members", "disability-group", "clp-secretaries", "press", "tag:a", "tag:b"]
    blocks_ = "".join(f"::: only {name}\nFor {name}.\n:::\n\n" for name in names)
    head = "---\ntitle: Save our socialists\ndate: 2020-12-24\n---\n"
    again = "::: only press\nPress, again.\n:::\n\n"  # a repeat adds no variant
    load_issue(write(site, head + blocks_ + again), site.config)
    seventh = "::: only not press\nEveryone else.\n:::\n"
    line = (head + blocks_ + again).count("\n") + 1
    assert problems(site, head + blocks_ + again + seventh) == [
        f"issues/2020-12-24-save-our-socialists.md:{line}: a 7th different `only` expression: "
        "each combination is an email variant to render, so an issue may use at most 6 (repeat "
        "an expression, or combine two with `or`)"
    ]


def test_file_name_must_be_dated(site: Site) -> None:
    assert problems(site, GOOD, name="save.md") == [
        "issues/save.md:1: name the issue file YYYY-MM-DD-slug.md, such as "
        "2020-12-24-save-our-socialists.md"
    ]


def test_supporters_source_file_next_to_the_issue(site: Site) -> None:
    (site.issues_dir / "names.txt").write_text("# comment\nRed Flag\n\nHavant CLP\n", "utf-8")
    text = GOOD.split("::: statement")[0] + "::: supporters Signed by\nsource: names.txt\n:::\n"
    issue = load_issue(write(site, text), site.config)
    assert issue.blocks[0].data == blocks.Supporters(("Red Flag", "Havant CLP"), "names.txt", "")


def test_meeting_uses_the_site_time_zone(site: Site) -> None:
    text = (
        GOOD.split("::: statement")[0]
        + "::: meeting M\nwhen: 2022-10-05 18:30\nuntil: 20:00\n:::\n"
    )
    data = load_issue(write(site, text), site.config).blocks[0].data
    assert isinstance(data, blocks.Meeting)
    assert data.start.utcoffset() == dt.timedelta(hours=1)  # BST in October
    assert data.when_words == "Wednesday 5 October 2022, 6.30pm–8pm"


def test_the_example_issues_are_valid_and_use_every_block_type() -> None:
    site = Site.open(ROOT)
    found = load_all(site)
    assert len(found) >= 5
    used = {block.type for issue in found for block in issue.blocks}
    assert used == set(blocks.SPECS)
    assert [i.published for i in found] == sorted((i.published for i in found), reverse=True)


def test_a_merge_field_in_a_link_address_is_refused(site: Site) -> None:
    text = (
        "---\ntitle: T\ndate: 2020-12-24\n---\n"
        "Please\nsign [the petition](https://example.org/sign?who={{email}}).\n"
    )
    assert problems(site, text) == [
        'issues/2020-12-24-save-our-socialists.md:6: link "https://example.org/sign?who={{email}}" '
        "has a merge field in its address: merge fields go in the text only"
    ]


SUPPORTERS = "---\ntitle: T\ndate: 2020-12-24\n---\n::: supporters Signed by\nsource: {}\n:::\n"
OUTSIDE = (
    'issues/2020-12-24-save-our-socialists.md:6: supporters file "{}" is outside the issues/ '
    "folder: an issue may only name files in issues/ (the file is published with it)"
)


def test_an_issue_names_only_files_inside_issues(site: Site) -> None:
    secret = (site.root / ".env").read_text(encoding="utf-8")
    (site.root / "elsewhere").mkdir()
    (site.root / "elsewhere" / "names.txt").write_text("Red Flag\n", encoding="utf-8")
    (site.issues_dir / "env-link.txt").symlink_to(site.root / ".env")
    (site.issues_dir / "dir-link").symlink_to(site.root / "elsewhere")
    for source in ("../.env", str(site.root / ".env"), "env-link.txt", "dir-link/names.txt"):
        with pytest.raises(ProblemsError) as caught:
            load_issue(write(site, SUPPORTERS.format(source)), site.config)
        assert [str(p) for p in caught.value.problems] == [OUTSIDE.format(source)]
        assert secret not in str(caught.value)
    (site.issues_dir / "names.txt").write_text("Red Flag\n", encoding="utf-8")
    (site.issues_dir / "inside-link.txt").symlink_to(site.issues_dir / "names.txt")
    issue = load_issue(write(site, SUPPORTERS.format("inside-link.txt")), site.config)
    assert isinstance(issue.blocks[0].data, blocks.Supporters)
    assert issue.blocks[0].data.names == ("Red Flag",)


def test_a_supporters_file_is_checked_at_its_own_lines(site: Site) -> None:
    names = site.issues_dir / "names.txt"
    names.write_text(
        "Red Flag\n{{first_name|Friends}} of the Earth\n{{unsubscribe_url}}\nA\x02B\n",
        encoding="utf-8",
    )
    assert problems(site, SUPPORTERS.format("names.txt")) == [
        "issues/names.txt:3: {{unsubscribe_url}} is filled in by newsroom for the footer: it "
        "cannot be used in an issue",
        "issues/names.txt:4: control character U+0002 at column 2: delete it (it is invisible, "
        "and often comes with text pasted from a PDF or a word processor)",
    ]
    names.write_bytes("Red Flag\nCaf\u00e9 Workers\n".encode("latin-1"))
    assert problems(site, SUPPORTERS.format("names.txt")) == [
        "issues/names.txt:2: not UTF-8 (byte 0xE9 at column 4): save the file as UTF-8"
    ]
    names.write_bytes(b"A name\n" * (blocks.MAX_SUPPORTERS_BYTES // 7 + 1))
    assert problems(site, SUPPORTERS.format("names.txt")) == [
        "issues/names.txt: the file is larger than 128 KB, the most newsroom reads: shorten it "
        "or split it in two"
    ]


def test_merge_fields_in_supporter_names_are_filled_like_the_body(site: Site) -> None:
    (site.issues_dir / "names.txt").write_text("{{first_name|Friends}} of the Earth\n", "utf-8")
    rendered = render(
        load_issue(write(site, SUPPORTERS.format("names.txt")), site.config), site.config
    )
    assert "<li>Friends of the Earth</li>" in rendered.public.content_html
    email = rendered.variants["email"]
    assert "{{first_name|Friends}} of the Earth" in email.html
    assert "- {{first_name|Friends}} of the Earth" in email.text
