"""Reading the files people import: delimiter and encoding found, sizes bounded, workbooks read
a row at a time, and every file that cannot be read said so by FILE:LINE (issue #15)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from newsroom.errors import NewsroomError, ProblemsError
from newsroom.people import spreadsheets
from newsroom.people.spreadsheets import open_source


def write(tmp_path: Path, content: bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def records(path: Path) -> list[tuple[int, list[str]]]:
    return list(open_source(path).records())


@pytest.mark.parametrize(
    ("content", "delimiter"),
    [
        (b"email,name\nann@example.org,Ann\n", ","),
        (b"email;name\nann@example.org;Lee, Ann\nbob@example.org;Bob\n", ";"),
        (b"email\tname\nann@example.org\tLee, Ann\n", "\t"),
        (b"email\nann@example.org\n", ","),  # one column
        (b'"email";"name"\n"ann@example.org";"Lee; Ann"\n', ";"),
    ],
)
def test_the_delimiter_is_found(tmp_path: Path, content: bytes, delimiter: str) -> None:
    source = open_source(write(tmp_path, content))
    assert source.delimiter == delimiter
    assert len(records(source.path)[1][1]) == content.splitlines()[0].count(delimiter.encode()) + 1


@pytest.mark.parametrize(
    ("content", "encoding", "name"),
    [
        ("email,name\nann@example.org,Zoë\n".encode(), "UTF-8", "Zoë"),
        ("\ufeffemail,name\nann@example.org,Zoë\n".encode(), "UTF-8 with BOM", "Zoë"),
        ("email,name\nann@example.org,Zoë\n".encode("utf-16"), "UTF-16", "Zoë"),
        ("email,name\nann@example.org,Zoë\n".encode("cp1252"), "read as Windows-1252", "Zoë"),
    ],
)
def test_the_encoding_is_found(tmp_path: Path, content: bytes, encoding: str, name: str) -> None:
    source = open_source(write(tmp_path, content))
    assert source.describe().startswith(encoding)
    assert records(source.path)[1] == (2, ["ann@example.org", name])


def test_a_late_windows_byte_is_found_beyond_the_sample(tmp_path: Path) -> None:
    """UTF-8 is checked over the whole file, not a first few KB."""
    rows = b"".join(b"p%d@example.org,P\n" % n for n in range(5000))
    source = open_source(write(tmp_path, b"email,name\n" + rows + b"rene@example.org,Ren\xe9\n"))
    assert source.encoding == "cp1252"
    assert records(source.path)[-1] == (5002, ["rene@example.org", "René"])


def test_neither_utf8_nor_windows_1252(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name\nann@example.org,Ann\nbob@example.org,B\x81b\n")
    with pytest.raises(ProblemsError, match="people.csv:3: is neither UTF-8 nor Windows-1252"):
        open_source(path)


def test_crlf_a_blank_line_and_quoted_line_breaks(tmp_path: Path) -> None:
    path = write(tmp_path, b'email,name\r\n\r\nann@example.org,"Lee,\r\nAnn"\r\n,\r\nbob@example.org,Bob\r\n')  # fmt: skip
    assert records(path) == [
        (1, ["email", "name"]),
        (3, ["ann@example.org", "Lee,\r\nAnn"]),
        (6, ["bob@example.org", "Bob"]),
    ]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"PK\x03\x04rest of a zip", "people.csv", "people.csv: this is not a text file"),
        (b"e\x00m\x00a\x00i\x00l\x00", "people.csv", "people.csv: this is not a text file"),
        (b"\xd0\xcf\x11\xe0", "people.xls", "people.xls: newsroom reads .xlsx workbooks and CSV"),
        (b"not a zip", "people.xlsx", "people.xlsx: not an .xlsx workbook"),
    ],
)
def test_files_that_are_no_csv(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    with pytest.raises(NewsroomError, match=message.replace(".", r"\.")):
        open_source(write(tmp_path, content, name))


def test_a_missing_file_and_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NewsroomError, match="cannot read .*nope.csv: no such file"):
        open_source(tmp_path / "nope.csv")
    with pytest.raises(NewsroomError, match="cannot read .*: not a file"):
        open_source(tmp_path)


def test_no_header_row(tmp_path: Path) -> None:
    path = write(tmp_path, b"\nann@example.org,Ann Lee,press\n")
    with pytest.raises(ProblemsError, match="people.csv:2: no header row: the first line must name the columns"):  # fmt: skip
        open_source(path)


def test_a_line_too_long_is_not_read_whole(tmp_path: Path) -> None:
    path = write(tmp_path, b"email,name\nann@example.org," + b"x" * (spreadsheets.MAX_LINE + 10))
    with pytest.raises(ProblemsError, match="people.csv:2: a line longer than 65,536 characters"):
        records(path)


def test_a_quoted_cell_that_never_ends(tmp_path: Path) -> None:
    path = write(tmp_path, b'email,name\nann@example.org,"' + b"x\n" * 80_000)
    with pytest.raises(ProblemsError, match="people.csv:.*: broken CSV: field larger than field limit"):  # fmt: skip
        records(path)


def test_a_sheet_that_unpacks_too_big_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/sharedStrings.xml", b"0" * 2_000_000)
    monkeypatch.setattr(spreadsheets, "MAX_XLSX_UNPACKED", 1_000_000)
    with pytest.raises(NewsroomError, match="bomb.xlsx: a workbook over 100 MB"):
        open_source(path)


def test_a_zip_that_is_no_workbook(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hello")
    with pytest.raises(NewsroomError, match="people.xlsx: not a workbook newsroom can read"):
        open_source(path)


def test_workbook_cells_read_as_text(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["email", "n", "when", "flag"])
    sheet.append(["ann@example.org", 3.0, None, True])
    sheet.append([])
    sheet.append(["bob@example.org", 2.5, "x", False])
    book.save(tmp_path / "people.xlsx")
    assert records(tmp_path / "people.xlsx") == [
        (1, ["email", "n", "when", "flag"]),
        (2, ["ann@example.org", "3", "", "true"]),
        (4, ["bob@example.org", "2.5", "x", "false"]),
    ]


def test_sheet_is_for_workbooks(tmp_path: Path) -> None:
    with pytest.raises(NewsroomError, match="--sheet is for .xlsx workbooks"):
        open_source(write(tmp_path, b"email\n"), sheet="Members")
