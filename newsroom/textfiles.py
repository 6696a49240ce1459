"""Text files people write (issues, supporters lists, newsroom.toml, lists.toml, .env): read
with a size bound, decoded as UTF-8, split into lines as editors count them, and checked for
invisible control characters — every problem as `FILE:LINE: message`.

    text = read(path, shown, limit=MAX_ISSUE_BYTES)    # raises ProblemsError
    for line, message in control_characters(text): ...
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from newsroom.errors import Problem, ProblemsError

BOM = "\ufeff"  # some editors start a UTF-8 file with it; it means nothing, so it is dropped
# C0 controls but tab, LF and CR; DEL; C1 controls; U+FFFE/U+FFFF, which XML (feeds, MJML)
# cannot hold; and U+E000–U+E002, which markup.py uses as merge-field sentinels.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ue000-\ue002]")
NEWLINE = re.compile(r"\r\n|\r|\n")


def read(path: Path, shown: str, limit: int) -> str:
    """The text of PATH (shown to people as SHOWN); a file over LIMIT bytes or not UTF-8 is a
    ProblemsError naming the file (and the line of the first bad byte)."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)  # never more: a huge file costs no memory
    if len(data) > limit:
        raise ProblemsError(
            [
                Problem(
                    shown,
                    0,
                    f"the file is larger than {limit // 1024} KB, the most newsroom reads: "
                    "shorten it or split it in two",
                )
            ]
        )
    return decode(data, shown)


def decode(data: bytes, shown: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = data[exc.start]
        raise ProblemsError(
            [
                Problem(
                    shown,
                    line,
                    f"not UTF-8 (byte 0x{byte:02X} at column {column}): save the file as UTF-8",
                )
            ]
        ) from None
    return text.removeprefix(BOM)


def lines(text: str) -> list[str]:
    """TEXT's lines, split at LF, CRLF or CR only. (str.splitlines also splits at form feeds,
    U+2028 and others, so its line numbers would not be the ones an editor shows.)"""
    found = NEWLINE.split(text)
    if found and found[-1] == "":
        found.pop()
    return found


def control_characters(text: str) -> Iterator[tuple[int, str]]:
    """(line, message) for each line holding an invisible control character, the first on it."""
    for number, line in enumerate(lines(text), 1):
        match = CONTROL.search(line)
        if match:
            code = ord(match.group())
            yield (
                number,
                f"control character U+{code:04X} at column {match.start() + 1}: delete it (it is "
                "invisible, and often comes with text pasted from a PDF or a word processor)",
            )
