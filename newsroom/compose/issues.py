"""Reading an issue: YAML front matter, the Markdown body and its typed blocks, all checked.

    issue = load_issue(path, site.config)   # raises ProblemsError listing every problem
    issue.slug, issue.title, issue.date, issue.summary, issue.to, issue.path, issue.body
    issue.published                           # the instant it is published (aware datetime)
    issue.images                              # the image files it names, checked (images.py)
    load_all(site)                            # every issue in issues/, newest first

The body is a tuple of nodes: `Markdown` (text with the file line it starts on) and `Block`
(type, title, typed `data` from `blocks`, and its own children). Only `private` and `only`
blocks hold other blocks. Problems are `Problem(path, line, message)`, shown as
`issues/FILE.md:LINE: message`; a file with any problem is never rendered.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from newsroom import segments, textfiles
from newsroom.compose import blocks, images, markup
from newsroom.compose.images import Picture
from newsroom.errors import NewsroomError, Problem, ProblemsError
from newsroom.settings import Config
from newsroom.zones import ZoneError, skipped
from newsroom.zones import zone as named_zone

FOLDER = "issues"  # the site's folder of issues (Site.issues_dir); every file they name is in it
FRONT_KEYS = ("title", "date", "to", "summary", "slug")
REQUIRED_FRONT = ("title", "date")
FILE_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})-(.+)\.md$")
SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_ONLY = 6  # different `only` expressions in one issue: 2**6 email variants at most
# Bounds on what one file may make us do (issue #11): rendering is linear in the size, and an
# issue is sent as one email that Gmail clips at 102 KB of HTML anyway.
MAX_ISSUE_BYTES = 64 * 1024
MAX_FRONT_BYTES = 16 * 1024
MAX_YAML_DEPTH = 8
MAX_BLOCK_DEPTH = 6  # blocks inside blocks: private > only > meeting is 3
# Greedy title, stripped afterwards: a lazy `(.*?)\s*$` is quadratic in a run of spaces.
OPEN = re.compile(r"^:::\s*([A-Za-z][\w-]*)?(.*)$")
CLOSE = re.compile(r"^:::\s*$")


class Refused(yaml.MarkedYAMLError):
    """Front matter YAML that is valid but not read: anchors, aliases, deep nesting."""


class _Loader(yaml.SafeLoader):
    """YAML without timestamp magic: dates stay text, so a bad one is our message, not a crash.

    Anchors and aliases are refused: a few hundred bytes of nested aliases ("billion laughs")
    expand to gigabytes, and front matter has no use for them. Nesting is bounded, because
    PyYAML composes nodes recursively."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise Refused(
                problem="YAML anchors and aliases (& and *) are not allowed in the front "
                "matter: write each value out",
                problem_mark=event.start_mark,
            )
        if self.depth >= MAX_YAML_DEPTH:
            raise Refused(
                problem=f"the front matter nests lists or mappings more than {MAX_YAML_DEPTH} "
                'deep: use plain "key: value" lines',
                problem_mark=event.start_mark,
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


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
    date: dt.date  # the day as written in the front matter: what the page and email say
    published: dt.datetime  # aware: when it appears in the archive and feeds (`publication`)
    summary: str
    to: str | None  # the default audience: a segment expression
    body: tuple[Node, ...]
    to_line: int = 1  # the line of `to:` in the front matter
    # The image files it names, by address as written (percent-encoded): `images.read`
    images: Mapping[str, Picture] = field(default_factory=dict, hash=False)

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


def _text(frame: _Frame, raw: str, number: int) -> None:
    if not frame.text:
        frame.text_line = number
    frame.text.append(raw)


class _Reader:
    def __init__(self, path: Path, shown: str, timezone: str, folder: Path) -> None:
        self.path, self.shown, self.timezone, self.folder = path, shown, timezone, folder
        self.problems: list[Problem] = []
        self.too_deep = 0
        self.images: dict[str, Picture] = {}
        self.refused: dict[str, str] = {}  # image address -> its problem

    def picture(self, url: str) -> str | None:
        """The problem with the image file URL names, if any; each file is read once."""
        if url not in self.images and url not in self.refused:
            found = images.read(url, self.path.parent, self.folder)
            if isinstance(found, str):
                self.refused[url] = found
            else:
                self.images[url] = found
        return self.refused.get(url)

    def report(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.shown, line, message))

    def report_in(self, shown: str, line: int, message: str) -> None:
        """A problem in another file the issue names (a supporters list)."""
        self.problems.append(Problem(shown, line, message))

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
        source = "\n".join(lines[1:end])
        if len(source.encode()) > MAX_FRONT_BYTES:
            self.report(
                1,
                f"the front matter is over {MAX_FRONT_BYTES // 1024} KB: it holds only the "
                "title, date, to, summary and slug",
            )
            return {}, end + 1
        try:
            data = yaml.load(source, Loader=_Loader) or {}
        except Refused as exc:
            mark = exc.problem_mark
            self.report(mark.line + 2 if mark is not None else 1, str(exc.problem))
            return {}, end + 1
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
        self.too_deep = 0  # blocks opened beyond MAX_BLOCK_DEPTH: read as text, closed as such
        for index in range(start, len(lines)):
            raw, number = lines[index], index + 1
            top = stack[-1]
            if CLOSE.match(raw) and self.too_deep:
                self.too_deep -= 1
                _text(top, raw, number)
            elif CLOSE.match(raw):
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
                _text(top, raw, number)
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
        if len(stack) > MAX_BLOCK_DEPTH or self.too_deep:
            if not self.too_deep:
                self.report(
                    number,
                    f"blocks are nested more than {MAX_BLOCK_DEPTH} deep here: close some "
                    'with ":::" first',
                )
            self.too_deep += 1
            _text(stack[-1], raw, number)
            return
        match = OPEN.match(raw)
        type_ = (match.group(1) or "") if match else ""
        title = match.group(2).strip() if match else ""
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
            frame.line,
            body.line if body else frame.line + 1,
            self.path.parent,
            self.timezone,
            self.folder,
            self.report_in,
        )
        data = blocks.build(
            frame.type, frame.title, frame.keys, body.text if body else "", at, self.report
        )
        if body is not None and not isinstance(data, blocks.Motion):
            markup.check(body.text, body.line, self.report, self.picture)
        if isinstance(data, blocks.Motion):
            for part in data.parts:
                markup.check(part.text, part.line, self.report, self.picture)
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
    folder = config.site_dir / FOLDER if config is not None else path.parent
    reader = _Reader(path, shown, timezone, folder)
    try:
        text = textfiles.read(path, shown, MAX_ISSUE_BYTES)
    except FileNotFoundError:
        raise NewsroomError(f"{shown}: no such issue file") from None
    except OSError as exc:
        raise NewsroomError(f"{shown}: cannot be read: {exc.strerror}") from None
    lines = textfiles.lines(text)
    for line, message in textfiles.control_characters(text):
        reader.report(line, message)
    front, start = reader.front(lines)
    nodes = reader.body(lines, start)
    expressions: set[str] = set()
    for node in _walk(nodes):
        if isinstance(node, Markdown):
            markup.check(node.text, node.line, reader.report, reader.picture)
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
    if reader.problems:  # the issue's own first, then those of the files it names
        raise ProblemsError(
            sorted(reader.problems, key=lambda p: (p.path != shown, p.path, p.line))
        )
    assert issue is not None
    return issue


