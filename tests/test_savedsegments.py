"""Saved segments (issue #16, item 2): `segment:NAME` in the pure language, subscribers/
segments.toml read and checked at its lines, and the SQL of an expression that names saved
segments agreeing with plain Python and with its expansion (hypothesis), on SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsroom import segments
from newsroom.errors import NewsroomError, ProblemsError
from newsroom.people import savedsegments
from newsroom.segments import And, ListRef, Node, Or, SavedRef, SegmentError
from newsroom.site import Site
from tests.test_segments import Person, expressions, load, people, resolve, show, wrap
from tests.test_segments import synced as synced

FILE = "subscribers/segments.toml"
SAVED = {
    "north": "tag:north",
    "north-and-access": "segment:north or tag:access-needs",
    "members-north": "all-members and segment:north-and-access",
}


# --- the language ---------------------------------------------------------------------------


def test_a_name_stands_for_its_expression() -> None:
    node = segments.parse("segment:members-north and not clp-secretaries", SAVED)
    assert segments.unparse(node) == (
        "all-members and (tag:north or tag:access-needs) and not clp-secretaries"
    )
    assert [a.slug for a in segments.atoms(node) if isinstance(a, ListRef)] == [
        "all-members",
        "clp-secretaries",
    ]
    assert segments.matches(node, {"all-members"}, {"access-needs"})
    assert not segments.matches(node, {"all-members", "clp-secretaries"}, {"north"})
    assert segments.uses_saved(node) and not segments.uses_saved(segments.parse("all-members"))


def test_names_are_case_insensitive_like_tags() -> None:
    assert segments.unparse(segments.parse("SEGMENT:North", SAVED)) == "tag:north"


def test_unparse_keeps_precedence() -> None:
    saved = {"either": "a or b", "both": "c and d"}
    text = segments.unparse(segments.parse("not segment:either and segment:both or e", saved))
    assert text == "not (a or b) and c and d or e"
    assert segments.unparse(segments.parse("not segment:both", saved)) == "not (c and d)"


@pytest.mark.parametrize(
    ("expression", "message", "column"),
    [
        ("all-members and segment:nowhere", "unknown saved segment 'nowhere'", 17),
        ("segment:nrth", "did you mean 'segment:north'?", 1),
        ("segment:", "unexpected ':'", 8),
    ],
)
def test_errors_point_at_the_name(expression: str, message: str, column: int) -> None:
    with pytest.raises(SegmentError) as caught:
        segments.parse(expression, SAVED)
    assert message in str(caught.value) and caught.value.position == column - 1


def test_a_name_that_leads_back_to_itself_is_an_error_at_its_column() -> None:
    saved = {"a": "tag:x or segment:b", "b": "segment:a"}
    with pytest.raises(SegmentError) as caught:
        segments.parse("all-members and segment:a", saved)
    assert caught.value.position == 16
    assert "leads back to itself (a → b → a)" in str(caught.value)


def test_expansion_is_bounded() -> None:
    # Each name doubles the one before: 2**20 atoms if nothing stopped it.
    saved = {f"s{n}": f"segment:s{n - 1} and segment:s{n - 1}" for n in range(1, 21)}
    saved["s0"] = "tag:x"
    with pytest.raises(SegmentError) as caught:
        segments.parse("segment:s20", saved)
    assert f"more than {segments.MAX_NODES} lists, tags and names" in str(caught.value)
    deep = {f"d{n}": f"not segment:d{n + 1}" for n in range(60)} | {"d60": "tag:x"}
    with pytest.raises(SegmentError) as caught:
        segments.parse("segment:d0", deep)
    assert f"nested deeper than {segments.MAX_DEPTH} levels" in str(caught.value)


def test_without_the_saved_segments_a_name_is_syntax_only() -> None:
    node = segments.parse("segment:north and all-members")
    assert isinstance(node, And) and node.operands[0] == SavedRef("north", 0)
    assert list(segments.saved_refs(node)) == [SavedRef("north", 0)]
    with pytest.raises(NewsroomError, match="read without subscribers/segments.toml"):
        segments.matches(node, {"all-members"}, set())


def test_the_lists_a_mailing_is_for_skip_those_under_not() -> None:
    def lists(text: str) -> list[str]:
        return segments.addressed_lists(segments.parse(text, SAVED | {"dg": "disability-group"}))

    assert lists("not clp-secretaries and all-members") == ["all-members"]
    assert lists("segment:dg or all-members") == ["disability-group", "all-members"]
    assert lists("segment:north-and-access") == []


# --- segments.toml --------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "subscribers" / "segments.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, known: set[str] | None = None) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        savedsegments.read(path, known)
    return [str(p) for p in caught.value.problems]


def test_no_file_no_saved_segments(tmp_path: Path) -> None:
    assert savedsegments.read(tmp_path / "subscribers" / "segments.toml") == {}


def test_a_file_is_read_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '# ours\n[north-and-access]\nexpr = "tag:north or tag:access-needs"\n'
        'description = "North, and accessible formats"\n\n[dg]\nexpr = "disability-group"\n',
    )
    found = savedsegments.read(path, {"disability-group"})
    assert found["north-and-access"] == savedsegments.SavedSegment(
        "north-and-access", "tag:north or tag:access-needs", "North, and accessible formats", 3
    )
    assert savedsegments.expressions(found) == {
        "north-and-access": "tag:north or tag:access-needs",
        "dg": "disability-group",
    }


def test_every_problem_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[a]\n"  # 1
        'expr = "tag:x or"\n'  # 2
        "[b]\n"  # 3
        'expr = "segment:c"\n'  # 4
        "[c]\n"  # 5
        'expr = "segment:b and all-membrs"\n'  # 6
        "[d]\n"  # 7
        'description = "no expr"\n'  # 8
        "[e]\n"  # 9
        'expr = "segment:nowhere"\n'  # 10
        "[g]\n"  # 11
        'colour = "red"\n'  # 12
        'expr = "tag:x"\n'  # 13
        "[F_G]\n"  # 14
        'expr = "tag:x"\n'  # 15
        "[h]\n"  # 16
        "expr = 3\n"  # 17
        "[i]\n"  # 18
        'expr = "segment:a"\n',  # 19: a is wrong itself; nothing more said here
    )
    assert problems(path, {"all-members"}) == [
        f"{FILE}:2: [a] expr: expected a list, tag:NAME, segment:NAME, 'not' or '(', found the "
        "end (column 9)",
        f"{FILE}:4: [b] leads back to itself: segment:b → segment:c → segment:b (a saved "
        "segment cannot use itself)",
        f"{FILE}:6: [c] unknown list 'all-membrs' (did you mean 'all-members'? lists: all-members)",
        f'{FILE}:7: [d] needs an expr = "..." (such as "tag:north")',
        f"{FILE}:10: [e] unknown saved segment 'nowhere' (saved segments: a, b, c, e, i)",
        f"{FILE}:12: [g] unknown key 'colour'; known: expr, description",
        f"{FILE}:14: saved segment name 'F_G' must be lower-case letters, digits and hyphens",
        f"{FILE}:17: [h] expr must be text in quotes",
    ]


def test_a_toml_mistake_is_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[a]\nexpr = "tag:x"\nexpr = "tag:y"\n')
    assert problems(path)[0].startswith("subscribers/segments.toml:3: ")


def test_an_expansion_too_big_is_at_its_line(tmp_path: Path) -> None:
    lines = ['[s0]\nexpr = "tag:x"\n']
    lines += [f'[s{n}]\nexpr = "segment:s{n - 1} and segment:s{n - 1}"\n' for n in range(1, 12)]
    found = problems(write(tmp_path, "".join(lines)))
    assert found[0].startswith("subscribers/segments.toml:")
    assert f"more than {segments.MAX_NODES} lists, tags and names" in found[0]
    # [s8] is the first over: 256 tags and 2 + 4 + ... + 256 names
    assert found == [
        "subscribers/segments.toml:18: [s8] expr: segment:s7 cannot be used: more than 500 "
        "lists, tags and names, saved segments expanded"
    ]


# --- against the database -------------------------------------------------------------------


def test_sql_of_a_saved_segment(synced: Site) -> None:
    load(
        synced,
        [
            ({"all-members": "confirmed"}, frozenset({"press"})),  # p0
            ({"all-members": "confirmed"}, frozenset({"access-needs"})),  # p1
            ({"disability-group": "confirmed"}, frozenset({"access-needs"})),  # p2
        ],
    )
    saved = {"access": "tag:access-needs", "members-access": "all-members and segment:access"}
    with_names = resolve_saved(synced, "segment:members-access or tag:press", saved)
    assert with_names == {"p0@example.org", "p1@example.org"}
    assert resolve(synced, "all-members and tag:access-needs or tag:press") == with_names


def resolve_saved(site: Site, expression: str, saved: dict[str, str]) -> set[str]:
    from newsroom.database import transaction
    from newsroom.people import selection

    with transaction(site.engine) as session:
        segment = selection.resolve(session, expression, saved)
        found = {email for _, email, _ in session.execute(segment.select())}
        assert segment.count(session) == len(found)
        assert resolve(site, segment.plain) == found  # what a mailing keeps selects the same
        return found


def test_an_unknown_list_inside_a_saved_segment_points_at_its_name(synced: Site) -> None:
    load(synced, [({"all-members": "confirmed"}, frozenset())])
    with pytest.raises(SegmentError) as caught:
        resolve_saved(synced, "all-members or segment:gone", {"gone": "retired-list"})
    assert caught.value.position == 15
    assert "unknown list 'retired-list' in segment:gone (subscribers/segments.toml)" in str(
        caught.value
    )
    with pytest.raises(SegmentError) as caught:
        resolve_saved(synced, "north", {"north": "tag:press"})
    assert "a saved segment has that name: write segment:north" in str(caught.value)


saved_pair = st.tuples(expressions, expressions)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(outer=expressions, inner=saved_pair, data=people)
def test_sql_with_saved_segments_agrees_with_python(
    synced: Site, outer: Node, inner: tuple[Node, Node], data: list[Person]
) -> None:
    load(synced, data)
    one, two = inner
    saved = {"one": show(one), "two": f"segment:one and {wrap(two)}"}
    combined = Or((outer, And((one, two))))
    expected = {
        f"p{n}@example.org"
        for n, (statuses, tags) in enumerate(data)
        if segments.matches(
            combined, {s for s, st in statuses.items() if st == "confirmed"}, set(tags)
        )
    }
    expression = f"{wrap(outer)} or segment:two"
    assert resolve_saved(synced, expression, saved) == expected, (expression, saved)
