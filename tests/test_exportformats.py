"""The exports groups move from (issue #15, item 1), each imported from a sample written from the
tool's documented columns (tests/data/imports) with the mess a real file has: BOM, CRLF, quoted
commas, a blank line, trailing spaces, capitalised addresses, duplicates, extra columns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsroom.errors import NewsroomError, ProblemsError
from newsroom.people import erasure, exportformats, imports, lists
from newsroom.site import Site

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DATA = Path(__file__).parent / "data" / "imports"


@pytest.fixture
def synced(site: Site) -> Site:
    lists.sync(site, NOW)
    return site


def run(site: Site, name: str | Path, **options: object) -> imports.ImportReport:
    options.setdefault("list_slugs", ["all-members"])
    options.setdefault("confirmed", True)
    options.setdefault("consent_text", "Signed up on our old list")
    path = name if isinstance(name, Path) else DATA / name
    return imports.import_file(site, path, now=NOW, **options)  # type: ignore[arg-type]


def people(site: Site) -> dict[str, dict[str, str]]:
    return {row["email"]: row for row in imports.export(site)}


def messages(problems: Sequence[object]) -> list[str]:
    return [str(p) for p in problems]


def test_a_mailchimp_audience_export(synced: Site) -> None:
    report = run(synced, "mailchimp.csv")
    assert report.read_as == (
        "Mailchimp audience export (recognised by its header); UTF-8 with BOM, comma-separated"
    )
    assert report.dropped == (
        "Address", "Phone Number", "Branch", "MEMBER_RATING", "LATITUDE", "LONGITUDE", "GMTOFF",
        "DSTOFF", "TIMEZONE", "CC", "REGION", "LAST_CHANGED", "LEID", "EUID", "NOTES",
    )  # fmt: skip
    assert (report.rows, report.new, len(report.duplicates), report.rejected) == (5, 4, 1, [])
    assert messages(report.duplicates) == [
        "mailchimp.csv:6: duplicate of line 2 (amara.okafor@example.org): merged into it"
    ]
    assert people(synced) == {
        "amara.okafor@example.org": {
            "email": "amara.okafor@example.org",
            "name": "Amara Okafor",
            "tags": "access-needs disability-group youth",  # the duplicate's tag merged in
            "lists": "all-members",
        },
        "ben.hollis@example.com": {
            "email": "ben.hollis@example.com",
            "name": "Ben Hollis, MBE",  # trailing spaces gone, the quoted comma kept
            "tags": "",
            "lists": "all-members",
        },
        "carys.jenkins@example.org": {
            "email": "carys.jenkins@example.org",
            "name": "Carys Jenkins",
            "tags": "press",
            "lists": "all-members",
        },
        "dev.patel@example.com": {
            "email": "dev.patel@example.com",
            "name": "Dev Patel",
            "tags": "",
            "lists": "all-members",
        },
    }


def test_the_consent_evidence_travels_with_the_people(synced: Site) -> None:
    """Item 2: the opt-in and confirmation time and IP of the export are on the `imported`
    event, beside the --consent text; erasure takes them away with the person."""
    run(synced, "mailchimp.csv")
    (event,) = erasure.export_subscriber(synced, "amara.okafor@example.org")["ledger"]
    assert event["kind"] == "imported" and event["consent_text"] == "Signed up on our old list"
    assert event["evidence"] == {
        "optin_time": "2021-03-14 09:12:31",
        "optin_ip": "192.0.2.10",
        "confirm_time": "2021-03-14 09:14:02",
        "confirm_ip": "192.0.2.10",
    }
    (ben,) = erasure.export_subscriber(synced, "ben.hollis@example.com")["ledger"]
    assert ben["evidence"] == {"confirm_time": "2019-06-01 18:30:00", "confirm_ip": "198.51.100.7"}
    (carys,) = erasure.export_subscriber(synced, "carys.jenkins@example.org")["ledger"]
    assert carys["evidence"]["optin_ip"] == "2001:db8::1"


def test_mailchimps_unsubscribed_file_imports_nobody(synced: Site) -> None:
    report = run(synced, "mailchimp-unsubscribed.csv")
    assert (report.rows, report.new, report.skipped_rows) == (1, 0, 1)
    assert messages(report.skipped) == [
        "mailchimp-unsubscribed.csv:2: skipped: not subscribed in the export "
        "(UNSUB_TIME is '2023-05-01 09:00:00')"
    ]
    assert people(synced) == {}


def test_a_listmonk_export(synced: Site) -> None:
    report = run(synced, "listmonk.csv")
    assert report.read_as.startswith("listmonk subscribers export (recognised by its header)")
    assert report.dropped == ("uuid", "attributes", "created_at", "updated_at")
    assert messages(report.skipped) == [
        "listmonk.csv:4: skipped: not subscribed in the export (status is 'blocklisted')"
    ]
    assert {e: r["name"] for e, r in people(synced).items()} == {
        "farid.haddad@example.com": "Farid Haddad",
        "grace.oduya@example.org": "Oduya, Grace",
    }


@pytest.mark.parametrize("name", ["mailman-members.txt", "postorius.csv"])
def test_a_mailman_member_list(synced: Site, name: str) -> None:
    """`mailman members LIST` (`Name <address>` a line) and Postorius' CSV (an address a line)."""
    report = run(synced, name)
    assert report.read_as == (
        "Mailman 3 member list (no header row, an address on each line); UTF-8"
    )
    found = {e: r["name"] for e, r in people(synced).items()}
    assert found["ines.moreau@example.org"] == ("Ines Moreau" if name.endswith(".txt") else "")
    assert found["ann.lee@example.org"] == ("Lee, Ann" if name.endswith(".txt") else "")
    assert "jo.bloggs@example.net" in found