def _issue(
    path: Path, front: dict[str, Any], nodes: tuple[Node, ...], reader: _Reader
) -> Issue | None:
    where: dict[str, int] = front.get("_lines", {})
    title, summary = str(front.get("title") or ""), str(front.get("summary") or "")
    for key in ("title", "summary"):
        markup.check_fields(str(front.get(key) or ""), where.get(key, 1), reader.report)
    when = _front_date(front.get("date"), where.get("date", 1), reader)
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
    slug = _slug(path, front)
    if not SLUG.match(slug):
        reader.report(
            where.get("slug", 1),
            f'the slug "{slug}" must be lower-case letters, digits and dashes, such as save-our-socialists',
        )
    if not match:
        reader.report(
            1, "name the issue file YYYY-MM-DD-slug.md, such as 2020-12-24-save-our-socialists.md"
        )
    if when is None:
        return None
    return Issue(
        path, slug, title, when.date(), when, summary, to, nodes, where.get("to", 1), reader.images
    )


def _slug(path: Path, front: dict[str, Any]) -> str:
    match = FILE_NAME.match(path.name)
    return str(front.get("slug") or (match.group(2) if match else path.stem))


def slug_of(path: Path, config: Config | None) -> tuple[str, int]:
    """An issue file's slug and the line that sets it (1: the file name does), from its front
    matter alone, so that a file with mistakes has one too."""
    reader = _Reader(path, shown_path(path, config), "UTC", path.parent)
    try:
        front, _ = reader.front(
            textfiles.lines(textfiles.read(path, reader.shown, MAX_ISSUE_BYTES))
        )
    except (OSError, NewsroomError):
        front = {}
    return _slug(path, front), front.get("_lines", {}).get("slug", 1)


