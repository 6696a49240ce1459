"""The lists, subscribers and segment commands as a volunteer sees them: words and exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from newsroom.errors import NewsroomError
from newsroom.models import utcnow
from newsroom.people import importrows, imports, lists, subscribers
from newsroom.site import Site
from tests.conftest import Run
from tests.smtpserver import TestSMTPServer, free_port


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.stderr
    return result.stdout


def fails(result: Result, message: str) -> str:
    stderr = result.stderr
    assert result.exit_code == 1, result.stdout
    assert message in stderr, stderr
    assert "Traceback" not in stderr
    return stderr


@pytest.fixture
def members(cli: Run, tmp_path: Path) -> Run:
    csv = tmp_path / "members.csv"
    csv.write_text(
        "email,name,tags,lists\n"
        "ann@example.org,Ann Lee,access-needs,disability-group\n"
        "bob@example.com,Bob Roy,,clp-secretaries\n"
        "cat@example.org,Cat Poe,press,\n",
        encoding="utf-8",
    )
    ok(
        cli(
            "subscribers",
            "import",
            str(csv),
            "--list",
            "all-members",
            "--confirmed",
            "--consent",
            "AGM 2025",
        )
    )
    return cli


def test_lists_shows_counts(members: Run) -> None:
    out = ok(members("lists"))
    assert "all-members" in out and "confirmed" in out
    rows = {r["slug"]: r for r in json.loads(ok(members("lists", "--json")))}
    assert rows["all-members"]["counts"]["confirmed"] == 3
    assert rows["clp-secretaries"]["public"] is False


def test_lists_refuses_removing_a_list_people_are_on(members: Run, site_dir: Path) -> None:
    path = site_dir / "subscribers" / "lists.toml"
    text = path.read_text()
    path.write_text(text[: text.index("[clp-secretaries]")])
    fails(
        members("lists"), "subscribers/lists.toml: list 'clp-secretaries' was removed but 1 subscr"
    )
    path.write_text(text)
    ok(members("subscribers", "remove", "--all", "--list", "clp-secretaries"))
    path.write_text(text[: text.index("[clp-secretaries]")])
    ok(members("lists"))


def test_lists_with_a_broken_file(cli: Run, site_dir: Path) -> None:
    (site_dir / "subscribers" / "lists.toml").write_text("[x]\nname = 'X'\nopt_in = 'maybe'\n")
    fails(cli("lists"), 'subscribers/lists.toml:3: [x] opt_in must be "double" or "single"')


def test_add_sends_one_confirmation(cli: Run, smtp_server: TestSMTPServer) -> None:
    out = ok(
        cli(
            "subscribers",
            "add",
            "ann@example.org",
            "--list",
            "all-members",
            "--list",
            "disability-group",
            "--name",
            "Ann",
            "--tag",
            "press",
        )
    )
    assert "ann@example.org all-members: pending" in out
    assert "sent a confirmation email to ann@example.org" in out
    out = ok(cli("subscribers", "add", "ann@example.org", "--list", "all-members"))
    assert "less than 24 hours ago" in out
    assert len(smtp_server.messages) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ann@example.org", "--list", "nope"], "Error: unknown list 'nope' (lists: all-members"),
        (
            ["not-an-address", "--list", "all-members"],
            "Error: 'not-an-address' is not an email address",
        ),
        (
            ["ann@example.org", "--list", "all-members", "--name", "Ann\r\nBcc: x@example.net"],
            "line break",
        ),
        (["ann@example.org", "--list", "all-members", "--tag", "Bad Tag"], "Error: tag 'bad tag'"),
        (["  ", "--list", "all-members"], "Error: no email address given"),
    ],
)
def test_add_errors(cli: Run, args: list[str], message: str) -> None:
    fails(cli("subscribers", "add", *args), message)


def test_add_when_the_relay_is_down(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(free_port()))
    fails(
        cli("subscribers", "add", "ann@example.org", "--list", "all-members"),
        "SMTP relay",
    )


def test_import_reports_every_bad_row(cli: Run, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("email,name\nann@example.org,Ann\nnope,X\nbob@,Y\n", encoding="utf-8")
    err = fails(
        cli(
            "subscribers",
            "import",
            str(csv),
            "--list",
            "all-members",
            "--confirmed",
            "--consent",
            "x",
        ),
        "bad.csv:3: 'nope'",
    )
    assert "bad.csv:4: 'bob@'" in err and "bad.csv: nothing imported: 2 row(s) are wrong" in err
    out = ok(
        cli(
            "subscribers",
            "import",
            str(csv),
            "--list",
            "all-members",
            "--confirmed",
            "--consent",
            "x",
            "--skip-invalid",
        )
    )
    assert "3 rows: 1 new, 0 updated, 0 unchanged, 0 duplicates, 0 skipped, 2 rejected; " in out
    assert "1 subscriptions confirmed" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--confirmed"], 'Error: --confirmed needs --consent "TEXT"'),
        (["--consent", "x"], "Error: --consent is only for --confirmed imports"),
        (["--list", "nope", "--confirmed", "--consent", "x"], "Error: unknown list 'nope'"),
    ],
)
def test_import_option_errors(cli: Run, tmp_path: Path, args: list[str], message: str) -> None:
    csv = tmp_path / "ok.csv"
    csv.write_text("email,lists\nann@example.org,all-members\n", encoding="utf-8")
    fails(cli("subscribers", "import", str(csv), *args), message)


def test_import_missing_file(cli: Run, tmp_path: Path) -> None:
    fails(
        cli("subscribers", "import", str(tmp_path / "nope.csv"), "--list", "all-members"),
        "cannot read",
    )


def test_import_pending_sends_confirmations(
    cli: Run, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    csv = tmp_path / "new.csv"
    csv.write_text("email\nann@example.org\nbob@example.org\n", encoding="utf-8")
    out = ok(cli("subscribers", "import", str(csv), "--list", "all-members"))
    assert "2 subscriptions pending" in out and "2 confirmation emails sent" in out
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "ann@example.org",
        "bob@example.org",
    ]


def recipients(smtp_server: TestSMTPServer) -> list[str]:
    return sorted(m.rcpt_tos[0] for m in smtp_server.messages)


def test_confirmations_a_failed_relay_left_unsent_are_sent_later(
    cli: Run, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    csv = tmp_path / "new.csv"
    csv.write_text("email\nann@example.org\nbob@example.org\ncat@example.org\n", "utf-8")
    smtp_server.fail("RCPT", 451, "4.3.0 Try again later", match="bob@")
    err = fails(
        cli("subscribers", "import", str(csv), "--list", "all-members"),
        "new.csv: imported, but the SMTP relay",
    )
    assert "1 of 3 confirmation emails sent: send the rest with " in err
    assert "`newsroom subscribers send-confirmations`" in err
    assert recipients(smtp_server) == ["ann@example.org"]
    smtp_server.reset()
    assert ok(cli("subscribers", "send-confirmations")) == "sent 2 confirmation emails\n"
    assert recipients(smtp_server) == ["bob@example.org", "cat@example.org"]
    assert ok(cli("subscribers", "send-confirmations")) == "sent 0 confirmation emails\n"


def test_send_confirmations_after_an_import_without_email_reminds_nobody_else(
    cli: Run, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    ok(cli("subscribers", "add", "dan@example.org", "--list", "all-members"))
    csv = tmp_path / "new.csv"
    csv.write_text("email\nann@example.org\n", "utf-8")
    out = ok(cli("subscribers", "import", str(csv), "--list", "all-members", "--no-email"))
    assert "0 confirmation emails sent" in out
    smtp_server.reset()
    assert ok(cli("subscribers", "send-confirmations")) == "sent 1 confirmation emails\n"
    assert recipients(smtp_server) == ["ann@example.org"]  # dan had his when he was added


def test_send_confirmations_catches_up_on_web_requests_made_while_the_relay_was_down(
    cli: Run, site_dir: Path, smtp_server: TestSMTPServer
) -> None:
    site = Site.open(site_dir)
    try:
        lists.sync(site)
        smtp_server.fail("RCPT", 451, "4.3.0 Try again later")  # the relay is having a bad day
        args: dict[str, Any] = {"ip": "192.0.2.7", "user_agent": "Firefox", "now": utcnow()}
        with pytest.raises(NewsroomError):  # the web side logs this and answers as ever
            subscribers.subscribe(site, "ann@example.org", "Ann", ["all-members"], **args)
    finally:
        site.close()
    smtp_server.reset()
    assert ok(cli("subscribers", "send-confirmations")) == "sent 1 confirmation emails\n"
    assert recipients(smtp_server) == ["ann@example.org"]


def test_an_address_the_relay_cannot_take_is_named_and_holds_up_nobody(
    cli: Run, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    smtp_server.smtputf8 = False
    why = (
        f"the relay 127.0.0.1:{smtp_server.port} does not offer SMTPUTF8 (RFC 6531), needed for "
        "an address with non-ASCII characters before the @"
    )
    added = cli("subscribers", "add", "josé@bücher.example", "--list", "all-members")
    assert fails(added, why) == f"Error: {why}\n"
    csv = tmp_path / "new.csv"
    csv.write_text("email\nzoë@example.org\nann@example.org\nanna@münchen.de\n", "utf-8")
    imported = cli("subscribers", "import", str(csv), "--list", "all-members")
    assert fails(imported, why) == (
        f"Error: new.csv: imported, but 2 of 3 confirmation emails sent; not to "
        f"zoë@example.org: {why}\n"
    )
    assert recipients(smtp_server) == ["ann@example.org", "anna@xn--mnchen-3ya.de"]
    smtp_server.reset()
    again = cli("subscribers", "send-confirmations")
    assert fails(again, why) == (
        f"Error: 0 of 2 confirmation emails sent; not to josé@bücher.example, "
        f"zoë@example.org: {why}\n"
    )
    smtp_server.smtputf8 = True
    assert ok(cli("subscribers", "send-confirmations")) == "sent 2 confirmation emails\n"
    assert recipients(smtp_server) == ["josé@xn--bcher-kva.example", "zoë@example.org"]


def test_a_dkim_key_that_cannot_be_read_holds_every_confirmation_back(
    cli: Run,
    site_dir: Path,
    tmp_path: Path,
    smtp_server: TestSMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Confirmations are signed like every message: with a DKIM key set that cannot be read,
    none goes out unsigned, the error names the setting, and they go once it is fixed."""
    monkeypatch.setenv("NEWSROOM_DKIM_DOMAIN", "example.org")
    monkeypatch.setenv("NEWSROOM_DKIM_SELECTOR", "news")
    monkeypatch.setenv("NEWSROOM_DKIM_KEY_FILE", "missing.pem")
    why = f"dkim.key_file: cannot read {site_dir / 'missing.pem'}: No such file or directory"
    added = cli("subscribers", "add", "ann@example.org", "--list", "all-members")
    assert fails(added, why) == f"Error: {why}\n"
    csv = tmp_path / "new.csv"
    csv.write_text("email\nbob@example.org\n", "utf-8")
    imported = cli("subscribers", "import", str(csv), "--list", "all-members")
    assert fails(imported, why) == f"Error: new.csv: imported, but {why}\n"
    assert smtp_server.messages == []
    monkeypatch.delenv("NEWSROOM_DKIM_DOMAIN")  # or the key put in place
    assert ok(cli("subscribers", "send-confirmations")) == "sent 2 confirmation emails\n"
    assert recipients(smtp_server) == ["ann@example.org", "bob@example.org"]


