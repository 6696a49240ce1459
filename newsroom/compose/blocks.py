"""The typed blocks of an issue (`::: TYPE title` … `:::`): their keys, validation and data.

Each block type has a `Spec` (required and optional keys, whether it may hold other blocks) and
a builder that turns the raw `key: value` lines into typed data (`Statement`, `Meeting`, …),
reporting every problem with the line it is on. Dates are spelled out in words here too
("Wednesday 5 October 2022, 6.30pm–8pm"), because the email, the text part and the web page
must all say the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsroom import segments, textfiles
from newsroom.compose import markup
from newsroom.errors import NewsroomError, ProblemsError, Reporter

Keys = dict[str, tuple[str, int]]  # key -> (value, line)


@dataclass(frozen=True)
class Spec:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    container: bool = False  # may hold other blocks (private, only)

    @property
    def keys(self) -> tuple[str, ...]:
        return self.required + self.optional


SPECS: dict[str, Spec] = {
    "statement": Spec(("by",), ("role", "date")),
    "meeting": Spec(("when",), ("until", "timezone", "where", "register", "join")),
    "supporters": Spec((), ("source",)),
    "motion": Spec((), ("by", "passed")),
    "action": Spec(("url",), ("button",)),
    "private": Spec(container=True),
    "only": Spec(container=True),
}
TYPES = ", ".join(SPECS)
# Meeting years: far enough from datetime's limits (1 and 9999) that an end a day later, a
# default hour's length or a time zone's offset in the .ics never overflows.
MIN_YEAR, MAX_YEAR = 1900, 2999


@dataclass(frozen=True)
class Statement:
    by: str
    role: str
    date: date | None
    month_only: bool  # "date: 2020-12" says "December 2020"

    @property
    def attribution(self) -> str:
        parts = [self.by, self.role]
        if self.date is not None:
            parts.append(month_words(self.date) if self.month_only else date_words(self.date))
        return "— " + ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class Meeting:
    start: datetime  # aware, in the meeting's own time zone
    end: datetime | None
    where: str
    register: str
    join: str  # private: email only, never on the web or in a feed

    @property
    def when_words(self) -> str:
        return meeting_words(self.start, self.end)


@dataclass(frozen=True)
class Supporters:
    names: tuple[str, ...]
    source: str
    intro: str = ""  # the body's Markdown other than the names


@dataclass(frozen=True)
class MotionPart:
    marker: str  # "1.", "a)" or "" for a plain paragraph
    level: int  # 0 paragraph, 1 numbered point, 2 lettered point
    text: str  # inline Markdown
    line: int


@dataclass(frozen=True)
class Motion:
    by: str
    passed: date | None
    parts: tuple[MotionPart, ...]


@dataclass(frozen=True)
class Action:
    url: str
    button: str


@dataclass(frozen=True)
class Only:
    expression: str


@dataclass(frozen=True)
class Private:
    pass


Data = Statement | Meeting | Supporters | Motion | Action | Only | Private


def check_keys(type_: str, keys: Keys, line: int, report: Reporter) -> None:
    """Unknown and missing keys, each naming the keys the block allows."""
    spec = SPECS[type_]
    allowed = ", ".join(spec.keys) if spec.keys else "none"
    for key, (_, key_line) in keys.items():
        if key not in spec.keys:
            report(
                key_line,
                f'unknown key "{key}" in the {type_} block: allowed keys are {allowed}',
            )
    for key in spec.required:
        if key not in keys:
            report(
                line,
                f'missing key "{key}" in the {type_} block (required: {", ".join(spec.required)})',
            )


@dataclass(frozen=True)
class Where:
    """Where a block sits: its opening line, its body's first line, the issue's folder."""

    line: int
    body_line: int
    base: Path
    timezone: str  # the site's, for meetings that name none
    root: Path  # the site's issues/ folder: every file an issue names must be inside it
    report_file: Callable[[str, int, str], None]  # a problem in a named file: (file, line, text)


def build(type_: str, title: str, keys: Keys, body: str, at: Where, report: Reporter) -> Data:
    """Typed data of one block whose keys were checked; problems go to `report`."""
    value = {k: v for k, (v, _) in keys.items()}
    where = {k: ln for k, (_, ln) in keys.items()}
    line = at.line
    if type_ == "statement":
        day, month_only = _date(
            value.get("date", ""), "date", where.get("date", line), report, True
        )
        return Statement(value.get("by", ""), value.get("role", ""), day, month_only)
    if type_ == "meeting":
        return _meeting(value, where, line, report, at.timezone)
    if type_ == "supporters":
        return _supporters(value, where, body, at, report)
    if type_ == "motion":
        passed, _ = _date(value.get("passed", ""), "passed", where.get("passed", line), report)
        return Motion(value.get("by", ""), passed, motion_parts(body, at.body_line))
    if type_ == "action":
        url = value.get("url", "")
        if url:
            _url(url, "url", where["url"], report)
        return Action(url, value.get("button", "") or "Take action")
    if type_ == "only":
        _segment(title, line, report)
        return Only(title)
    return Private()


def _date(
    text: str, key: str, line: int, report: Reporter, month_ok: bool = False
) -> tuple[date | None, bool]:
    if not text:
        return None, False
    if month_ok and re.fullmatch(r"\d{4}-\d{2}", text):
        text, month_only = text + "-01", True
    else:
        month_only = False
    try:
        return date.fromisoformat(text), month_only
    except ValueError:
        report(line, f'bad date "{text}" for "{key}": write it as YYYY-MM-DD, such as 2020-12-16')
        return None, False


def _url(url: str, key: str, line: int, report: Reporter) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # such as "https://[oops/": an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme not in ("https", "http") or not parts.netloc:
        report(
            line,
            f'"{key}" must be a full https:// address, such as https://example.org/page, not "{url}"',
        )
        return False
    return True


def _segment(expression: str, line: int, report: Reporter) -> None:
    if not expression:
        report(
            line,
            "the only block needs a segment expression after its type, such as ::: only disability-group",
        )
        return
    try:
        segments.parse(expression)
    except NewsroomError as exc:
        report(line, f"bad segment expression in the only block: {str(exc).splitlines()[0]}")


def _meeting(
    value: dict[str, str], where: dict[str, int], line: int, report: Reporter, site_zone: str
) -> Meeting:
    zone: ZoneInfo | None = None
    zone_name = value.get("timezone", "") or site_zone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long, a folder
        report(
            where.get("timezone", line),
            f'unknown time zone "{zone_name}" for "timezone": use a name such as Europe/London',
        )
    start = _datetime(value.get("when", ""), "when", where.get("when", line), zone, report)
    end = None
    until = value.get("until", "")
    if until and start is not None:
        end = _until(until, start, where["until"], zone, report)
    for key in ("register", "join"):
        if value.get(key):
            _url(value[key], key, where[key], report)
    epoch = datetime(2000, 1, 1, tzinfo=zone)
    return Meeting(
        start or epoch,
        end,
        value.get("where", ""),
        value.get("register", ""),
        value.get("join", ""),
    )


def _datetime(
    text: str, key: str, line: int, zone: ZoneInfo | None, report: Reporter
) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M")
    except ValueError:
        report(
            line,
            f'bad date and time "{text}" for "{key}": write it as YYYY-MM-DD HH:MM, such as 2022-10-05 18:30',
        )
        return None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        report(
            line,
            f'the year {moment.year} in "{key}" is out of range: a meeting takes place between '
            f"{MIN_YEAR} and {MAX_YEAR}",
        )
        return None
    return moment.replace(tzinfo=zone) if zone else moment


def _until(
    text: str, start: datetime, line: int, zone: ZoneInfo | None, report: Reporter
) -> datetime | None:
    if re.fullmatch(r"\d{1,2}:\d{2}", text.strip()):
        try:
            hours, minutes = (int(x) for x in text.split(":"))
            end = start.replace(hour=hours, minute=minutes)
        except ValueError:
            end = None
    else:
        end = _datetime(text, "until", line, zone, report) if "-" in text else None
    if end is None:
        report(
            line, f'bad time "{text}" for "until": write HH:MM (such as 20:00) or YYYY-MM-DD HH:MM'
        )
        return None
    if end <= start:
        if end.date() == start.date() and ":" in text and "-" not in text:
            end += timedelta(days=1)  # "until: 01:00" after an evening start is the next day
        else:
            report(line, f'"until" ({text}) is not after "when"')
            return None
    return end


def _supporters(
    value: dict[str, str],
    where: dict[str, int],
    body: str,
    at: Where,
    report: Reporter,
) -> Supporters:
    source, line = value.get("source", ""), at.line
    if source:
        path = named_file(source, "supporters file", at, where["source"], report)
        if path is None:
            return Supporters((), source, body)
        return Supporters(_read_names(path, source, at), source, body)
    else:
        # [ \t]*, not \s*: \s would run on across blank lines from every line start (quadratic).
        names = tuple(
            m.group(1).strip() for m in re.finditer(r"^[ \t]*[-*+][ \t]+(.+)$", body, re.MULTILINE)
        )
        if not names:
            report(
                line,
                'the supporters block has no names: add "source: FILE.txt" or a Markdown list ("- Name")',
            )
    intro = re.sub(r"^[ \t]*[-*+][ \t]+.+$\n?", "", body, flags=re.MULTILINE).strip()
    return Supporters(names, source, intro)


def named_file(name: str, what: str, at: Where, line: int, report: Reporter) -> Path | None:
    """The file NAME (relative to the issue) resolved, symlinks and all, if it lies inside the
    site's issues/ folder; else a problem at LINE and None. Anything an issue names is
    published, so `../.env`, an absolute path or a symlink pointing out would publish it."""
    path = inside(name, at.base, at.root)
    if path is None:
        report(line, outside(what, name))
        return None
    if not path.is_file():
        report(
            line,
            f'{what} "{name}" not found in {at.base.name}/, the folder of the '
            "issue: create it there, one name per line",
        )
        return None
    return path


def inside(name: str, base: Path, root: Path) -> Path | None:
    """NAME (relative to BASE) resolved, symlinks and all, if it lies inside ROOT; else None."""
    if Path(name).is_absolute() or "\0" in name:
        return None
    try:
        path = (base / name).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return path if path.is_relative_to(root.resolve()) else None


def outside(what: str, name: str) -> str:
    return (
        f'{what} "{name}" is outside the issues/ folder: an issue may only name files in '
        "issues/ (the file is published with it)"
    )


MAX_SUPPORTERS_BYTES = 128 * 1024


def _read_names(path: Path, source: str, at: Where) -> tuple[str, ...]:
    """The names in a supporters file; its problems are reported at its own lines."""
    shown = f"{at.root.name}/{path.relative_to(at.root.resolve()).as_posix()}"
    try:
        text = textfiles.read(path, shown, MAX_SUPPORTERS_BYTES)
    except ProblemsError as exc:
        for problem in exc.problems:
            at.report_file(problem.path, problem.line, problem.message)
        return ()
    except OSError as exc:
        at.report_file(shown, 0, f"cannot be read: {exc.strerror}")
        return ()
    for line, message in textfiles.control_characters(text):
        at.report_file(shown, line, message)
    # Names are shown like the body's text, merge fields included, so they are checked alike.
    markup.check_fields(text, 1, lambda n, message: at.report_file(shown, n, message))
    return supporter_names(text)


def supporter_names(text: str) -> tuple[str, ...]:
    """One name per line; blank lines and lines starting with # are skipped."""
    lines = (ln.strip().lstrip("-*").strip() for ln in textfiles.lines(text))
    return tuple(ln for ln in lines if ln and not ln.startswith("#"))