def slug_problems(paths: Iterable[Path], config: Config) -> dict[Path, list[Problem]]:
    """For each of PATHS (resolved) whose slug another issue file has too, in issues/ or among
    PATHS: a problem naming the others. A slug is an issue's identity — its web address, and
    what sending goes by to know who already had it — so two issues never share one."""
    wanted = {Path(p).resolve() for p in paths}
    every = wanted | {p.resolve() for p in (config.site_dir / FOLDER).glob("*.md")}
    by_slug: dict[str, list[tuple[Path, int]]] = {}
    for path in sorted(every):
        slug, line = slug_of(path, config)
        by_slug.setdefault(slug, []).append((path, line))
    found: dict[Path, list[Problem]] = {}
    for slug, files in by_slug.items():
        for path, line in files if len(files) > 1 else ():
            if path in wanted:
                others = " and ".join(shown_path(o, config) for o, _ in files if o != path)
                message = (
                    f'the slug "{slug}" is also the slug of {others}: give one of them its own '
                    'with "slug: ..." in its front matter (a slug is an issue\'s web address, '
                    "and what sending goes by to know who already had it)"
                )
                found[path] = [Problem(shown_path(path, config), line, message)]
    return found


# `date: YYYY-MM-DD [HH:MM [ZONE]]`, ZONE a tz database name or a UTC offset such as +01:00.
DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[ \t]+(\d{1,2}:\d{2})(?:[ \t]+(\S+))?)?")
# A date alone is published at noon in site.timezone. Feeds carry an instant, which a reader's
# app shows in the reader's own zone: midnight in London is still the day before anywhere west
# of London, while noon is the same calendar day in every zone less than 12 hours from the
# site's (for London, UTC-11 to UTC+11), which is where nearly all of a site's readers are.
DEFAULT_TIME = dt.time(12, 0)


def _front_date(value: Any, line: int, reader: _Reader) -> dt.datetime | None:
    """The publication instant of `date:`, or None with the problem reported at LINE."""
    if not value:
        return None
    try:
        return publication(str(value).strip(), reader.timezone)
    except ValueError as exc:
        reader.report(line, str(exc))
        return None


def publication(text: str, site_zone: str) -> dt.datetime:
    """`date:` as an aware instant: `YYYY-MM-DD` is DEFAULT_TIME, a time without a zone is in
    SITE_ZONE. Raises ValueError with the words a volunteer sees."""
    match = DATE.fullmatch(text)
    try:
        day = dt.date.fromisoformat(match.group(1)) if match else None
    except ValueError:
        day = None
    if match is None or day is None:
        raise ValueError(
            f'bad date "{text}" for "date": write it as YYYY-MM-DD, such as 2020-12-24, or with '
            f"a time: 2020-12-24 18:30 (in {site_zone}), 2020-12-24 18:30 Europe/Paris or "
            "2020-12-24 18:30 +01:00"
        )
    if not blocks.MIN_YEAR <= day.year <= blocks.MAX_YEAR:  # far from datetime's limits
        raise ValueError(
            f'the year {day.year} in "date" is out of range: an issue is published between '
            f"{blocks.MIN_YEAR} and {blocks.MAX_YEAR}"
        )
    clock, zone_text = match.group(2), match.group(3)
    try:
        time = dt.time.fromisoformat(clock.zfill(5)) if clock else DEFAULT_TIME
    except ValueError:
        raise ValueError(
            f'bad time "{clock}" in "date": write HH:MM from 00:00 to 23:59, such as 18:30'
        ) from None
    try:
        zone = named_zone(zone_text) if zone_text else ZoneInfo(site_zone)  # a checked setting
    except ZoneError as exc:
        raise ValueError(f'{exc.problem} in "date": {exc.hint}') from None
    moment = dt.datetime.combine(day, time, zone)
    if isinstance(zone, ZoneInfo) and skipped(moment):
        raise ValueError(
            f"{day} {time:%H:%M} does not exist in {zone.key}: the clocks go forward then, "
            "choose another time"
        )
    # As a fixed offset: the wall time as written, and an instant that compares equal to itself
    # in any zone (a zone's hour that comes twice compares unequal to every other zone, PEP 495).
    offset = moment.utcoffset()
    assert offset is not None
    return moment.astimezone(dt.timezone(offset))


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
    paths = sorted(site.issues_dir.glob("*.md"))
    clashes = slug_problems(paths, site.config)
    for path in paths:
        try:
            found.append(load_issue(path, site.config))
        except ProblemsError as exc:
            problems.extend(exc.problems)
        problems.extend(clashes.get(path.resolve(), []))
    if problems:
        raise ProblemsError(problems)
    return sorted(found, key=lambda i: (i.published, i.slug), reverse=True)
