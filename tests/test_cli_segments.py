"""Saved segments from the command line (issue #16, item 2): `newsroom segments`, `newsroom
segment segment:NAME`, `check` naming the unknown ones at the issue's line, and a mailing to
`segment:NAME` (in `--to`, `to:` or an `only` block) keeping what it meant when it was made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import insert, select

from newsroom.database import transaction
from newsroom.models import Subscriber, SubscriberTag
from newsroom.site import Site
from tests.conftest import Run
from tests.sendhelp import subscribe_people
from tests.smtpserver import TestSMTPServer

SEGMENTS = """\
# Saved segments of the test site
[north]
expr = "tag:north"
description = "Members in the north"

[north-and-access]
expr = "segment:north or tag:access-needs"
description = "North, and everyone who asked for accessible formats"

[dg-north]
expr = "disability-group and segment:north"
"""
ISSUE = """\
---
title: News
date: 2026-11-20
to: segment:north-and-access
summary: The news.
---
Hello.

::: only segment:dg-north
For the Disability Group in the north.
:::
"""


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(result: Result, words: str) -> str:
    assert result.exit_code == 1, result.output
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


@pytest.fixture
def saved(
    cli: Run, site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    (site_dir / "subscribers" / "segments.toml").write_text(SEGMENTS, encoding="utf-8")
    (site_dir / "issues" / "2026-11-20-news.md").write_text(ISSUE, encoding="utf-8")
    site = Site.open(site_dir)
    subscribe_people(site, {"ann@example.net": "Ann", "bob@example.net": "Bob"}, "all-members")
    subscribe_people(site, {"cat@example.net": "Cat", "dan@example.net": "Dan"}, "disability-group")
    tags = {
        "ann@example.net": "north",
        "cat@example.net": "north",
        "dan@example.net": "access-needs",
    }
    with transaction(site.engine) as session:
        ids = {e: i for e, i in session.execute(select(Subscriber.email, Subscriber.id))}
        session.execute(
            insert(SubscriberTag), [{"subscriber_id": ids[e], "tag": t} for e, t in tags.items()]
        )
    yield site
    site.close()


def test_segments_lists_each_with_its_count(cli: Run, saved: Site) -> None:
    out = ok(cli("segments"))
    assert out.splitlines() == [
        "north                   2  tag:north",
        "                           Members in the north",
        "north-and-access        3  segment:north or tag:access-needs",
        "                           North, and everyone who asked for accessible formats",
        "dg-north                1  disability-group and segment:north",
    ]
    rows = json.loads(ok(cli("segments", "--json")))
    assert [(r["name"], r["count"]) for r in rows] == [
        ("north", 2),
        ("north-and-access", 3),
        ("dg-north", 1),
    ]
    assert rows[0] == {
        "name": "north",
        "expr": "tag:north",
        "description": "Members in the north",
        "count": 2,
    }


def test_a_saved_segment_with_a_tag_nobody_has_says_so(
    cli: Run, saved: Site, site_dir: Path
) -> None:
    path = site_dir / "subscribers" / "segments.toml"
    path.write_text(SEGMENTS + '[youth]\nexpr = "tag:youth"\n', encoding="utf-8")
    rows = {r["name"]: r for r in json.loads(ok(cli("segments", "--json")))}
    assert rows["youth"]["count"] is None
    assert "unknown tag 'youth' in segment:youth" in rows["youth"]["problem"]


def test_no_saved_segments(cli: Run) -> None:
    assert ok(cli("segments")).startswith("no saved segments: name some in ")
    assert json.loads(ok(cli("segments", "--json"))) == []


def test_segment_takes_a_name(cli: Run, saved: Site) -> None:
    out = ok(cli("segment", "segment:north-and-access and not disability-group"))
    assert out.splitlines()[:2] == [
        "1 subscriber match 'segment:north-and-access and not disability-group'",
        "  (= (tag:north or tag:access-needs) and not disability-group)",
    ]
    data = json.loads(ok(cli("segment", "segment:north", "--json")))
    assert data == {
        "expression": "segment:north",
        "count": 2,
        "expanded": "tag:north",
        "first": ["ann@example.net", "cat@example.net"],
    }


def test_segment_errors(cli: Run, saved: Site, site_dir: Path) -> None:
    fails(cli("segment", "segment:nort"), "unknown saved segment 'nort' at column 1 (did you mean")
    fails(cli("segment", "north"), "a saved segment has that name: write segment:north")
    (site_dir / "subscribers" / "segments.toml").write_text(
        SEGMENTS + '[loop]\nexpr = "segment:loop"\n', encoding="utf-8"
    )
    fails(cli("segment", "segment:north"), "subscribers/segments.toml:13: [loop] leads back")
    fails(cli("segments"), "subscribers/segments.toml:13: [loop] leads back to itself")


def test_check_names_an_unknown_saved_segment_at_the_issue_line(
    cli: Run, saved: Site, site_dir: Path
) -> None:
    ok(cli("check"))
    path = site_dir / "issues" / "2026-11-20-news.md"
    path.write_text(ISSUE.replace("segment:dg-north", "segment:dg-nort"), encoding="utf-8")
    fails(
        cli("check"),
        "issues/2026-11-20-news.md:9: unknown saved segment 'dg-nort' in \"only\" (did you "
        "mean 'segment:dg-north'? saved segments: dg-north, north, north-and-access)",
    )
    fails(cli("send", "news", "--yes"), "issues/2026-11-20-news.md:9: unknown saved segment")


def test_check_reports_segments_toml_errors(cli: Run, saved: Site, site_dir: Path) -> None:
    (site_dir / "subscribers" / "segments.toml").write_text(
        SEGMENTS + '[bad]\nexpr = "no-such-list"\n', encoding="utf-8"
    )
    fails(cli("check"), "subscribers/segments.toml:13: [bad] unknown list 'no-such-list'")


def test_a_mailing_to_a_saved_segment_keeps_what_it_meant(
    cli: Run, saved: Site, site_dir: Path, smtp_server: TestSMTPServer
) -> None:
    dry = cli("send", "news", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert sorted(dry.stdout.splitlines()) == [
        "ann@example.net\temail",
        "cat@example.net\temail+1",  # on the Disability Group, in the north: the only block
        "dan@example.net\temail",
    ]
    ok(cli("send", "news", "--yes"))
    assert "For the Disability Group" in smtp_server.to("cat@example.net")[0].body()
    assert "For the Disability Group" not in smtp_server.to("ann@example.net")[0].body()
    shown = ok(cli("mailings", "show", "1"))
    assert "to:      segment:north-and-access (= tag:north or tag:access-needs)" in shown
    row = json.loads(ok(cli("mailings", "show", "1", "--json")))
    assert (row["to"], row["expression"]) == (
        "segment:north-and-access",
        "tag:north or tag:access-needs",
    )
    # The name changes meaning later: the mailing does not.
    (site_dir / "subscribers" / "segments.toml").write_text(
        SEGMENTS.replace('expr = "tag:north"', 'expr = "all-members"'), encoding="utf-8"
    )
    assert json.loads(ok(cli("mailings", "--json")))[0]["expression"] == (
        "tag:north or tag:access-needs"
    )


def test_send_to_a_saved_segment_from_the_command_line(
    cli: Run, saved: Site, smtp_server: TestSMTPServer
) -> None:
    ok(cli("send", "news", "--to", "segment:north and all-members", "--yes"))
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["ann@example.net"]
    fails(cli("send", "news", "--to", "segment:south", "--yes"), "unknown saved segment 'south'")
