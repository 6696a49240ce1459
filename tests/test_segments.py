"""Segment expressions: parsing, errors that point at the column, and SQL that agrees with a plain
Python evaluation of random expressions over random data (hypothesis), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from newsroom import segments
from newsroom.database import transaction
from newsroom.models import Subscriber, SubscriberTag, Subscription
from newsroom.people import lists, selection
from newsroom.segments import And, ListRef, Node, Not, Or, SegmentError, TagRef
from newsroom.site import Site

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LISTS = ["all-members", "disability-group", "clp-secretaries"]
TAGS = ["access-needs", "press", "youth"]
STATUSES = ["pending", "confirmed", "unsubscribed", "bounced", "complained"]

Person = tuple[dict[str, str], frozenset[str]]  # list slug -> status, tags


def load(site: Site, people: list[Person]) -> None:
    """Replace every subscriber with PEOPLE (plus one with every tag and no confirmed list)."""
    people = [*people, ({"all-members": "pending"}, frozenset(TAGS))]
    with transaction(site.engine) as session:
        ids = {slug: row.id for slug, row in lists.active_lists(session).items()}
        for table in (SubscriberTag, Subscription, Subscriber):
            session.execute(delete(table))
        session.execute(
            insert(Subscriber),
            [
                {"id": n + 1, "email": f"p{n}@example.org", "created_at": NOW}
                for n in range(len(people))
            ],
        )
        subs = [
            {"subscriber_id": n + 1, "list_id": ids[slug], "status": status}
            for n, (statuses, _) in enumerate(people)
            for slug, status in statuses.items()
        ]
        tags = [{"subscriber_id": n + 1, "tag": t} for n, (_, ts) in enumerate(people) for t in ts]
        if subs:
            session.execute(insert(Subscription), subs)
        session.execute(insert(SubscriberTag), tags)


def resolve(site: Site, expression: str) -> set[str]:
    with transaction(site.engine) as session:
        segment = selection.resolve(session, expression)
        found = {email for _, email, _ in session.execute(segment.select())}
        assert segment.count(session) == len(found)
        return found


@pytest.fixture
def synced(site: Site) -> Site:
    lists.sync(site, NOW)
    return site


def test_lists_tags_and_not(synced: Site) -> None:
    load(
        synced,
        [
            ({"all-members": "confirmed"}, frozenset()),  # p0
            ({"all-members": "confirmed", "clp-secretaries": "confirmed"}, frozenset()),  # p1
            ({"all-members": "pending"}, frozenset({"press"})),  # p2: nothing confirmed
            ({"disability-group": "confirmed"}, frozenset({"access-needs"})),  # p3
            ({"all-members": "unsubscribed", "disability-group": "confirmed"}, frozenset()),  # p4
        ],
    )
    assert resolve(synced, "all-members") == {"p0@example.org", "p1@example.org"}
    assert resolve(synced, "all-members and not clp-secretaries") == {"p0@example.org"}
    assert resolve(synced, "disability-group or tag:access-needs") == {
        "p3@example.org",
        "p4@example.org",
    }
    assert resolve(synced, "tag:press") == set()  # p2 has no confirmed subscription
    assert resolve(synced, "not all-members") == {"p3@example.org", "p4@example.org"}
    assert resolve(synced, "NOT (all-members OR disability-group)") == set()


def test_values_are_bound_parameters_not_sql(synced: Site) -> None:
    load(synced, [({"all-members": "confirmed"}, frozenset({"press"}))])
    with transaction(synced.engine) as session:
        segment = selection.resolve(session, "all-members and tag:press")
        sql = str(segment.select().compile(synced.engine))
    assert "press" not in sql and "confirmed" not in sql


@pytest.mark.parametrize(
    ("expression", "message", "column"),
    [
        ("all-members and foo", "unknown list 'foo'", 17),
        ("tag:nobody", "unknown tag 'nobody'", 1),
        ("", "empty expression", 1),
        (
            "all-members and",
            "expected a list, tag:NAME, segment:NAME, 'not' or '(', found the end",
            16,
        ),
        ("(all-members", "expected ')' to close the '(' at column 1", 13),
        ("all-members)", "expected 'and', 'or' or the end, found ')'", 12),
        ("all-members disability-group", "expected 'and', 'or' or the end", 13),
        ("all-members; drop table subscribers", "unexpected ';'", 12),
        ("all-members and 'x'", 'unexpected "\'"', 17),
        ("and all-members", "found 'and'", 1),
        ("tag:", "unexpected ':'", 4),
    ],
)
def test_errors_point_at_the_column(
    synced: Site, expression: str, message: str, column: int
) -> None:
    load(synced, [])
    with pytest.raises(SegmentError) as caught:
        resolve(synced, expression)
    text = str(caught.value)
    assert message in text
    assert f"at column {column}" in text
    first, _shown, caret = text.splitlines()
    assert first.startswith("segment: ")
    assert caret.index("^") - 2 == column - 1  # the caret sits under the column


def test_the_unknown_list_error_names_the_known_lists(synced: Site) -> None:
    with pytest.raises(SegmentError, match="lists: all-members, clp-secretaries, disability-group"):
        resolve(synced, "everyone")


def test_huge_expressions_are_refused_cleanly(synced: Site) -> None:
    with pytest.raises(SegmentError, match="longer than 2000 characters"):
        segments.parse(" or ".join(["all-members"] * 500))
    with pytest.raises(SegmentError, match="nested deeper than 40 levels"):
        segments.parse("(" * 100 + "all-members" + ")" * 100)
    with pytest.raises(SegmentError, match="nested deeper"):
        segments.parse("not " * 300 + "all-members")


def test_a_long_flat_expression_works(synced: Site) -> None:
    load(synced, [({"all-members": "confirmed"}, frozenset())])
    expression = " or ".join(["all-members and not clp-secretaries"] * 50)
    assert resolve(synced, expression) == {"p0@example.org"}


def test_list_slugs_of_a_segment(synced: Site) -> None:
    load(synced, [])
    with transaction(synced.engine) as session:
        segment = selection.resolve(
            session, "clp-secretaries or (all-members and not clp-secretaries)"
        )
    assert segment.list_slugs == ["clp-secretaries", "all-members"]


def test_the_lists_an_unsubscribe_from_a_mailing_ends(synced: Site) -> None:
    """One rule for the one-click token and the mailto address: the lists named, else all."""
    with transaction(synced.engine) as session:
        ids = {slug: row.id for slug, row in lists.active_lists(session).items()}

        def ends(expression: str) -> list[int] | None:
            return selection.unsubscribe_lists(session, expression)

        assert ends("disability-group or tag:gone-since") == [ids["disability-group"]]
        assert ends("all-members and not clp-secretaries") == [
            ids["all-members"],
            ids["clp-secretaries"],
        ]
        assert ends("tag:press") is None  # every list
        lists.active_lists(session)["disability-group"].retired_at = NOW
        session.flush()  # a list retired after the mailing is still the mailing's list
        assert ends("disability-group") == [ids["disability-group"]]


# --- the property: SQL agrees with plain Python ---------------------------------------------

atom = st.one_of(
    st.sampled_from(LISTS).map(lambda s: ListRef(s, 0)),
    st.sampled_from(TAGS).map(lambda t: TagRef(t, 0)),
)
expressions: st.SearchStrategy[Node] = st.recursive(
    atom,
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=8,
)
people = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(LISTS), st.sampled_from(STATUSES), max_size=3),
        st.frozensets(st.sampled_from(TAGS), max_size=3),
    ),
    max_size=12,
)


def show(node: Node) -> str:
    """The expression as a person would write it, parenthesised where needed."""
    if isinstance(node, ListRef):
        return node.slug
    if isinstance(node, TagRef):
        return f"tag:{node.name}"
    if isinstance(node, Not):
        return f"not {wrap(node.operand)}"
    assert isinstance(node, And | Or)  # the strategy makes no saved names
    joiner = " and " if isinstance(node, And) else " or "
    return joiner.join(wrap(o) for o in node.operands)


def wrap(node: Node) -> str:
    return show(node) if isinstance(node, ListRef | TagRef | Not) else f"({show(node)})"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(node=expressions, data=people)
def test_sql_agrees_with_python(synced: Site, node: Node, data: list[Person]) -> None:
    load(synced, data)
    expected = {
        f"p{n}@example.org"
        for n, (statuses, tags) in enumerate(data)
        if segments.matches(node, {s for s, st in statuses.items() if st == "confirmed"}, set(tags))
    }
    expression = show(node)
    assert segments.parse(expression) is not None
    assert resolve(synced, expression) == expected, expression
