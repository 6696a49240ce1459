"""Reading an issue: YAML front matter, the Markdown body and its typed blocks, all checked.

    issue = load_issue(path, site.config)   # raises ProblemsError listing every problem
    issue.slug, issue.title, issue.date, issue.summary, issue.to, issue.path, issue.body
    load_all(site)                            # every issue in issues/, newest first

The body is a tuple of nodes: `Markdown` (text with the file line it starts on) and `Block`
(type, title, typed `data` from `blocks`, and its own children). Only `private` and `only`
blocks hold other blocks. Problems are `Problem(path, line, message)`, shown as
`issues/FILE.md:LINE: message`; a file with any problem is never rendered.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newsroom import blocks, markup, segments
from newsroom.errors import NewsroomError, Problem, ProblemsError
from newsroom.settings import Config

FRONT_KEYS = ("title", "date", "to", "summary", "slug")
REQUIRED_FRONT = ("title", "date")
FILE_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})-(.+)\.md$")
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_ONLY = 6  # different `only` expressions in one issue: 2**6 email variants at most
OPEN = re.compile(r"^:::\s*([A-Za-z][\w-]*)?\s*(.*?)\s*$")
CLOSE = re.compile(r"^:::\s*$")


class _Loader(yaml.SafeLoader):
    """YAML without timestamp magic: dates stay text, so a bad one is our message, not a crash."""


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
KEY = re.compile(r"^([A-Za-z_][\w-]*):(?:\s+(.*))?$")


@dataclass(frozen=True)
class Markdown:
    text: str
    line: int  # file line of the text's first line


@dataclass(frozen=True)
class Block:
    type: str
    title: str
    data: blocks.Data
    body: str  # the Markdown between the keys and the closing line (leaf blocks)
    body_line: int
    children: tuple[Node, ...]  # the nodes inside a private or only block
    line: int


Node = Markdown | Block


@dataclass(frozen=True)
class Issue:
    path: Path
    slug: str
    title: str
    date: dt.date
    summary: str
    to: str | None  # the default audience: a segment expression
    body: tuple[Node, ...]

    def walk(self) -> Iterator[Node]:
        """Every node, depth first, in reading order."""
        yield from _walk(self.body)

    @property
    def blocks(self) -> list[Block]:
        return [n for n in self.walk() if isinstance(n, Block)]


def _walk(nodes: tuple[Node, ...]) -> Iterator[Node]:
    for node in nodes:
        yield node
        if isinstance(node, Block):
            yield from _walk(node.children)


@dataclass
class _Frame:
    """A block being read: its opening line, keys, and the nodes found inside so far."""

    type: str
    title: str
    line: int
    keys: blocks.Keys = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    text_line: int = 0
    known: bool = True


class _Reader:
    def __init__(self, path: Path, shown: str, timezone: str) -> None:
        self.path, self.shown, self.timezone = path, shown, timezone
        self.problems: list[Problem] = []

    def report(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.shown, line, message))

    def front(self, lines: list[str]) -> tuple[dict[str, Any], int]:
        """The front matter and the index of the body's first line."""
        if not lines or lines[0].strip() != "---":
            self.report(
                1,
                'an issue starts with front matter: a line "---", then "title: …" and "date: YYYY-MM-DD", then "---"',
            )
            return {}, 0
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is None:
            self.report(1, 'the front matter is never closed: add a line "---" after it')
            return {}, len(lines)
        try:
            data = yaml.load("\n".join(lines[1:end]), Loader=_Loader) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 2 if mark is not None else 1
            self.report(line, f"the front matter is not valid YAML: {getattr(exc, 'problem', exc)}")
            return {}, end + 1
        if not isinstance(data, dict):
            self.report(2, 'the front matter must be "key: value" lines')
            return {}, end + 1
        where = {m.group(1): i + 1 for i, ln in enumerate(lines[:end]) if (m := KEY.match(ln))}
        for key in data:
            if key not in FRONT_KEYS:
                self.report(
                    where.get(str(key), 2),
                    f'unknown key "{key}" in the front matter: allowed keys are {", ".join(FRONT_KEYS)}',
                )
        for key in REQUIRED_FRONT:
            if not data.get(key):
                self.report(
                    1,
                    f'missing key "{key}" in the front matter (required: {", ".join(REQUIRED_FRONT)})',
                )
        data["_lines"] = where
        return data, end + 1

    def body(self, lines: list[str], start: int) -> tuple[Node, ...]:
        stack = [_Frame("", "", 0)]
        for index in range(start, len(lines)):
            raw, number = lines[index], index + 1
            top = stack[-1]
            if CLOSE.match(raw):
                if len(stack) == 1:
                    self.report(
                        number,
                        '":::" closes no block: remove it, or open a block before it with "::: TYPE"',
                    )
                    continue
                self._flush(top)
                stack.pop()
                self._finish(top, stack[-1])
            elif raw.startswith(":::"):
                self._open(raw, number, stack)
            elif (
                top.known
                and top.type
                and not top.nodes
                and not top.text
                and self._key(top, raw, number)
            ):
                continue
            else:
                if not top.text:
                    top.text_line = number
                top.text.append(raw)
        while len(stack) > 1:
            frame = stack.pop()
            self.report(
                frame.line,
                f'the {frame.type} block opened here is never closed: add a line ":::" after its content',
            )
            self._flush(frame)
            self._finish(frame, stack[-1])
        self._flush(stack[0])
        return tuple(stack[0].nodes)

    def _open(self, raw: str, number: int, stack: list[_Frame]) -> None:
        match = OPEN.match(raw)
        type_ = (match.group(1) or "") if match else ""
        title = match.group(2) if match else ""
        known = type_ in blocks.SPECS
        if not known:
            self.report(number, f'unknown block type "{type_}": use one of {blocks.TYPES}')
        parent = stack[-1]
        if parent.type and parent.known and not blocks.SPECS[parent.type].container:
            self.report(
                number, f'a {parent.type} block cannot hold other blocks: close it with ":::" first'
            )
        self._flush(parent)
        stack.append(_Frame(type_ or "unnamed", title, number, known=known))

    def _key(self, frame: _Frame, raw: str, number: int) -> bool:
        """Read `key: value` lines right below the opening line (not in private/only)."""
        if blocks.SPECS[frame.type].container or frame.keys.get("\0done"):
            return False
        match = KEY.match(raw)
        if not match:
            frame.keys["\0done"] = ("", number)
            return not raw.strip()  # the blank line after the keys belongs to neither
        frame.keys[match.group(1)] = ((match.group(2) or "").strip(), number)
        return True

    def _flush(self, frame: _Frame) -> None:
        text = "\n".join(frame.text).strip("\n")
        if text.strip():
            first = frame.text_line + next(i for i, ln in enumerate(frame.text) if ln.strip())
            frame.nodes.append(Markdown(text, first))
        frame.text.clear()

    def _finish(self, frame: _Frame, parent: _Frame) -> None:
        frame.keys.pop("\0done", None)
        if not frame.known:
            return
        spec = blocks.SPECS[frame.type]
        body = (
            next((n for n in frame.nodes if isinstance(n, Markdown)), None)
            if not spec.container
            else None
        )
        blocks.check_keys(frame.type, frame.keys, frame.line, self.report)
        at = blocks.Where(
            frame.line, body.line if body else frame.line + 1, self.path.parent, self.timezone
        )
        data = blocks.build(
            frame.type, frame.title, frame.keys, body.text if body else "", at, self.report
        )
        if body is not None and not isinstance(data, blocks.Motion):
            markup.check(body.text, body.line, self.report)
        if isinstance(data, blocks.Motion):
            for part in data.parts:
                markup.check(part.text, part.line, self.report)
        markup.check_fields(frame.title, frame.line, self.report)
        children = tuple(frame.nodes) if spec.container else ()
        parent.nodes.append(
            Block(
                frame.type,
                frame.title,
                data,
                body.text if body else "",
                at.body_line,
                children,
                frame.line,
            )
        )