def test_send_confirmations_with_no_relay(
    cli: Run, site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(free_port()))
    csv = site_dir / "new.csv"
    csv.write_text("email\nann@example.org\n", "utf-8")
    ok(cli("subscribers", "import", str(csv), "--list", "all-members", "--no-email"))
    fails(cli("subscribers", "send-confirmations"), "cannot reach the SMTP relay")


def test_export_csv_and_json(members: Run) -> None:
    out = ok(members("subscribers", "export", "--list", "disability-group"))
    assert (
        out
        == "email,name,tags,lists\nann@example.org,Ann Lee,access-needs,all-members disability-group\n"
    )
    lines = ok(members("subscribers", "export", "--format", "json")).splitlines()
    assert [json.loads(line)["email"] for line in lines] == [
        "ann@example.org",
        "bob@example.com",
        "cat@example.org",
    ]
    fails(members("subscribers", "export", "--list", "nope"), "Error: unknown list 'nope'")


def test_export_csv_cells_cannot_be_formulas(cli: Run, tmp_path: Path) -> None:
    """Names come from the public form: one such as `=cmd|' /C calc'!A0` would run when a
    volunteer opens the export in a spreadsheet (OWASP CSV injection). In the CSV such cells get
    a leading single quote, which an import takes off again; the JSON stays exact."""
    people = {
        "=cmd@example.org": "=cmd|' /C calc'!A0",
        "plus@example.org": "+44 20 7946 0000",
        "-minus@example.org": "-1+1",
        "at@example.org": "@SUM(A1:A9)",
        "ann@example.org": "Ann Lee",
    }
    source = tmp_path / "people.csv"
    with source.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name"])
        writer.writerows(people.items())
    ok(cli("subscribers", "import", str(source), "--list", "all-members", "--confirmed",
           "--consent", "AGM 2025"))  # fmt: skip
    exported = ok(cli("subscribers", "export"))
    rows = {row["email"]: row["name"] for row in csv.DictReader(io.StringIO(exported))}
    assert rows == {
        "'=cmd@example.org": "'=cmd|' /C calc'!A0",
        "plus@example.org": "'+44 20 7946 0000",
        "'-minus@example.org": "'-1+1",
        "at@example.org": "'@SUM(A1:A9)",
        "ann@example.org": "Ann Lee",
    }
    as_json = [json.loads(line) for line in ok(cli("subscribers", "export", "--format", "json"))
               .splitlines()]  # fmt: skip
    assert {row["email"]: row["name"] for row in as_json} == people
    again = tmp_path / "exported.csv"
    again.write_text(exported, encoding="utf-8")
    read_back = importrows.read_rows(importrows.open_file(again), [], {"all-members"})
    assert {r.email: r.name for r in read_back if isinstance(r, importrows.Row)} == people