def test_an_action_network_report(synced: Site) -> None:
    report = run(synced, "action-network.csv")
    assert report.read_as.startswith("Action Network activist report (recognised by its header)")
    assert "Branch" in report.dropped and "can2_phone" in report.dropped
    assert messages(report.skipped) == [
        "action-network.csv:3: skipped: not subscribed in the export "
        "(can2_subscription_status is 'unsubscribed')"
    ]
    found = people(synced)
    assert found["lena.schmidt@example.org"]["name"] == "Lena Schmidt"
    assert found["lena.schmidt@example.org"]["tags"] == "disability-group trade-union"
    assert found["nia.jones@example.org"]["tags"] == "youth"


def test_a_nationbuilder_export(synced: Site) -> None:
    report = run(synced, "nationbuilder.csv")
    assert report.read_as.startswith("NationBuilder people export")
    assert "middle_name" in report.dropped and "primary_address1" in report.dropped
    assert messages(report.skipped) == [
        "nationbuilder.csv:3: skipped: not subscribed in the export (email_opt_in is 'false')"
    ]
    found = people(synced)
    assert found["olu.adeyemi@example.org"] == {
        "email": "olu.adeyemi@example.org",
        "name": "Olu Adeyemi",
        "tags": "councillor press",
        "lists": "all-members",
    }
    assert "priya.shah@example.com" not in found


def test_a_spreadsheet_from_excel_on_windows(synced: Site) -> None:
    """Semicolons, Windows-1252, lists separated by commas and spaces, an extra column."""
    report = run(synced, "spreadsheet-semicolon.csv")
    assert report.read_as == (
        "spreadsheet; read as Windows-1252, as it is not UTF-8 (save it as 'CSV UTF-8' next "
        "time), semicolon-separated"
    )
    assert report.dropped == ("Phone",)
    found = people(synced)
    assert found["rene.dubois@example.org"]["name"] == "René Dubois"
    assert (
        found["rene.dubois@example.org"]["lists"] == "all-members clp-secretaries disability-group"
    )
    assert found["zoe.martin@example.com"]["name"] == "Zoë Martin"


def test_unicode_text_from_excel(synced: Site) -> None:
    """UTF-16 with BOM, tab-separated; first name and surname joined."""
    report = run(synced, "spreadsheet-utf16.txt")
    assert report.read_as == "spreadsheet; UTF-16, tab-separated"
    found = people(synced)
    assert found["sian.evans@example.org"]["name"] == "Siân Evans"
    assert found["sian.evans@example.org"]["tags"] == "access-needs youth"
    assert found["tomas.novak@example.com"]["name"] == "Tomáš Novák"


def test_an_xlsx_workbook_with_two_sheets(synced: Site) -> None:
    report = run(synced, "members.xlsx")
    assert report.read_as == "spreadsheet; sheet 'Members' (the first of 2: Members, Old members)"
    assert report.dropped == ("Joined",)
    assert (report.rows, report.new) == (2, 2)  # the blank row in between is no row
    assert {e: r["name"] for e, r in people(synced).items()} == {
        "uma.bose@example.org": "Uma Bose",
        "victor.hughes@example.com": "Victor Hughes",
    }
    other = run(synced, "members.xlsx", sheet="Old members")
    assert other.read_as.startswith(
        "spreadsheet; sheet 'Old members' (one of 2: Members, Old members)"
    )
    assert other.new == 1 and "wendy.clarke@example.org" in people(synced)
    with pytest.raises(NewsroomError, match=r"members.xlsx: no sheet 'Nope' \(sheets: Members, Old members\)"):  # fmt: skip
        run(synced, "members.xlsx", sheet="Nope")