def load_issue(path: Path, config: Config | None = None, shown: str | None = None) -> Issue:
    """Read and check one issue file; every problem of the file is raised at once."""
    path = Path(path)
    shown = shown or shown_path(path, config)
    timezone = config.text("site.timezone") if config is not None else "Europe/London"
    reader = _Reader(path, shown, timezone)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NewsroomError(f"{shown}: no such issue file") from None
    except UnicodeDecodeError:
        raise NewsroomError(f"{shown}: not UTF-8 text: save the file as UTF-8") from None
    lines = text.splitlines()
    front, start = reader.front(lines)
    nodes = reader.body(lines, start)
    expressions: set[str] = set()
    for node in _walk(nodes):
        if isinstance(node, Markdown):
            markup.check(node.text, node.line, reader.report)
        elif isinstance(node.data, blocks.Only) and node.data.expression not in expressions:
            expressions.add(node.data.expression)
            if len(expressions) == MAX_ONLY + 1:
                reader.report(
                    node.line,
                    f"a {MAX_ONLY + 1}th different `only` expression: each combination is an "
                    f"email variant to render, so an issue may use at most {MAX_ONLY} "
                    "(repeat an expression, or combine two with `or`)",
                )
    issue = _issue(path, front, nodes, reader)
    if reader.problems:
        raise ProblemsError(sorted(reader.problems, key=lambda p: p.line))
    assert issue is not None
    return issue


