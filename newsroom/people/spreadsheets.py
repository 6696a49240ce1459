"""The files people import, read as records of text cells, streamed: CSV whatever its delimiter
(comma, semicolon, tab) and encoding (UTF-8 with or without BOM, UTF-16 with BOM, Windows-1252),
a sheet of an .xlsx workbook, or a list of addresses one a line. Every size is bounded.
"""

from __future__ import annotations

import codecs
import csv
import re
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any

from newsroom.errors import NewsroomError, Problem, ProblemsError

MAX_LINE = 64 * 1024  # characters in one line of a text file
MAX_CELL = 4 * 1024  # characters in one cell (the longest field, a name, is 200)
MAX_COLUMNS = 500
SAMPLE = 16 * 1024  # characters the delimiter is guessed from
MAX_XLSX_BYTES = 100 * 1024 * 1024
MAX_XLSX_UNPACKED = 400 * 1024 * 1024  # an .xlsx is a zip: refuse one that unpacks to more
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with BOM",
    "utf-16": "UTF-16",
    "cp1252": "Windows-1252",
}
SPREADSHEETS = (".xls", ".ods", ".numbers", ".xlsb")
# A first line naming a person rather than columns: `Ann Lee <ann@example.org>` or an address.
MAILBOX_LINE = re.compile(r'[^<>]*<[^<>\s]+@[^<>\s]+>|"?[^\s,;"<>]+@[^\s,;"<>]+"?')

Record = tuple[int, list[str]]  # the line (or sheet row) it starts on, its cells


@dataclass(frozen=True)
class Source:
    """One file to import and how it is read."""

    path: Path
    label: str  # the file's name, as messages give it
    kind: str  # csv, xlsx or lines
    encoding: str = "utf-8"
    delimiter: str = ","
    sheet: str = ""
    sheets: tuple[str, ...] = ()

    def describe(self) -> str:
        """How the file was read, for the summary."""
        if self.kind == "xlsx":
            which = "the first of" if self.sheet == self.sheets[0] else "one of"
            others = f" ({which} {len(self.sheets)}: {', '.join(self.sheets)})"
            return f"sheet {self.sheet!r}" + (others if len(self.sheets) > 1 else "")
        text = ENCODINGS[self.encoding]
        if self.encoding == "cp1252":
            text = "read as Windows-1252, as it is not UTF-8 (save it as 'CSV UTF-8' next time)"
        if self.kind == "lines":
            return text
        return f"{text}, {DELIMITERS[self.delimiter]}-separated"

    def records(self) -> Iterator[Record]:
        """Every record with some text in it (blank lines and rows are left out)."""
        found = self._xlsx() if self.kind == "xlsx" else self._text()
        for line, cells in found:
            if any(cell.strip() for cell in cells):
                yield line, cells

    def _text(self) -> Iterator[Record]:
        with _open(self.path, self.encoding) as handle:
            lines = _bounded(handle, self.label)
            if self.kind == "lines":
                yield from ((n, [text.strip()]) for n, text in enumerate(lines, 1))
                return
            reader = csv.reader(lines, delimiter=self.delimiter, strict=True)
            line = 0
            try:
                for cells in reader:
                    start, line = line + 1, reader.line_num
                    yield start, cells
            except csv.Error as exc:
                raise ProblemsError([Problem(self.label, reader.line_num, f"broken CSV: {exc}")]) from None  # fmt: skip

    def _xlsx(self) -> Iterator[Record]:
        book = _workbook(self.path, self.label)
        line = 1
        try:
            sheet = book[self.sheet]
            sheet.reset_dimensions()  # some writers store wrong dimensions; read what is there
            for row in sheet.iter_rows():
                cells = [_cell_text(cell.value) for cell in row]
                line = next((c.row for c in row if getattr(c, "row", None)), line)
                yield line, cells
        except Exception as exc:  # a broken sheet's XML: openpyxl raises many kinds
            if isinstance(exc, NewsroomError):
                raise
            raise ProblemsError([Problem(self.label, line, f"cannot read sheet {self.sheet!r} after this row ({type(exc).__name__}: {exc})")]) from None  # fmt: skip
        finally:
            book.close()