def test_spreadsheet_safe_covers_owasps_characters() -> None:
    for cell in ("=1", "+1", "-1", "@A1", "\t=1", "\r=1"):
        assert imports.spreadsheet_safe(cell) == "'" + cell
    for cell in ("Ann", "", "1-2", "a=b", "'quoted"):
        assert imports.spreadsheet_safe(cell) == cell


def test_show(members: Run) -> None:
    out = ok(members("subscribers", "show", "ann@example.org"))
    assert (
        "Ann Lee" in out
        and "disability-group" in out
        and "imported" in out
        and "consent text " in out
    )
    data = json.loads(ok(members("subscribers", "show", "ANN@example.org", "--json")))
    assert data["ledger"][0]["consent_text"] == "AGM 2025"
    fails(
        members("subscribers", "show", "zed@example.org"),
        "Error: no subscriber with the address zed@example.org",
    )


def test_remove(members: Run) -> None:
    assert "unsubscribed ann@example.org from disability-group" in ok(
        members("subscribers", "remove", "ann@example.org", "--list", "disability-group")
    )
    assert "nothing to do" in ok(
        members("subscribers", "remove", "ann@example.org", "--list", "disability-group")
    )
    fails(members("subscribers", "remove"), "Error: give the EMAIL")
    fails(members("subscribers", "remove", "--all"), "Error: --all takes exactly one --list")
    fails(members("subscribers", "remove", "zed@example.org"), "no subscriber")