NUMBERED = re.compile(r"^\s*(\d{1,3}[.)])\s+(.*)$")
LETTERED = re.compile(r"^\s*(\(?[a-z][.)])\s+(.*)$")


def motion_parts(body: str, first_line: int) -> tuple[MotionPart, ...]:
    """Split a motion into paragraphs and points, keeping each point's own number or letter."""
    parts: list[MotionPart] = []
    current: list[str] = []
    head: tuple[str, int, int] | None = None  # marker, level, line

    def flush() -> None:
        nonlocal head
        if head is not None and (current or head[0]):
            parts.append(MotionPart(head[0], head[1], " ".join(current).strip(), head[2]))
        current.clear()
        head = None

    for offset, raw in enumerate(body.splitlines()):
        number = NUMBERED.match(raw)
        letter = None if number else LETTERED.match(raw)
        if number or letter:
            flush()
            match = number or letter
            assert match is not None
            head = (match.group(1), 1 if number else 2, first_line + offset)
            current.append(match.group(2))
        elif not raw.strip():
            flush()
        else:
            if head is None:
                head = ("", 0, first_line + offset)
            current.append(raw.strip())
    flush()
    return tuple(parts)


def date_words(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def month_words(day: date) -> str:
    return f"{day:%B %Y}"


def time_words(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    minutes = f".{moment.minute:02d}" if moment.minute else ""
    return f"{hour}{minutes}{'am' if moment.hour < 12 else 'pm'}"


def meeting_words(start: datetime, end: datetime | None) -> str:
    """'Wednesday 5 October 2022, 6.30pm–8pm' (an en dash, as a careful typesetter would)."""
    text = f"{start:%A} {date_words(start)}, {time_words(start)}"
    if end is None:
        return text
    if end.date() == start.date() or (end - start < timedelta(hours=12) and end.hour < 6):
        return f"{text}–{time_words(end)}"
    return f"{text} – {end:%A} {date_words(end)}, {time_words(end)}"
