"""`import --sync --list SLUG` (issue #15, items 3 and 4): the file is the whole list. New rows are
added, people missing from the file are unsubscribed from that list with ledger method `sync`,
the rest is untouched; a sync that would remove more than the setting allows is refused without
yes; erased and suppressed people are never re-added; any rejected row changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from newsroom.database import transaction
from newsroom.errors import NewsroomError, ProblemsError
from newsroom.models import ConsentEvent, MailingList, Subscriber, Subscription
from newsroom.people import erasure, imports, lists, subscribers
from newsroom.site import Site
from tests.smtpserver import TestSMTPServer

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=90)
LIST = "clp-secretaries"


@pytest.fixture
def synced(site: Site) -> Site:
    lists.sync(site, NOW)
    return site


def write(tmp_path: Path, emails: list[str], name: str = "secretaries.csv") -> Path:
    path = tmp_path / name
    path.write_text("email\n" + "".join(f"{e}\n" for e in emails), encoding="utf-8")
    return path


def sync(site: Site, path: Path, **options: object) -> imports.ImportReport:
    options.setdefault("now", LATER)
    return imports.import_file(
        site,
        path,
        list_slugs=[LIST],
        confirmed=True,
        consent_text="CLP secretaries, as the regions sent them",
        sync=True,
        **options,  # type: ignore[arg-type]
    )


def statuses(site: Site, slug: str = LIST) -> dict[str, str]:
    with transaction(site.engine) as session:
        rows = session.execute(
            select(Subscriber.email, Subscription.status)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(MailingList.slug == slug)
        )
        return {email: status for email, status in rows}


def people(count: int) -> list[str]:
    return [f"secretary{n:02}@example.org" for n in range(count)]


@pytest.fixture
def twenty(synced: Site, tmp_path: Path) -> Site:
    """Twenty secretaries on the list, and on all-members too."""
    imports.import_file(synced, write(tmp_path, people(20), "first.csv"),
                        list_slugs=[LIST, "all-members"], confirmed=True, consent_text="AGM",
                        now=NOW)  # fmt: skip
    return synced


def test_the_file_becomes_the_whole_list(twenty: Site, tmp_path: Path) -> None:
    now = [*people(20)[:19], "new.secretary@example.org"]  # one left, one came
    report = sync(twenty, write(tmp_path, now))
    assert report.sync is not None
    assert (report.sync.added, report.sync.removed, report.sync.kept) == (1, 1, 19)
    assert report.sync.added_sample == ["new.secretary@example.org"]
    assert report.sync.removed_sample == ["secretary19@example.org"]
    found = statuses(twenty)
    assert found["secretary19@example.org"] == "unsubscribed"
    assert found["new.secretary@example.org"] == "confirmed"
    assert sum(s == "confirmed" for s in found.values()) == 20
    assert statuses(twenty, "all-members")["secretary19@example.org"] == "confirmed"  # untouched
    ledger = erasure.export_subscriber(twenty, "secretary19@example.org")["ledger"]
    assert ledger[-1] | {"at": ""} == ledger[-1] | {
        "at": "",
        "kind": "unsubscribed",
        "list": LIST,
        "source": "import",
        "method": "sync",
        "detail": "not in secretaries.csv (sync)",
    }
    assert ledger[-1]["at"] == LATER.isoformat()


def test_a_sync_removing_more_than_the_setting_is_refused(twenty: Site, tmp_path: Path) -> None:
    """A truncated file cannot empty a list: 3 of 20 (15 %) is more than 10 %."""
    path = write(tmp_path, [*people(17), "new.secretary@example.org"])
    with pytest.raises(NewsroomError) as caught:
        sync(twenty, path)
    assert str(caught.value) == (
        "secretaries.csv: nothing imported: the sync would unsubscribe 3 of the 20 people on "
        "clp-secretaries (15%), more than subscribe.sync_max_removal (10%) allows. Is "
        "secretaries.csv the whole list? See who with --dry-run; add --yes if it is"
    )
    assert set(statuses(twenty).values()) == {"confirmed"} and len(statuses(twenty)) == 20
    report = sync(twenty, path, yes=True)
    assert report.sync is not None and report.sync.removed == 3
    assert list(statuses(twenty).values()).count("unsubscribed") == 3


def test_two_of_twenty_is_within_the_setting(twenty: Site, tmp_path: Path) -> None:
    report = sync(twenty, write(tmp_path, people(18)))
    assert report.sync is not None and report.sync.removed == 2  # exactly 10 %: allowed


def test_the_limit_is_a_setting(
    twenty: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSROOM_SUBSCRIBE_SYNC_MAX_REMOVAL", "0.5")
    site = Site.open(twenty.root)
    report = sync(site, write(tmp_path, people(10)))
    site.close()
    assert report.sync is not None and report.sync.removed == 10


def test_a_dry_run_says_what_would_change_and_changes_nothing(twenty: Site, tmp_path: Path) -> None:
    path = write(tmp_path, [*people(10), "new.secretary@example.org"])
    report = sync(twenty, path, dry_run=True)
    assert report.sync is not None and report.dry_run
    assert (report.sync.added, report.sync.removed, report.sync.needs_yes) == (1, 10, True)
    assert report.sync.removed_sample == [f"secretary{n}@example.org" for n in range(10, 15)]
    assert len(statuses(twenty)) == 20 and set(statuses(twenty).values()) == {"confirmed"}


def test_any_rejected_row_changes_nothing(twenty: Site, tmp_path: Path) -> None:
    path = write(tmp_path, [*people(19), "not-an-address"])
    with pytest.raises(ProblemsError) as caught:
        sync(twenty, path)
    assert "secretaries.csv:21: 'not-an-address' is not an email address" in str(caught.value)
    assert "a sync takes the whole file or nothing" in str(caught.value)
    assert set(statuses(twenty).values()) == {"confirmed"}
    with pytest.raises(NewsroomError, match="--sync cannot --skip-invalid"):
        sync(twenty, path, skip_invalid=True)


def test_sync_takes_one_list(synced: Site, tmp_path: Path) -> None:
    with pytest.raises(NewsroomError, match="give exactly one --list"):
        imports.import_file(synced, write(tmp_path, people(1)), list_slugs=[LIST, "all-members"],
                            sync=True, now=NOW)  # fmt: skip


def test_erased_and_departed_people_are_never_re_added(twenty: Site, tmp_path: Path) -> None:
    erasure.erase(twenty, "secretary00@example.org", now=NOW)
    subscribers.remove(twenty, "secretary01@example.org", [LIST], now=NOW)
    report = sync(twenty, write(tmp_path, people(20)))
    assert report.sync is not None and (report.sync.added, report.sync.removed) == (0, 0)
    assert [p.line for p in report.skipped] == [2, 3]
    assert "secretary00@example.org" not in statuses(twenty)
    assert statuses(twenty)["secretary01@example.org"] == "unsubscribed"


def test_pending_people_missing_from_the_file_are_unsubscribed_too(
    twenty: Site, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    site = Site.open(twenty.root)  # with the smtp settings of the test server
    subscribers.add(site, "asked@example.org", [LIST], now=NOW)  # pending (double opt-in)
    site.close()
    report = sync(twenty, write(tmp_path, people(20)))
    assert report.sync is not None and report.sync.removed_sample == ["asked@example.org"]
    assert statuses(twenty)["asked@example.org"] == "unsubscribed"


def test_someone_the_export_says_has_left_is_taken_off(twenty: Site, tmp_path: Path) -> None:
    path = tmp_path / "network.csv"
    path.write_text(
        "uuid,email,first_name,can2_subscription_status\n"
        + "".join(f"u{n},{e},,subscribed\n" for n, e in enumerate(people(19)))
        + "u19,secretary19@example.org,,unsubscribed\n",
        encoding="utf-8",
    )
    report = sync(twenty, path)
    assert report.sync is not None and report.sync.removed_sample == ["secretary19@example.org"]
    assert report.skipped_rows == 1


def test_a_big_sync_stays_in_the_database(twenty: Site, tmp_path: Path) -> None:
    """Over several batches, a thousand each: the events are one per person removed."""
    everyone = [f"member{n:04}@example.org" for n in range(2500)]
    imports.import_file(twenty, write(tmp_path, everyone, "all.csv"), list_slugs=[LIST],
                        confirmed=True, consent_text="AGM", now=NOW)  # fmt: skip
    report = sync(twenty, write(tmp_path, everyone[:2300] + people(20)), yes=True)
    assert report.sync is not None and report.sync.removed == 200
    with transaction(twenty.engine) as session:
        methods = session.scalars(select(ConsentEvent.method).where(ConsentEvent.method == "sync"))
        assert len(list(methods)) == 200
