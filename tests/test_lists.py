"""lists.toml kept in step with the database; removing a list people are on is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from newsroom.database import transaction
from newsroom.errors import ProblemsError
from newsroom.models import MailingList, Subscriber, Subscription
from newsroom.people import lists
from newsroom.site import Site

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def slugs(site: Site) -> list[str]:
    with transaction(site.engine) as session:
        return sorted(lists.active_lists(session))


def test_init_lists_are_synced(site: Site) -> None:
    report = lists.sync(site, NOW)
    assert sorted(report.added) == ["all-members", "clp-secretaries", "disability-group"]
    assert lists.sync(site, NOW).added == []  # a second sync changes nothing
    with transaction(site.engine) as session:
        row = session.scalars(
            select(MailingList).where(MailingList.slug == "clp-secretaries")
        ).one()
        assert row.name == "CLP secretaries" and row.public is False and row.opt_in == "double"


def test_adding_and_changing_a_list(site: Site) -> None:
    lists.sync(site, NOW)
    text = site.lists_file.read_text().replace('name = "All members"', 'name = "Every member"')
    site.lists_file.write_text(text + '\n[press]\nname = "Press"\nopt_in = "single"\n')
    report = lists.sync(site, NOW)
    assert report.added == ["press"] and report.changed == ["all-members"]
    assert "press" in slugs(site)


def remove_section(site: Site, slug: str) -> None:
    text = site.lists_file.read_text()
    start = text.index(f"[{slug}]")
    end = text.find("\n[", start + 1)
    site.lists_file.write_text(text[:start] + (text[end + 1 :] if end != -1 else ""))


def test_removing_an_empty_list_retires_it(site: Site) -> None:
    lists.sync(site, NOW)
    remove_section(site, "disability-group")
    assert lists.sync(site, NOW).retired == ["disability-group"]
    assert slugs(site) == ["all-members", "clp-secretaries"]
    site.lists_file.write_text(site.lists_file.read_text() + '\n[disability-group]\nname = "DG"\n')
    assert lists.sync(site, NOW).changed == ["disability-group"]  # back again, same row


def test_removing_a_list_with_subscribers_is_refused(site: Site) -> None:
    lists.sync(site, NOW)
    with transaction(site.engine) as session:
        person = Subscriber(email="ann@example.org", name="Ann", created_at=NOW)
        session.add(person)
        session.flush()
        row = lists.active_lists(session)["clp-secretaries"]
        session.add(Subscription(subscriber_id=person.id, list_id=row.id, status="confirmed"))
    remove_section(site, "clp-secretaries")
    with pytest.raises(ProblemsError, match=r"list 'clp-secretaries' was removed but 1 subscr"):
        lists.sync(site, NOW)
    assert "clp-secretaries" in slugs(site)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('["a b"]\nname = "x"\n', "lists.toml:1: list slug 'a b' must be lower-case"),
        ("[and]\nname = 'x'\n", "lists.toml:1: list slug 'and'"),
        ("[ok]\ndescription = 'x'\n", 'lists.toml:1: [ok] needs a name = "..."'),
        ("[ok]\nname = 'x'\ncolour = 'red'\n", "lists.toml:3: [ok] unknown key 'colour'"),
        ("[ok]\nname = 'x'\npublic = 'yes'\n", "lists.toml:3: [ok] public must be true or false"),
        ("[ok]\nname = 'x'\nopt_in = 'triple'\n", 'lists.toml:3: [ok] opt_in must be "double"'),
        ("[ok]\nname = 'x\n", "lists.toml:2: "),
        ("ok = 3\n", "lists.toml:1: ok must be a table"),
    ],
)
def test_bad_lists_toml_names_file_and_line(site: Site, toml: str, message: str) -> None:
    site.lists_file.write_text(toml)
    with pytest.raises(ProblemsError) as caught:
        lists.sync(site, NOW)
    assert message in str(caught.value)


def test_every_problem_is_reported_at_once(site: Site) -> None:
    site.lists_file.write_text("[A]\nname = 1\n[b]\nfoo = 2\n")
    with pytest.raises(ProblemsError) as caught:
        lists.sync(site, NOW)
    assert len(caught.value.problems) >= 4


def test_missing_lists_toml(site: Site) -> None:
    site.lists_file.unlink()
    with pytest.raises(ProblemsError, match="no such file"):
        lists.sync(site, NOW)


def test_counts_per_status(site: Site) -> None:
    lists.sync(site, NOW)
    with transaction(site.engine) as session:
        ids = {slug: row.id for slug, row in lists.active_lists(session).items()}
        for n, status in enumerate(["pending", "confirmed", "confirmed", "unsubscribed"]):
            person = Subscriber(email=f"p{n}@example.org", created_at=NOW)
            session.add(person)
            session.flush()
            session.add(
                Subscription(subscriber_id=person.id, list_id=ids["all-members"], status=status)
            )
    with transaction(site.engine) as session:
        table = {row.slug: c for row, c in lists.counts(session)}
    assert table["all-members"] == {
        "pending": 1,
        "confirmed": 2,
        "unsubscribed": 1,
        "bounced": 0,
        "complained": 0,
    }
    assert sum(table["clp-secretaries"].values()) == 0