def test_erase(members: Run, tmp_path: Path) -> None:
    kept = members("subscribers", "erase", "ann@example.org", input="n\n")
    assert (kept.exit_code, kept.stderr) == (0, "")
    assert kept.stdout == (
        "Erase everything held about ann@example.org? This cannot be undone [y/N]: n\n"
        "Nothing erased.\n"
    )
    assert "ann@example.org" in ok(members("subscribers", "show", "ann@example.org"))
    assert "erased ann@example.org" in ok(
        members("subscribers", "erase", "ann@example.org", "--yes")
    )
    fails(
        members("subscribers", "add", "ann@example.org", "--list", "all-members"),
        "suppression list",
    )
    fails(members("subscribers", "erase", "ann@example.org", "--yes"), "no subscriber")
    csv = tmp_path / "again.csv"
    csv.write_text("email\nann@example.org\n", encoding="utf-8")
    result = members(
        "subscribers", "import", str(csv), "--list", "all-members", "--confirmed", "--consent", "x"
    )
    assert result.exit_code == 0
    assert "again.csv:2: skipped: this address was erased" in result.stderr


def test_prune(members: Run) -> None:
    assert "removed 0 unconfirmed subscriptions" in ok(members("subscribers", "prune"))


def test_segment(members: Run) -> None:
    out = ok(members("segment", "all-members and not clp-secretaries"))
    assert out.startswith("2 subscribers match") and "ann@example.org  Ann Lee" in out
    assert "... and 1 more" in ok(members("segment", "all-members", "--limit", "2"))
    data = json.loads(ok(members("segment", "tag:press", "--json")))
    assert data == {"expression": "tag:press", "count": 1, "first": ["cat@example.org"]}
    err = fails(
        members("segment", "all-members and foo"), "Error: segment: unknown list 'foo' at column 17"
    )
    assert err.splitlines()[-1] == " " * 18 + "^"  # under the f of foo


DATA = Path(__file__).parent / "data" / "imports"
CONSENT = ["--confirmed", "--consent", "Signed up on Mailchimp"]


