"""Saved segments: subscribers/segments.toml names segment expressions, read and checked.

    [north-and-access]
    expr = "tag:north or tag:access-needs"
    description = "Members in the north, and everyone who asked for accessible formats"

`segment:north-and-access` then stands wherever an expression may: `to:`, an `only` block,
`--to`, `newsroom segment` (issue #16, item 2). A saved expression may use other names; one
that leads back to itself, an unknown name or list, and an expansion too big to send are
errors at the line of its `expr`, all reported at once. The file is optional: a site without
one has no saved segments.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsroom import segments, settings, textfiles
from newsroom.errors import Problem, ProblemsError
from newsroom.segments import ListRef, SegmentError

KEYS = {"expr": str, "description": str}
MAX_SEGMENTS = 500


@dataclass(frozen=True)
class SavedSegment:
    """One saved segment as segments.toml defines it, and where."""

    name: str
    expr: str
    description: str = ""
    line: int = 1  # of its `expr` (of its [table] when it has none)


def read(path: Path, known_lists: Collection[str] | None = None) -> dict[str, SavedSegment]:
    """The saved segments in PATH (none when there is no such file), every one checked, and,
    given KNOWN_LISTS (lists.toml's slugs), every list they name; raises ProblemsError with
    every problem as `subscribers/segments.toml:LINE`."""
    if not path.is_file():
        return {}
    label = f"{path.parent.name}/{path.name}"
    text = textfiles.read(path, label, settings.MAX_FILE_BYTES)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = settings.toml_error(exc, text)
        raise ProblemsError([Problem(label, line, message)]) from None
    problems: list[Problem] = []
    if len(data) > MAX_SEGMENTS:
        raise ProblemsError([Problem(label, 1, f"more than {MAX_SEGMENTS} saved segments")])
    found = {}
    for name, table in data.items():
        saved = _check_table(label, text, name, table, problems)
        if saved is not None:
            found[name] = saved
    _check_expressions(label, found, known_lists, problems)
    if problems:
        raise ProblemsError(sorted(problems, key=lambda p: p.line))
    return found


def expressions(found: Mapping[str, SavedSegment]) -> dict[str, str]:
    """Name → expression, as `segments.parse` takes them."""
    return {name: saved.expr for name, saved in found.items()}


def _check_table(
    label: str, text: str, name: str, table: Any, problems: list[Problem]
) -> SavedSegment | None:
    line = settings.toml_line(text, name, None)
    if not isinstance(table, dict):
        problems.append(Problem(label, line, f'{name} must be a table: [{name}] with expr = "..."'))
        return None
    before = len(problems)
    if not segments.SAVED_NAME.fullmatch(name):
        problems.append(
            Problem(
                label,
                line,
                f"saved segment name {name!r} must be lower-case letters, digits and hyphens",
            )
        )
    problems.extend(settings.key_problems(label, text, name, table, KEYS))
    if "expr" not in table:
        problems.append(
            Problem(label, line, f'[{name}] needs an expr = "..." (such as "tag:north")')
        )
    if len(problems) > before:
        return None
    return SavedSegment(
        name, table["expr"], table.get("description", ""), settings.toml_line(text, name, "expr")
    )


def _check_expressions(
    label: str,
    found: dict[str, SavedSegment],
    known_lists: Collection[str] | None,
    problems: list[Problem],
) -> None:
    """Each expression on its own, then the names between them, then each one expanded."""
    trees: dict[str, segments.Node] = {}
    for name, saved in found.items():
        try:
            trees[name] = segments.parse(saved.expr)
        except SegmentError as exc:
            problems.append(
                Problem(label, saved.line, f"[{name}] expr: {exc.reason}{_column(exc)}")
            )
    broken = set(found) - set(trees)
    for name, tree in trees.items():
        line = found[name].line
        for ref in segments.saved_refs(tree):
            if ref.name not in found:
                hint = segments.saved_hint(ref.name, found)
                problems.append(
                    Problem(label, line, f"[{name}] unknown saved segment {ref.name!r} ({hint})")
                )
                broken.add(name)
        for atom in segments.atoms(tree):
            if isinstance(atom, ListRef) and known_lists is not None:
                _check_list(label, name, line, atom.slug, known_lists, problems)
    for cycle in _cycles(trees):
        first = cycle[0]
        path = " → ".join(f"segment:{n}" for n in [*cycle, first])
        problems.append(
            Problem(
                label,
                found[first].line,
                f"[{first}] leads back to itself: {path} (a saved segment cannot use itself)",
            )
        )
        broken.update(cycle)
    texts = expressions(found)
    for name in found:
        if name in broken or _depends_on(name, trees, broken):
            continue
        try:
            segments.parse(texts[name], texts)  # the limits, with every name expanded
        except SegmentError as exc:
            problems.append(Problem(label, found[name].line, f"[{name}] expr: {exc.reason}"))
            broken.add(name)  # those using it are not reported again


def _check_list(
    label: str, name: str, line: int, slug: str, known: Collection[str], problems: list[Problem]
) -> None:
    if slug not in known:
        hint = segments.lists_hint(slug, known)
        problems.append(Problem(label, line, f"[{name}] unknown list {slug!r} ({hint})"))


def _column(exc: SegmentError) -> str:
    return f" (column {exc.position + 1})" if exc.position else ""


def _uses(tree: segments.Node) -> list[str]:
    return list(dict.fromkeys(ref.name for ref in segments.saved_refs(tree)))


def _depends_on(name: str, trees: dict[str, segments.Node], broken: set[str]) -> bool:
    """Whether NAME uses, directly or not, a saved segment in BROKEN (reported already)."""
    seen, stack = set(), [name]
    while stack:
        current = stack.pop()
        for used in _uses(trees[current]) if current in trees else []:
            if used in broken:
                return True
            if used not in seen:
                seen.add(used)
                stack.append(used)
    return False


def _cycles(trees: dict[str, segments.Node]) -> list[list[str]]:
    """Each cycle of names using names once, starting at its member first in the file."""
    order = {name: index for index, name in enumerate(trees)}
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        path.append(name)
        for used in _uses(trees[name]):
            if used not in trees:
                continue
            if state.get(used) == 1:
                cycle = path[path.index(used) :]
                start = min(range(len(cycle)), key=lambda i: order[cycle[i]])
                cycle = cycle[start:] + cycle[:start]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    cycles.append(cycle)
            elif used not in state:
                walk(used, path)
        path.pop()
        state[name] = 2

    for name in trees:
        if name not in state:
            walk(name, [])
    return cycles