def test_any_capitalisation_of_email_and_name(synced: Site, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text('EMAIL,Full Name,Tags\nAnn@Example.org,Ann Lee,"press, youth"\n', "utf-8")
    run(synced, path)
    assert people(synced)["ann@example.org"]["name"] == "Ann Lee"
    assert people(synced)["ann@example.org"]["tags"] == "press youth"


def test_lists_separated_by_commas(synced: Site, tmp_path: Path) -> None:
    """The file of the issue: `unknown list 'disability-group,'` was the answer before."""
    path = tmp_path / "people.csv"
    path.write_text(
        'email,lists\nann@example.org,"disability-group,clp-secretaries"\n'
        'bob@example.org,"disability-group, clp-secretaries,"\n',
        "utf-8",
    )
    run(synced, path, list_slugs=[])
    assert {e: r["lists"] for e, r in people(synced).items()} == {
        "ann@example.org": "clp-secretaries disability-group",
        "bob@example.org": "clp-secretaries disability-group",
    }


def test_format_and_map_say_what_the_columns_are(synced: Site, tmp_path: Path) -> None:
    path = tmp_path / "our-sheet.csv"
    path.write_text(
        "Mail,Who,Signed up,From\nann@example.org,Ann Lee,2024-03-14 09:12:31,192.0.2.9\n", "utf-8"
    )
    with pytest.raises(ProblemsError, match="our-sheet.csv:1: no email column in the header row"):
        run(synced, path)
    report = run(synced, path, mapping=["Mail=email", "who=name", "SIGNED UP=optin_time",
                                        "From=optin_ip"])  # fmt: skip
    assert report.dropped == ()
    (event,) = erasure.export_subscriber(synced, "ann@example.org")["ledger"]
    assert event["evidence"] == {"optin_time": "2024-03-14 09:12:31", "optin_ip": "192.0.2.9"}


def test_format_names_the_format(synced: Site, tmp_path: Path) -> None:
    report = run(synced, "mailchimp.csv", fmt="mailchimp")
    assert report.read_as.startswith("Mailchimp audience export (as --format says)")
    path = tmp_path / "plain.csv"
    path.write_text("email\nann@example.org\n", "utf-8")
    with pytest.raises(ProblemsError, match="plain.csv:1: no email column in the header row"):
        run(synced, path, fmt="mailchimp")  # a Mailchimp export says "Email Address"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("Mail", "--map 'Mail': write it as 'COLUMN=field'"),
        ("Mail=phone", "--map 'Mail=phone': unknown field 'phone'; fields: email, name, "),
        ("Nope=email", "--map 'Nope=email': people.csv has no column 'Nope' (columns: 'Mail')"),
    ],
)
def test_map_errors(synced: Site, tmp_path: Path, mapping: str, message: str) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Mail\nann@example.org\n", "utf-8")
    with pytest.raises(NewsroomError) as caught:
        run(synced, path, mapping=[mapping])
    assert str(caught.value).startswith(message)


def test_two_columns_for_one_field(synced: Site, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("Email,E-mail\nann@example.org,ann@example.org\n", "utf-8")
    with pytest.raises(ProblemsError, match="people.csv:1: columns 'Email' and 'E-mail' both give the email"):  # fmt: skip
        run(synced, path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mailchimp.csv", "mailchimp"),
        ("mailchimp-unsubscribed.csv", "mailchimp"),
        ("listmonk.csv", "listmonk"),
        ("action-network.csv", "action-network"),
        ("nationbuilder.csv", "nationbuilder"),
        ("spreadsheet-semicolon.csv", "spreadsheet"),
    ],
)
def test_each_export_is_recognised_by_its_header(name: str, expected: str) -> None:
    raw = (DATA / name).read_bytes().decode("utf-8-sig", errors="replace")
    header = raw.splitlines()[0].replace('"', "").split(";" if ";" in raw.splitlines()[0] else ",")
    assert exportformats.recognise(header).name == expected


def test_free_text_tags_become_tags() -> None:
    assert exportformats.tag_slug("Annual Conference 2024") == "annual-conference-2024"
    assert exportformats.tag_slug("Délégués / Shop stewards") == "delegues-shop-stewards"
    assert exportformats.tag_slug("  !!  ") == ""
    assert exportformats.quoted_names('"VIP","Blog, and news"') == ["VIP", "Blog, and news"]
