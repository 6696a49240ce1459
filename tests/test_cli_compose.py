"""The composing commands as a volunteer runs them: new, check, preview."""

from __future__ import annotations

import shutil
import sqlite3
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from newsroom.models import MailingList, Subscriber, SubscriberTag, Subscription
from newsroom.site import Site
from tests.conftest import Run

ROOT = Path(__file__).resolve().parent.parent


def test_new_writes_a_skeleton_that_passes_check(cli: Run, site_dir: Path) -> None:
    result = cli("new", "Save our socialists!", "--date", "2020-12-24")
    assert result.exit_code == 0, result.output
    path = site_dir / "issues" / "2020-12-24-save-our-socialists.md"
    assert result.stdout.startswith(f"created {path}\n")
    text = path.read_text(encoding="utf-8")
    for block in ("statement", "meeting", "supporters", "motion", "action", "private", "only"):
        assert f"  ::: {block}" in text
    checked = cli("check", str(path))
    assert checked.exit_code == 0, checked.output
    assert "issues/2020-12-24-save-our-socialists.md: ok — 2 variants" in checked.stdout
    again = cli("new", "Save our socialists!", "--date", "2020-12-24")
    assert again.exit_code == 1
    assert again.stderr == f"Error: {path} already exists: choose another --slug or --date\n"


def test_check_reports_errors_with_file_and_line(cli: Run, site_dir: Path) -> None:
    path = site_dir / "issues" / "2020-12-24-bad.md"
    path.write_text("---\ntitle: Bad\ndate: 2020-12-24\n---\n::: poll\n:::\n", encoding="utf-8")
    result = cli("check")
    assert result.exit_code == 1
    assert result.stderr == (
        'issues/2020-12-24-bad.md:5: unknown block type "poll": use one of statement, meeting, '
        "supporters, motion, action, private, only\n"
    )


def test_check_reports_a_bad_publication_time_at_its_line(cli: Run, site_dir: Path) -> None:
    path = site_dir / "issues" / "2026-11-20-late.md"
    path.write_text(
        "---\ntitle: Late\nsummary: S\ndate: 2026-11-20 18:30 Europe/Pari\n---\nText.\n",
        encoding="utf-8",
    )
    result = cli("check", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        'issues/2026-11-20-late.md:4: unknown time zone "Europe/Pari" in "date": use a name such '
        "as Europe/London or an offset such as +01:00\n"
    )
    path.write_text("---\ntitle: Late\nsummary: S\ndate: 2026-11-20 18:30\n---\nText.\n")
    assert cli("check", str(path)).exit_code == 0


def test_check_warns_without_failing(cli: Run, site_dir: Path) -> None:
    path = site_dir / "issues" / "2020-12-24-vague.md"
    path.write_text(
        "---\ntitle: Vague\ndate: 2020-12-24\n---\nRead it [here](http://example.org).\n\n"
        "#### Deep\n",
        encoding="utf-8",
    )
    result = cli("check", str(path))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        'issues/2020-12-24-vague.md:1: warning: no "summary" in the front matter: it is the '
        "preview line inboxes show beside the subject",
        'issues/2020-12-24-vague.md:5: warning: link text "here" says nothing out of context: '
        "name where the link goes",
        'issues/2020-12-24-vague.md:5: warning: "http://example.org" is not https: use https:// '
        "if the site offers it",
        "issues/2020-12-24-vague.md:7: warning: heading level 4 after level 1: do not skip "
        "levels (use ##)",
    ]
    assert cli("check", "--strict", str(path)).exit_code == 1