def _issue(
    path: Path, front: dict[str, Any], nodes: tuple[Node, ...], reader: _Reader
) -> Issue | None:
    where: dict[str, int] = front.get("_lines", {})
    title, summary = str(front.get("title") or ""), str(front.get("summary") or "")
    for key in ("title", "summary"):
        markup.check_fields(str(front.get(key) or ""), where.get(key, 1), reader.report)
    day = _front_date(front.get("date"), where.get("date", 1), reader)
    to = front.get("to")
    if to is not None:
        to = str(to)
        try:
            segments.parse(to)
        except NewsroomError as exc:
            reader.report(
                where.get("to", 1), f'bad segment expression in "to": {str(exc).splitlines()[0]}'
            )
    match = FILE_NAME.match(path.name)
    slug = str(front.get("slug") or (match.group(2) if match else path.stem))
    if not SLUG.match(slug):
        reader.report(
            where.get("slug", 1),
            f'the slug "{slug}" must be lower-case letters, digits and dashes, such as save-our-socialists',
        )
    if not match:
        reader.report(
            1, "name the issue file YYYY-MM-DD-slug.md, such as 2020-12-24-save-our-socialists.md"
        )
    if day is None:
        return None
    return Issue(path, slug, title, day, summary, to, nodes)


def _front_date(value: Any, line: int, reader: _Reader) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if value:
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            reader.report(
                line, f'bad date "{value}" for "date": write it as YYYY-MM-DD, such as 2020-12-24'
            )
    return None


def shown_path(path: Path, config: Config | None) -> str:
    """The path as a volunteer knows it: relative to the site (issues/FILE.md) when inside it."""
    base = config.site_dir if config is not None else Path.cwd()
    try:
        return path.resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def load_all(site: Any) -> list[Issue]:
    """Every issue of a site (a `Site`), newest first; any problem in any file is raised."""
    problems: list[Problem] = []
    found: list[Issue] = []
    for path in sorted(site.issues_dir.glob("*.md")):
        try:
            found.append(load_issue(path, site.config))
        except ProblemsError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ProblemsError(problems)
    return sorted(found, key=lambda i: (i.date, i.slug), reverse=True)
