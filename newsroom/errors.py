"""The errors newsroom reports to people: each says where (FILE:LINE or a setting) and what."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


class NewsroomError(Exception):
    """An error a volunteer can act on. The CLI prints it as one line and exits 1."""


# report(line, message): how the readers of a file (blocks, Markdown) hand each problem they find
# to the caller that knows the file's name, so that every one is reported, not just the first.
Reporter = Callable[[int, str], None]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one file, at one line."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: {self.message}"
            if self.line
            else f"{self.path}: {self.message}"
        )


class ProblemsError(NewsroomError):
    """Several problems found at once (all errors of a file are reported together)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigError(NewsroomError):
    """A bad, unknown or missing setting."""