def test_check_all_examples_pass() -> None:
    from click.testing import CliRunner

    from newsroom.cli.main import main

    result = CliRunner().invoke(main, ["--site", str(ROOT), "check", "--strict"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": ok — ") >= 5


def test_check_a_missing_or_non_utf8_issue(cli: Run, site_dir: Path) -> None:
    missing = cli("check", str(site_dir / "issues" / "2020-01-01-nope.md"))
    assert missing.exit_code == 1
    assert missing.stderr == "Error: issues/2020-01-01-nope.md: no such issue file\n"
    latin = site_dir / "issues" / "2020-01-02-latin.md"
    latin.write_bytes("---\ntitle: Caf\u00e9\ndate: 2020-01-02\n---\n".encode("latin-1"))
    wrong = cli("check", str(latin))
    assert wrong.exit_code == 1
    assert wrong.stderr == (
        "issues/2020-01-02-latin.md:2: not UTF-8 (byte 0xE9 at column 11): save the file as UTF-8\n"
    )


def test_preview_writes_the_files(cli: Run, site_dir: Path, tmp_path: Path) -> None:
    source = ROOT / "issues" / "2022-10-03-sln-bulletin.md"
    shutil.copy(source, site_dir / "issues")
    out = tmp_path / "preview"
    result = cli("preview", str(site_dir / "issues" / source.name), "--out", str(out))
    assert result.exit_code == 0, result.output
    names = ["email.html", "email.txt", "web.html", "email+1.html", "email+1.txt", "meeting-1.ics"]
    assert result.stdout.splitlines() == [
        "subject: SLN bulletin: all members meeting, the crisis, and NHS dentistry (variant email)",
        *(str(out / name) for name in names),
    ]
    assert result.stderr == (
        "email+1.html and email+1.txt have every only block (disability-group)\n"
    )
    text = (out / "email.txt").read_text(encoding="utf-8")
    assert "Dear comrade," in text
    assert "Unsubscribe: http://localhost:8000/unsubscribe/PREVIEW" in text
    assert "Socialist Disability Group" not in text  # the only block is for some members
    assert "Socialist Disability Group" in (out / "email+1.txt").read_text(encoding="utf-8")


def test_preview_as_a_subscriber(cli: Run, site: Site, site_dir: Path, tmp_path: Path) -> None:
    source = ROOT / "issues" / "2022-10-03-sln-bulletin.md"
    shutil.copy(source, site_dir / "issues")
    cli("lists")  # brings the lists into the database
    with Session(site.engine) as session:
        person = Subscriber(email="ann@example.org", name="<Ann> {{email}} Smith")
        session.add(person)
        session.flush()
        for slug in ("all-members", "disability-group"):
            lst = session.query(MailingList).filter_by(slug=slug).one()
            session.add(Subscription(subscriber_id=person.id, list_id=lst.id, status="confirmed"))
        session.add(SubscriberTag(subscriber_id=person.id, tag="union-rep"))
        session.commit()
    out = tmp_path / "ann"
    path = str(site_dir / "issues" / source.name)
    result = cli("preview", path, "--as", "ann@example.org", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "(variant email+1)" in result.stdout
    html = (out / "email.html").read_text(encoding="utf-8")
    assert "Dear &lt;Ann&gt;," in html and "Socialist Disability Group" in html
    assert "/unsubscribe/" in html and "PREVIEW" not in html
    text = (out / "email.txt").read_text(encoding="utf-8")
    assert "Dear <Ann>," in text
    unknown = cli("preview", path, "--as", "nobody@example.org", "--out", str(out))
    assert unknown.exit_code == 1
    assert unknown.stderr == (
        "Error: nobody@example.org is not a subscriber: see `newsroom subscribers show`\n"
    )


HEAD = "---\ntitle: T\ndate: 2021-01-01\n---\n"
LOL = '["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'
BOMB = (
    f"---\ntitle: T\ndate: 2021-01-01\na: &a {LOL}\n"
    + "".join(f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in pairwise("abcdefghi"))
    + "summary: *i\n---\nx\n"
)
HOSTILE = [
    (
        BOMB,  # "billion laughs": 9**9 strings from a few hundred bytes
        "4: YAML anchors and aliases (& and *) are not allowed in the front matter: write each "
        "value out",
    ),
    (
        "---\ntitle: T\ndate: 2021-01-01\nsummary: " + "[" * 1000 + "]" * 1000 + "\n---\nx\n",
        '4: the front matter nests lists or mappings more than 8 deep: use plain "key: value" lines',
    ),
    (
        "---\ntitle: T\ndate: 2021-01-01\nsummary: " + "x" * 20_000 + "\n---\nx\n",
        "1: the front matter is over 16 KB: it holds only the title, date, to, summary and slug",
    ),
    (
        HEAD + "x" * 70_000 + "\n",
        " the file is larger than 64 KB, the most newsroom reads: shorten it or split it in two",
    ),
    (
        HEAD + "::: private\n" * 1000 + "x\n" + ":::\n" * 1000,
        '11: blocks are nested more than 6 deep here: close some with ":::" first',
    ),
    (
        HEAD + "::: meeting A\nwhen: 9999-12-31 23:30\nuntil: 00:30\n:::\n",
        '6: the year 9999 in "when" is out of range: a meeting takes place between 1900 and 2999',
    ),
    (
        HEAD + "::: meeting B\nwhen: 0001-01-01 00:10\ntimezone: Asia/Tokyo\n:::\n",
        '6: the year 1 in "when" is out of range: a meeting takes place between 1900 and 2999',
    ),
    (
        HEAD + "One\n\nTwo\x02 three\n",
        "7: control character U+0002 at column 4: delete it (it is invisible, and often comes "
        "with text pasted from a PDF or a word processor)",
    ),
    (
        HEAD + "::: action Sign\nurl: https://[oops/page\n\nSign it.\n:::\n",
        '6: "url" must be a full https:// address, such as https://example.org/page, not '
        '"https://[oops/page"',
    ),
]


HOSTILE_IDS = [
    "alias-bomb",
    "deep-yaml",
    "big-front",
    "big-file",
    "deep-blocks",
    "y9999",
    "y1",
    "ctrl",
    "ipv6-url",
]


@pytest.mark.parametrize(("text", "said"), HOSTILE, ids=HOSTILE_IDS)
def test_hostile_issues_get_one_line_each(cli: Run, site_dir: Path, text: str, said: str) -> None:
    path = site_dir / "issues" / "2021-01-01-hostile.md"
    path.write_text(text, encoding="utf-8")
    result = cli("check", str(path))
    assert (result.exit_code, result.stderr) == (1, f"issues/2021-01-01-hostile.md:{said}\n")


LISTS = "lists: all-members, clp-secretaries, disability-group"
NAMES = """---
title: Names
date: 2021-03-01
to: al-members
summary: Lists and tags that are not the site's.
---
For everyone.

::: only Disability-Group
For the disability group.
:::

::: only tag:press or clp-secretaries
For the press.
:::
"""


def test_check_knows_the_sites_lists_and_tags(
    cli: Run, site: Site, site_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = site_dir / "issues" / "2021-03-01-names.md"
    path.write_text(NAMES, encoding="utf-8")
    unknown = [
        f"issues/2021-03-01-names.md:4: unknown list 'al-members' in \"to\" (did you mean "
        f"'all-members'? {LISTS})",
        f"issues/2021-03-01-names.md:9: unknown list 'Disability-Group' in \"only\" (did you "
        f"mean 'disability-group'? {LISTS})",
    ]
    checked = cli("check", "--strict")
    assert (checked.exit_code, checked.stdout, checked.stderr.splitlines()) == (1, "", unknown)
    sent = cli("send", str(path), "--dry-run")  # send: the same words, at the same lines
    assert (sent.exit_code, sent.stdout, sent.stderr.splitlines()) == (1, "", unknown)
    fixed = NAMES.replace("to: al-members", "to: all-members").replace(
        "Disability-Group", "disability-group"
    )
    path.write_text(fixed, encoding="utf-8")
    press = (
        "issues/2021-03-01-names.md:13: warning: no subscriber has the tag 'press' in \"only\" "
        "(tags come with imports and `subscribers add --tag`)"
    )
    warned = cli("check")
    assert (warned.exit_code, warned.stderr.splitlines()) == (0, [press]), warned.output
    assert cli("check", "--strict").exit_code == 1
    cli("lists")  # brings the lists into the database
    with Session(site.engine) as session:
        person = Subscriber(email="ann@example.org", name="Ann")
        session.add(person)
        session.flush()
        session.add(SubscriberTag(subscriber_id=person.id, tag="press"))
        session.commit()
    tagged = cli("check", "--strict")
    assert (tagged.exit_code, tagged.stderr) == (0, ""), tagged.output
    # A database that is not set up, or not there, says nothing about tags: they come with
    # imports. And `check` makes no database file where there was none.
    path.write_text(fixed.replace("tag:press", "tag:nobody-has-it"), encoding="utf-8")
    empty, missing = tmp_path / "empty.db", tmp_path / "missing.db"
    sqlite3.connect(empty).close()
    for database in (empty, missing):
        monkeypatch.setenv("NEWSROOM_DATABASE_URL", f"sqlite:///{database}")
        bare = cli("check", "--strict")
        assert (bare.exit_code, bare.stderr) == (0, ""), bare.output
    assert not missing.exists()


def test_send_to_an_unknown_list_names_the_sites_lists(
    cli: Run, site: Site, site_dir: Path
) -> None:
    (site_dir / "issues" / "2021-03-01-names.md").write_text(
        NAMES.replace("to: al-members", "to: all-members").replace(
            "Disability-Group", "disability-group"
        ),
        encoding="utf-8",
    )
    refused = cli("send", "names", "--to", "all-members or al-members", "--dry-run")
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr.splitlines() == [
        f"Error: segment: unknown list 'al-members' at column 16 (did you mean 'all-members'? "
        f"{LISTS})",
        "  all-members or al-members",
        "                 ^",
    ]


def test_check_reports_a_broken_lists_file(cli: Run, site_dir: Path) -> None:
    (site_dir / "issues" / "2021-03-01-names.md").write_text(NAMES, encoding="utf-8")
    (site_dir / "subscribers" / "lists.toml").write_text("[all-members\n", encoding="utf-8")
    checked = cli("check")
    assert checked.exit_code == 1
    assert checked.stderr.splitlines()[0].startswith("subscribers/lists.toml:1: ")
