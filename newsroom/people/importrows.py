"""The rows of a file to import, each checked: an address, a name, tags, lists and the consent
evidence it carries, or a Problem naming FILE:LINE and what is wrong with it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from newsroom.errors import Problem, ProblemsError
from newsroom.people import exportformats, spreadsheets
from newsroom.people.exportformats import EVIDENCE, Layout
from newsroom.people.spreadsheets import Source
from newsroom.people.subscribers import InvalidInput, clean_name, clean_tags, normalise_email

# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection"): a
# name typed into the public form such as `=cmd|' /C calc'!A0` would run when the export opens.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_EVIDENCE = 64  # characters of a time or an IP address as an export writes it


def spreadsheet_safe(cell: str) -> str:
    """CELL as a spreadsheet takes it as text: a formula's first character gets a single quote
    before it, which spreadsheets hide and which reading the export back takes off again."""
    return "'" + cell if cell.startswith(FORMULA_START) else cell


def unquoted(cell: str) -> str:
    """A cell of our own export as it was before spreadsheet_safe (an import reads it back)."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


@dataclass
class Row:
    line: int
    email: str
    name: str
    tags: list[str]
    lists: list[str]
    evidence: dict[str, str] = field(default_factory=dict)
    left: str | None = None  # the export says the person was not subscribed there: why


@dataclass(frozen=True)
class Reading:
    """A file opened for import: how it is read, and what its columns are."""

    source: Source
    layout: Layout
    header_line: int  # 0: no header row (a Mailman list)

    def describe(self) -> str:
        found = self.layout.format
        if not self.layout.recognised:
            how = " (as --format says)"
        elif found.headerless:
            how = " (no header row, an address on each line)"
        else:
            how = "" if found is exportformats.SPREADSHEET else " (recognised by its header)"
        return f"{found.title}{how}; {self.source.describe()}"


def open_file(
    path: Path, chosen: str | None = None, mapping: Sequence[str] = (), sheet: str | None = None
) -> Reading:
    """PATH opened, its header read and its format recognised (or CHOSEN)."""
    headerless = None if chosen is None else exportformats.FORMATS[chosen].headerless
    source = spreadsheets.open_source(path, sheet, headerless)
    if source.kind == "lines":
        return Reading(source, exportformats.layout(source.label, [], chosen, mapping), 0)
    first = next(source.records(), None)
    if first is None:
        raise ProblemsError([Problem(source.label, 1, "the file is empty: it needs a header row, such as email,name,tags,lists")])  # fmt: skip
    line, header = first
    if len(header) > spreadsheets.MAX_COLUMNS:
        raise ProblemsError([Problem(source.label, line, f"{len(header)} columns: at most {spreadsheets.MAX_COLUMNS}")])  # fmt: skip
    header = [unquoted(cell) for cell in header]
    return Reading(source, exportformats.layout(source.label, header, chosen, mapping, line), line)


def read_rows(reading: Reading, default_lists: Sequence[str], known: set[str]) -> Iterator[Row | Problem]:  # fmt: skip
    """Each data row checked, in order: a Row, or a Problem naming FILE:LINE."""
    for line, cells in reading.source.records():
        if line > reading.header_line:
            yield _row(reading, line, cells, default_lists, known)


def _row(
    reading: Reading, line: int, cells: list[str], default_lists: Sequence[str], known: set[str]
) -> Row | Problem:
    label, layout = reading.source.label, reading.layout
    extra = len(cells) > layout.width and any(c.strip() for c in cells[layout.width :])
    if extra and not layout.format.headerless:
        return Problem(label, line, f'{len(cells)} fields but the header has {layout.width} (a comma inside a name needs "quotes")')  # fmt: skip
    if max(map(len, cells), default=0) > spreadsheets.MAX_CELL:
        return Problem(label, line, f"a cell longer than {spreadsheets.MAX_CELL:,} characters")
    values = layout.values(cells)
    for field_, value in values.items():
        if value.startswith("'"):  # rare: the dict is built once and mended in place
            values[field_] = unquoted(value)
    try:
        email = normalise_email(values.get("email", ""))
        name = clean_name(values.get("name") or _joined(values))
        tags = _tags(layout, values.get("tags", ""))
        evidence = _evidence(values, layout.evidence) if layout.evidence else {}
    except InvalidInput as exc:
        return Problem(label, line, str(exc))
    slugs = list(dict.fromkeys([*default_lists, *exportformats.words(values.get("lists", ""))]))
    unknown = [slug for slug in slugs if slug not in known]
    if unknown:
        return Problem(label, line, f"unknown list {unknown[0]!r} (lists: {', '.join(sorted(known))})")  # fmt: skip
    if not slugs:
        return Problem(label, line, "no list: give --list SLUG or fill the 'lists' column")
    return Row(line, email, name, tags, slugs, evidence, layout.left(cells))


def _joined(values: dict[str, str]) -> str:
    """First and last names joined (`Ann` + `Lee`), each checked first."""
    parts = [clean_name(values.get(part)) for part in ("first_name", "last_name")]
    return " ".join(part for part in parts if part)


def _tags(layout: Layout, cell: str) -> list[str]:
    names = layout.format.tags(cell)
    if layout.format.free_tags:  # names people typed in the other tool: made into tags
        names = [slug for slug in map(exportformats.tag_slug, names) if slug]
    return clean_tags(names)


def _is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address; dotted quads checked without ipaddress (a tenth of an import's
    time went to it: bench/bench_import.py)."""
    parts = value.split(".")
    if len(parts) == 4 and all(
        p.isdigit() and len(p) <= 3 and (p == "0" or p[0] != "0") for p in parts
    ):
        return all(int(p) <= 255 for p in parts)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _evidence(values: dict[str, str], names: Sequence[str] = EVIDENCE) -> dict[str, str]:
    """The opt-in and confirmation times and IP addresses (NAMES: those the file has), kept as
    written once checked."""
    found = {}
    for name in names:
        value = values.get(name, "").strip()
        if not value:
            continue
        if len(value) > MAX_EVIDENCE:
            raise InvalidInput(f"{name} is longer than {MAX_EVIDENCE} characters")
        if name.endswith("_ip"):
            if not _is_ip(value):
                raise InvalidInput(f"{name} {value!r} is not an IP address")
        else:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise InvalidInput(f"{name} {value!r} is not a date and time such as 2024-03-14 09:12:31") from None  # fmt: skip
        found[name] = value
    return found