def test_import_a_mailchimp_export_as_a_volunteer_sees_it(cli: Run) -> None:
    result = cli("subscribers", "import", str(DATA / "mailchimp.csv"), "--list", "all-members",
                 *CONSENT)  # fmt: skip
    out = ok(result)
    assert out.splitlines() == [
        "mailchimp.csv: Mailchimp audience export (recognised by its header); UTF-8 with BOM, "
        "comma-separated",
        "mailchimp.csv: columns dropped, never stored (newsroom keeps only what it needs): "
        "Address, Phone Number, Branch, MEMBER_RATING, LATITUDE, LONGITUDE, GMTOFF, DSTOFF, "
        "TIMEZONE, CC, REGION, LAST_CHANGED, LEID, EUID, NOTES",
        "mailchimp.csv: 5 rows: 4 new, 0 updated, 0 unchanged, 1 duplicate, 0 skipped, "
        "0 rejected; 4 subscriptions confirmed",
    ]
    assert result.stderr == (
        "mailchimp.csv:6: duplicate of line 2 (amara.okafor@example.org): merged into it\n"
    )
    shown = ok(cli("subscribers", "show", "amara.okafor@example.org"))
    assert (
        "    evidence from the export: optin_time 2021-03-14 09:12:31, optin_ip 192.0.2.10, "
        "confirm_time 2021-03-14 09:14:02, confirm_ip 192.0.2.10\n"
    ) in shown
    exported = ok(cli("subscribers", "export"))
    assert "192.0.2.10" not in exported and "2021-03-14" not in exported  # evidence, not data


def test_import_sync_dry_run_then_refused_then_yes(cli: Run, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    first.write_text("email\n" + "".join(f"s{n}@example.org\n" for n in range(10)), "utf-8")
    ok(cli("subscribers", "import", str(first), "--list", "clp-secretaries", *CONSENT))
    now = tmp_path / "secretaries.csv"
    now.write_text("email\n" + "".join(f"s{n}@example.org\n" for n in range(8)) + "new@example.org\n", "utf-8")  # fmt: skip
    args = ["subscribers", "import", str(now), "--sync", "--list", "clp-secretaries", *CONSENT]
    out = ok(cli(*args, "--dry-run"))
    assert out.splitlines()[1:] == [
        "secretaries.csv (dry run: nothing changed): 9 rows: 1 new, 0 updated, 8 unchanged, "
        "0 duplicates, 0 skipped, 0 rejected; 1 subscriptions confirmed",
        "clp-secretaries: 1 added, 2 unsubscribed (not in the file), 8 kept",
        "  added: new@example.org",
        "  unsubscribed: s8@example.org, s9@example.org",
        "  a real sync would be refused without --yes: it unsubscribes 2 of 10, more than "
        "subscribe.sync_max_removal allows",
    ]
    fails(cli(*args), "Error: secretaries.csv: nothing imported: the sync would unsubscribe 2 of the 10 people")  # fmt: skip
    assert "clp-secretaries: 1 added, 2 unsubscribed" in ok(cli(*args, "--yes"))
    assert "s9@example.org  clp-secretaries" not in ok(cli("segment", "clp-secretaries", "--limit", "20"))  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sync"], "Error: --sync makes the file the whole of one list: give exactly one --list"),
        (
            ["--sync", "--list", "all-members", "--skip-invalid"],
            "Error: --sync cannot --skip-invalid",
        ),
        (["--list", "all-members", "--map", "x"], "Error: --map 'x': write it as 'COLUMN=field'"),
        (["--list", "all-members", "--sheet", "One"], "Error: --sheet is for .xlsx workbooks"),
        (["--list", "all-members", "--format", "excel"], "Invalid value for '--format'"),
    ],
)
def test_import_sync_and_format_errors(
    cli: Run, tmp_path: Path, args: list[str], message: str
) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("email\nann@example.org\n", encoding="utf-8")
    result = cli("subscribers", "import", str(path), *args)
    assert result.exit_code in (1, 2) and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_import_a_workbook_sheet(cli: Run) -> None:
    out = ok(cli("subscribers", "import", str(DATA / "members.xlsx"), "--sheet", "Old members",
                 "--list", "all-members", *CONSENT))  # fmt: skip
    assert out.startswith("members.xlsx: spreadsheet; sheet 'Old members' (one of 2: ")
    assert "wendy.clarke@example.org" in ok(cli("subscribers", "export"))