def open_source(path: Path, sheet: str | None = None, headerless: bool | None = None) -> Source:
    """PATH ready to read: its kind, encoding and delimiter found (HEADERLESS None: guessed from
    the first line), or a NewsroomError saying what is wrong with it."""
    label = path.name
    if not path.is_file():
        reason = "no such file" if not path.exists() else "not a file"
        raise NewsroomError(f"cannot read {path}: {reason}")
    suffix = path.suffix.lower()
    if suffix in SPREADSHEETS:
        raise NewsroomError(f"{label}: newsroom reads .xlsx workbooks and CSV files: save it as one of those")  # fmt: skip
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx_source(path, label, sheet)
    if sheet:
        raise NewsroomError(f"--sheet is for .xlsx workbooks; {label} is a text file")
    encoding = _encoding(path, label)
    with _open(path, encoding) as handle:
        sample = handle.read(SAMPLE)
    first = next((line.strip() for line in sample.splitlines() if line.strip()), "")
    if headerless is None:
        headerless = "@" in first
        if headerless and not MAILBOX_LINE.fullmatch(first):
            raise ProblemsError([Problem(label, _line_of(sample, first), "no header row: the first line must name the columns, such as email,name,tags,lists")])  # fmt: skip
    if headerless:
        return Source(path, label, "lines", encoding)
    return Source(path, label, "csv", encoding, _delimiter(sample, first))


def _open(path: Path, encoding: str) -> IO[str]:
    try:
        return path.open(encoding=encoding, newline="")
    except OSError as exc:
        raise NewsroomError(f"cannot read {path}: {exc.strerror}") from None


def _bounded(handle: IO[str], label: str) -> Iterator[str]:
    """The lines of HANDLE, none longer than MAX_LINE (nor read whole if it is)."""
    number = 0
    while line := handle.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE and not line.endswith(("\n", "\r")):
            raise ProblemsError([Problem(label, number, f"a line longer than {MAX_LINE:,} characters: is this a list of people?")])  # fmt: skip
        yield line


def _encoding(path: Path, label: str) -> str:
    """UTF-8 (a BOM from Excel is fine), UTF-16 when its BOM says so, else Windows-1252 when the
    file is not UTF-8 (Excel's "CSV" on Windows) — checked over the whole file, in chunks."""
    line: int | None = None
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                return "utf-16"
            encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
            if head.startswith(b"PK\x03\x04") or b"\x00" in head:
                raise NewsroomError(f"{label}: this is not a text file: if it is a workbook, name it .xlsx; or save it as CSV")  # fmt: skip
            handle.seek(0)
            for candidate in (encoding, "cp1252"):
                line = _undecodable(handle, candidate)
                if line is None:
                    return candidate
                handle.seek(0)
    except OSError as exc:
        raise NewsroomError(f"cannot read {path}: {exc.strerror}") from None
    message = "is neither UTF-8 nor Windows-1252 text: save the file as 'CSV UTF-8'"
    raise ProblemsError([Problem(label, line or 1, message)])


def _undecodable(handle: IO[bytes], encoding: str) -> int | None:
    """The line of the first byte HANDLE's bytes cannot be decoded at in ENCODING, or None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    while chunk := handle.read(1024 * 1024):
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            return lines + chunk.count(b"\n", 0, exc.start)
        lines += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return lines
    return None


def _delimiter(sample: str, header: str) -> str:
    """Comma, semicolon or tab: csv.Sniffer's guess from the first lines, if the header line has
    it; else the one the header line has most of (one column: comma)."""
    whole = sample[: sample.rfind("\n") + 1] or sample
    try:
        guess = csv.Sniffer().sniff(whole, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        guess = ""
    if guess in DELIMITERS and guess in header:
        return guess
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _line_of(sample: str, text: str) -> int:
    return sample[: sample.find(text)].count("\n") + 1


def _workbook(path: Path, label: str) -> Any:
    import openpyxl  # only .xlsx imports load it (start-up: tests/test_cli_startup.py)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions
            return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken workbook
        raise NewsroomError(f"{label}: not a workbook newsroom can read ({type(exc).__name__}: {exc}); save it as .xlsx again, or as CSV") from None  # fmt: skip


def _xlsx_source(path: Path, label: str, sheet: str | None) -> Source:
    try:
        size = path.stat().st_size
        unpacked = sum(info.file_size for info in zipfile.ZipFile(path).infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise NewsroomError(f"{label}: not an .xlsx workbook ({exc})") from None
    if size > MAX_XLSX_BYTES or unpacked > MAX_XLSX_UNPACKED:
        raise NewsroomError(f"{label}: a workbook over {MAX_XLSX_BYTES // 2**20} MB ({MAX_XLSX_UNPACKED // 2**20} MB unpacked): save the sheet as CSV")  # fmt: skip
    book = _workbook(path, label)
    names = tuple(sheet.title for sheet in book.worksheets)  # not chart sheets: no rows
    book.close()
    if not names:
        raise NewsroomError(f"{label}: the workbook has no sheet")
    if sheet is not None and sheet not in names:
        raise NewsroomError(f"{label}: no sheet {sheet!r} (sheets: {', '.join(names)})")
    return Source(path, label, "xlsx", sheet=sheet or names[0], sheets=names)


def _cell_text(value: object) -> str:
    """A sheet cell as the text a CSV of it would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)
