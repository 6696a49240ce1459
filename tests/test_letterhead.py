"""A list that sends as itself (issue #16, item 4): its sender and reply-to in lists.toml,
checked at their lines; a mailing's From, Reply-To, List-Id and footer as a real SMTP server
receives them; `send --from`; a resumed mailing keeping the sender it began with; placeholder
and DMARC-unaligned list senders refused or warned about."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result

from newsroom.delivery import dispatch, doctor, outbox, readiness
from newsroom.site import Site
from tests.conftest import Run
from tests.sendhelp import subscribe
from tests.smtpserver import TestSMTPServer

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DG = "Disability Group <disability@dg.example.net>"
LISTS = """\
[all-members]
name = "All members"

[disability-group]
name = "Disability Group"
public = true
sender = "Disability Group <disability@dg.example.net>"
reply_to = "dg-committee@dg.example.net"

[clp-secretaries]
name = "CLP secretaries"
reply_to = "secretaries@example.net"
"""
SENDER_LINE = 7  # of disability-group's sender in LISTS


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(result: Result, words: str) -> str:
    assert result.exit_code == 1, result.output
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


@pytest.fixture
def opened(
    site_dir: Path, smtp_server: TestSMTPServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Site]:
    monkeypatch.setenv("NEWSROOM_SENDING_RATE", "100000/second")
    (site_dir / "subscribers" / "lists.toml").write_text(LISTS, encoding="utf-8")
    (site_dir / "issues" / "2026-11-20-news.md").write_text(
        "---\ntitle: News\ndate: 2026-11-20\nto: disability-group\nsummary: The news.\n---\n"
        "Dear {{first_name|friend}}, hello.\n",
        encoding="utf-8",
    )
    site = Site.open(site_dir)
    subscribe(site, 2, "disability-group")
    subscribe(site, 1, "all-members", start=2)
    subscribe(site, 1, "clp-secretaries", start=3)
    yield site
    site.close()


def test_a_list_sends_as_itself(cli: Run, opened: Site, smtp_server: TestSMTPServer) -> None:
    ok(cli("send", "news", "--yes"))
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "p0@example.net",
        "p1@example.net",
    ]
    message = smtp_server.to("p0@example.net")[0]
    assert message.message["From"] == DG
    assert message.message["Reply-To"] == "dg-committee@dg.example.net"
    assert message.message["List-Id"] == "Disability Group <disability-group.localhost>"
    assert message.message["Message-ID"].endswith("@dg.example.net>")
    footer = "You get this email because you subscribed to Disability Group, a list of Test"
    assert footer in " ".join(message.body("plain").split())
    assert footer in " ".join(message.body("html").split())
    shown = ok(cli("mailings", "show", "1"))
    assert f"from:    {DG}" in shown
    assert json.loads(ok(cli("mailings", "show", "1", "--json")))["from"] == DG


def test_the_first_list_outside_not_names_the_mailing(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    ok(cli("send", "news", "--to", "not clp-secretaries and all-members", "--yes"))
    message = smtp_server.to("p2@example.net")[0].message
    assert message["From"] == "Newsroom <newsroom@example.org>"  # all-members has no sender
    assert message["Reply-To"] is None
    assert message["List-Id"] == "All members <all-members.localhost>"


def test_a_list_may_give_only_a_reply_to(
    cli: Run, opened: Site, smtp_server: TestSMTPServer
) -> None:
    ok(cli("send", "news", "--to", "clp-secretaries", "--yes"))
    message = smtp_server.to("p3@example.net")[0].message
    assert message["From"] == "Newsroom <newsroom@example.org>"
    assert message["Reply-To"] == "secretaries@example.net"


@pytest.mark.parametrize("chosen", ["site", "newsroom@example.org"])
def test_from_chooses_another_configured_sender(
    cli: Run, opened: Site, smtp_server: TestSMTPServer, chosen: str
) -> None:
    ok(cli("send", "news", "--from", chosen, "--yes"))
    message = smtp_server.to("p0@example.net")[0].message
    assert message["From"] == "Newsroom <newsroom@example.org>"
    assert message["List-Id"] == "Disability Group <disability-group.localhost>"  # still its list


def test_from_a_list_by_its_slug(cli: Run, opened: Site, smtp_server: TestSMTPServer) -> None:
    ok(cli("send", "news", "--to", "all-members", "--from", "disability-group", "--yes"))
    message = smtp_server.to("p2@example.net")[0].message
    assert (message["From"], message["List-Id"]) == (DG, "All members <all-members.localhost>")


def test_from_anything_else_is_an_error_listing_the_choices(cli: Run, opened: Site) -> None:
    stderr = fails(cli("send", "news", "--from", "boss@example.net", "--yes"), "--from")
    assert stderr.strip() == (
        "Error: --from 'boss@example.net' is not one of the configured senders: give one of site "
        f"(Newsroom <newsroom@example.org>); disability-group ({DG}) (a list sends as itself "
        'with sender = "..." in subscribers/lists.toml)'
    )
    fails(
        cli("send", "--resume", "1", "--from", "site"), "--resume ID takes no ISSUE, --to, --from"
    )


def test_a_resumed_mailing_keeps_its_sender(
    cli: Run, opened: Site, site_dir: Path, smtp_server: TestSMTPServer
) -> None:
    prepared = dispatch.prepare(opened, "news", None, NOW)
    created = outbox.create(opened, prepared.planned, prepared.expression, again=False, now=NOW)
    lists_file = site_dir / "subscribers" / "lists.toml"
    lists_file.write_text(LISTS.replace("disability@dg", "someone-else@dg"), encoding="utf-8")
    ok(cli("send", "--resume", str(created.mailing_id)))
    assert smtp_server.to("p1@example.net")[0].message["From"] == DG


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('sender = "Disability Group"', "[disability-group] sender: 'Disability Group' has no "
         "email address (write Disability Group <disability@your-organisation.org>)"),
        ('sender = "x@localhost"', "[disability-group] sender: 'x@localhost' has no email address"),
        ('sender = 3', "[disability-group] sender must be text in quotes"),
        ('reply_to = "nobody"', "[disability-group] reply_to: 'nobody' has no email address"),
    ],
)  # fmt: skip
def test_a_bad_list_sender_is_an_error_at_its_line(
    cli: Run, opened: Site, site_dir: Path, line: str, words: str
) -> None:
    key = line.split(" ")[0]
    text = "\n".join(
        line if row.startswith(f"{key} =") and n in (7, 8) else row
        for n, row in enumerate(LISTS.splitlines(), 1)
    )
    (site_dir / "subscribers" / "lists.toml").write_text(text, encoding="utf-8")
    number = SENDER_LINE if key == "sender" else SENDER_LINE + 1
    fails(cli("lists"), f"subscribers/lists.toml:{number}: {words}")
    fails(cli("send", "news", "--yes"), f"subscribers/lists.toml:{number}: {words}")


def test_a_real_mailing_from_a_placeholder_list_sender_is_refused(
    cli: Run, opened: Site, monkeypatch: pytest.MonkeyPatch, smtp_server: TestSMTPServer
) -> None:
    for name, value in {
        "NEWSROOM_SITE_LOCAL": "false",
        "NEWSROOM_SITE_BASE_URL": "https://news.labourleft.org",
        "NEWSROOM_SITE_SENDER": "Labour Left <news@labourleft.org>",
        "NEWSROOM_SENDING_BOUNCE_ADDRESS": "bounces@labourleft.org",
    }.items():
        monkeypatch.setenv(name, value)
    stderr = fails(cli("send", "news", "--yes"), "a real mailing cannot go out")
    assert f"the list's sender (subscribers/lists.toml) is {DG!r}: its domain is an example" in (
        stderr
    )
    assert smtp_server.messages == []
    dry = cli("send", "news", "--dry-run")
    assert dry.exit_code == 0
    assert (
        f"subscribers/lists.toml:{SENDER_LINE}: warning: [disability-group] sender {DG!r}: its "
        "domain is an example domain, not yours; a mailing from it through a real relay is "
        "refused"
    ) in dry.stderr
    ok(cli("send", "news", "--from", "site", "--yes"))  # the site's own sender is real
    assert (
        smtp_server.to("p0@example.net")[0].message["From"] == "Labour Left <news@labourleft.org>"
    )


def test_check_warns_when_dmarc_would_not_align(
    cli: Run, opened: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_DKIM_DOMAIN", "labourleft.org")
    result = cli("check")
    assert result.exit_code == 0, result.output
    assert (
        f"subscribers/lists.toml:{SENDER_LINE}: warning: [disability-group] sender {DG!r} is not "
        "at dkim.domain labourleft.org"
    ) in result.stderr
    assert "RFC 7489" in result.stderr
    assert cli("check", "--strict").exit_code == 1
    report = json.loads(ok(cli("check", "--json")))
    assert report[-1]["path"] == "subscribers/lists.toml" and report[-1]["warnings"]


def test_doctor_holds_list_senders_to_the_site_senders_rules(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [
        readiness.ListSender("dg", "DG <dg@example.org>", 3),
        readiness.ListSender("north", "North <north@north.labourleft.org>", 9),
    ]
    checks = doctor.list_sender_checks(Site.open(site_dir).config, entries)
    assert [(c.name, c.status) for c in checks] == [
        ("list dg", doctor.PROBLEM),
        ("list north", doctor.OK),
    ]
    monkeypatch.setenv("NEWSROOM_DKIM_DOMAIN", "labourleft.net")
    unaligned = doctor.list_sender_checks(Site.open(site_dir).config, entries[1:])
    assert unaligned[0].status == doctor.WARNING and "RFC 7489" in unaligned[0].detail
