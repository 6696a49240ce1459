"""CSV import: every wrong row reported by line, nothing written unless --skip-invalid, merging,
consent recorded, suppressions and people who left respected; export round-trips."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsroom.database import transaction
from newsroom.errors import NewsroomError, ProblemsError
from newsroom.models import ConsentEvent, ConsentText, Subscriber, Subscription
from newsroom.people import erasure, imports, lists, subscribers
from newsroom.site import Site
from tests.smtpserver import TestSMTPServer

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CONSENT = "Joined as a member at the 2025 AGM"


@pytest.fixture
def synced(site: Site) -> Site:
    lists.sync(site, NOW)
    return site


def write(tmp_path: Path, text: str | bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8", newline="")
    else:
        path.write_bytes(text)
    return path


def run(site: Site, path: Path, **options: object) -> imports.ImportReport:
    options.setdefault("list_slugs", ["all-members"])
    options.setdefault("confirmed", True)
    options.setdefault("consent_text", CONSENT)
    return imports.import_file(site, path, now=NOW, **options)  # type: ignore[arg-type]


def count(site: Site, table: type) -> int:
    with transaction(site.engine) as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_a_good_file(synced: Site, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,name,tags,lists\r\n"
        'ann@example.org,"Lee, Ann",access-needs press,disability-group\r\n'
        'bob@example.com,"Bob ""the builder"" Smith",,\r\n'
        "\r\n",
    )
    report = run(synced, path)
    assert (report.rows, report.new, report.subscribed) == (2, 2, 3)
    assert report.rejected == [] and report.skipped == []
    rows = {r["email"]: r for r in imports.export(synced)}
    assert rows["ann@example.org"] == {
        "email": "ann@example.org",
        "name": "Lee, Ann",
        "tags": "access-needs press",
        "lists": "all-members disability-group",
    }
    assert rows["bob@example.com"]["name"] == 'Bob "the builder" Smith'


def test_consent_text_and_events_are_recorded(synced: Site, tmp_path: Path) -> None:
    run(synced, write(tmp_path, "email\nann@example.org\n"))
    data = erasure.export_subscriber(synced, "ann@example.org")
    (event,) = data["ledger"]
    assert event["kind"] == "imported" and event["source"] == "import"
    assert event["consent_text"] == CONSENT and len(event["consent_sha256"]) == 64
    assert event["detail"] == "from people.csv"


def test_bom_and_header_case_are_fine(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeffEmail , Name\nann@example.org,Ann\n".encode())
    assert run(synced, path).new == 1


def test_every_bad_row_is_reported_and_nothing_written(synced: Site, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,name,tags,lists\n"
        "ann@example.org,Ann,,\n"  # 2: fine
        "not-an-address,X,,\n"  # 3
        "bob@example.org,Bob,one,two,three\n"  # 4: too many fields
        'carol@example.org,"Carol\nBcc: victim@example.net",,\n'  # 5-6: header injection
        "dan@example.org,Dan,,nowhere\n"  # 7: unknown list
        "eve@example.org,Eve,Bad Tag!,\n"  # 8
        "fay@@example.org,Fay,,\n",  # 9
    )
    with pytest.raises(ProblemsError) as caught:
        run(synced, path)
    text = str(caught.value)
    assert "people.csv:3: 'not-an-address' is not an email address" in text
    assert "people.csv:4: 5 fields but the header has 4" in text
    assert "people.csv:5: the name holds a line break" in text
    assert "people.csv:7: unknown list 'nowhere'" in text
    assert "people.csv:8: tag 'bad' must be" in text or "people.csv:8: tag" in text
    assert "people.csv:9: 'fay@@example.org' is not an email address" in text
    assert "people.csv: nothing imported: 6 row(s) are wrong" in text
    assert count(synced, Subscriber) == 0


def test_skip_invalid_imports_the_rest(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nann@example.org\nnope\nbob@example.org\n")
    report = run(synced, path, skip_invalid=True)
    assert report.new == 2
    assert [str(p) for p in report.rejected] == [
        "people.csv:3: 'nope' is not an email address: An email address must have an @-sign."
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "people.csv:1: the file is empty"),
        (b"name\nAnn\n", "people.csv:1: no email column in the header row ('name')"),
        (
            b"email,email\na@example.org,b@example.org\n",
            "people.csv:1: column 'email' appears twice",
        ),
        (b"email,name\na@example.org,Ren\x81\n", "people.csv:2: is neither UTF-8 nor Windows-1252"),
        (b'email,name\na@example.org,"unclosed\n', "people.csv:2: broken CSV"),
    ],
)
def test_broken_files(synced: Site, tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(ProblemsError, match=re.escape(message)):
        run(synced, write(tmp_path, content))


def test_duplicates_merge(synced: Site, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "email,name,tags,lists\n"
        "Ann@Example.org,,press,\n"
        "ann@example.org,Ann,youth,disability-group\n",
    )
    report = run(synced, path)
    assert report.new == 1
    row = next(iter(imports.export(synced)))
    assert row == {
        "email": "ann@example.org",
        "name": "Ann",
        "tags": "press youth",
        "lists": "all-members disability-group",
    }


def test_duplicates_across_batches_merge(
    synced: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imports, "BATCH", 2)
    lines = [f"p{n}@example.org" for n in range(5)] * 2
    report = run(synced, write(tmp_path, "email\n" + "\n".join(lines) + "\n"))
    assert report.new == 5 and report.subscribed == 5 and report.unchanged == 0
    assert [str(p) for p in report.duplicates][:2] == [
        "people.csv:7: duplicate of line 2 (p0@example.org): merged into it",
        "people.csv:8: duplicate of line 3 (p1@example.org): merged into it",
    ]
    assert len(report.duplicates) == 5
    assert count(synced, Subscriber) == 5 and count(synced, Subscription) == 5


def test_confirmed_needs_consent_and_consent_needs_confirmed(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nann@example.org\n")
    with pytest.raises(NewsroomError, match='--confirmed needs --consent "TEXT"'):
        run(synced, path, consent_text=None)
    with pytest.raises(NewsroomError, match="--consent is only for --confirmed"):
        run(synced, path, confirmed=False)


def test_pending_import_without_consent(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nann@example.org\n")
    report = run(synced, path, confirmed=False, consent_text=None, send_confirmations=False)
    assert report.subscribed == 1
    data = erasure.export_subscriber(synced, "ann@example.org")
    assert data["subscriptions"][0]["status"] == "pending"
    assert data["ledger"][0]["kind"] == "requested"


def test_people_who_left_are_not_put_back(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nann@example.org\n")
    run(synced, path)
    subscribers.remove(synced, "ann@example.org", now=NOW)
    report = run(synced, path)
    assert report.subscribed == 0
    assert "people.csv:2: skipped for all-members: unsubscribed on 2026-01-05" in str(
        report.skipped[0]
    )


def test_erased_addresses_are_skipped(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nann@example.org\nbob@example.org\n")
    run(synced, path)
    erasure.erase(synced, "ann@example.org", now=NOW)
    report = run(synced, path)
    assert [str(p) for p in report.skipped] == [
        "people.csv:2: skipped: this address was erased at the person's request (suppression list)"
    ]
    assert count(synced, Subscriber) == 1


def test_unknown_list_option(synced: Site, tmp_path: Path) -> None:
    with pytest.raises(NewsroomError, match="unknown list 'nope'"):
        run(synced, write(tmp_path, "email\na@example.org\n"), list_slugs=["nope"])


def test_no_list_at_all(synced: Site, tmp_path: Path) -> None:
    with pytest.raises(ProblemsError, match="people.csv:2: no list"):
        run(synced, write(tmp_path, "email\na@example.org\n"), list_slugs=[])


def test_missing_file(synced: Site, tmp_path: Path) -> None:
    with pytest.raises(NewsroomError, match="cannot read"):
        run(synced, tmp_path / "nope.csv")


def test_the_consent_text_is_stored_once(synced: Site, tmp_path: Path) -> None:
    run(synced, write(tmp_path, "email\na@example.org\n"))
    run(synced, write(tmp_path, "email\nb@example.org\n"))
    assert count(synced, ConsentText) == 1
    assert count(synced, ConsentEvent) == 2


def test_pending_import_sends_each_confirmation_on_one_connection(
    synced: Site, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    path = write(tmp_path, "email\na@example.org\nb@example.org\nc@example.org\n")
    opened = smtp_server.connections
    site = Site.open(synced.root)  # reads the smtp settings pointing at the test server
    run(site, path, list_slugs=["all-members"], confirmed=False, consent_text=None)
    site.close()
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
    ]
    assert smtp_server.connections - opened == 1
    with transaction(synced.engine) as session:
        sent_at = session.scalars(select(Subscriber.confirmation_sent_at)).all()
    assert sent_at == [NOW, NOW, NOW]


def test_a_relay_refusing_mid_import_marks_only_those_it_took(
    synced: Site, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    smtp_server.fail("RCPT", 550, "5.7.1 Not today", match="b@")
    path = write(tmp_path, "email\na@example.org\nb@example.org\nc@example.org\n")
    site = Site.open(synced.root)
    with pytest.raises(NewsroomError, match="refused the message"):
        run(site, path, list_slugs=["all-members"], confirmed=False, consent_text=None)
    site.close()
    with transaction(synced.engine) as session:
        marked = dict(
            session.execute(select(Subscriber.email, Subscriber.confirmation_sent_at)).all()
        )
    assert marked == {"a@example.org": NOW, "b@example.org": None, "c@example.org": None}


def test_every_row_is_counted_once(synced: Site, tmp_path: Path) -> None:
    """Item 1: new, updated, unchanged, duplicate (with its lines), skipped, rejected."""
    run(synced, write(tmp_path, "email,tags\nold@example.org,\nsame@example.org,\nleft@example.org,\n"))  # fmt: skip
    subscribers.remove(synced, "left@example.org", now=NOW)
    path = write(
        tmp_path,
        "email,tags\n"
        "new@example.org,\n"  # 2: new
        "old@example.org,press\n"  # 3: updated (a tag)
        "same@example.org,\n"  # 4: unchanged
        "NEW@example.org,youth\n"  # 5: duplicate of line 2
        "left@example.org,\n"  # 6: skipped (they left)
        "nope,\n",  # 7: rejected
    )
    report = run(synced, path, skip_invalid=True)
    counts = (report.new, report.updated, report.unchanged, len(report.duplicates),
              report.skipped_rows, len(report.rejected))  # fmt: skip
    assert counts == (1, 1, 1, 1, 1, 1) and report.rows == 6
    assert [str(p) for p in report.duplicates] == [
        "people.csv:5: duplicate of line 2 (new@example.org): merged into it"
    ]
    assert [p.line for p in report.skipped] == [6] and [p.line for p in report.rejected] == [7]
    assert {r["email"]: r["tags"] for r in imports.export(synced)}["new@example.org"] == "youth"


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (
            "2024-03-14 09:12:31,192.0.2.300",
            "people.csv:2: optin_ip '192.0.2.300' is not an IP address",
        ),
        ("14/03/2024,192.0.2.3", "people.csv:2: optin_time '14/03/2024' is not a date and time"),
        ("2024-03-14," + "1" * 70, "people.csv:2: optin_ip is longer than 64 characters"),
    ],
)
def test_evidence_is_checked(synced: Site, tmp_path: Path, cells: str, message: str) -> None:
    path = write(tmp_path, f"email,optin_time,optin_ip\nann@example.org,{cells}\n")
    with pytest.raises(ProblemsError, match=re.escape(message)):
        run(synced, path)


def test_erasure_takes_the_evidence_with_the_person(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "email,optin_time,optin_ip\nann@example.org,2024-03-14 09:12:31,192.0.2.3\n")  # fmt: skip
    run(synced, path)
    erasure.erase(synced, "ann@example.org", now=NOW)
    with transaction(synced.engine) as session:
        kept = session.execute(select(ConsentEvent.kind, ConsentEvent.evidence)).all()
    assert sorted(kept) == [("erased", None), ("imported", None)]


def test_a_dry_run_changes_nothing_and_can_run_again(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nann@example.org\nbob@example.org\nann@example.org\n")
    for _ in range(2):  # the import's temporary table is gone after each
        report = run(synced, path, dry_run=True)
        assert (report.new, len(report.duplicates), report.dry_run) == (2, 1, True)
    assert count(synced, Subscriber) == 0 and count(synced, ConsentEvent) == 0
    assert run(synced, path).new == 2


def test_a_pending_dry_run_sends_no_email(
    synced: Site, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    site = Site.open(synced.root)
    path = write(tmp_path, "email\nann@example.org\n")
    run(site, path, confirmed=False, consent_text=None, dry_run=True)
    site.close()
    assert smtp_server.messages == [] and count(synced, Subscriber) == 0


def test_a_short_row_is_filled_and_a_long_one_refused(synced: Site, tmp_path: Path) -> None:
    path = write(tmp_path, "email,name,tags\nann@example.org\nbob@example.org,Bob,,,\n")
    assert run(synced, path).new == 2  # empty cells past the header's count are no fields
    with pytest.raises(ProblemsError, match="people.csv:2: 4 fields but the header has 3"):
        run(synced, write(tmp_path, "email,name,tags\ncat@example.org,Lee, Cat,press\n"))
