"""Start-up (issue #13): each command imports only what it uses. `newsroom --help` and
`--version` load no database, web, MJML or feed library, and the summaries `--help` shows for
commands it has not imported agree with the commands' own help."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from newsroom.cli.main import COMMANDS, main

HEAVY = ("alembic", "sqlalchemy", "starlette", "uvicorn", "mjml", "feedgen", "icalendar",
         "jinja2", "css_inline", "psycopg", "aiosmtplib", "rich", "openpyxl",
         "PIL")  # fmt: skip


def imported(*args: str) -> set[str]:
    """The top-level packages `newsroom ARGS` imports, from `python -X importtime`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "newsroom", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines[1:]}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_no_heavy_library(flag: str) -> None:
    loaded = imported(flag)
    assert "click" in loaded  # the measurement works
    assert sorted(loaded & set(HEAVY)) == []


@pytest.mark.parametrize("command", ["send", "lists", "check", "report"])
def test_a_command_without_the_web_side_loads_neither_web_nor_migrations(command: str) -> None:
    loaded = imported(command, "--help")
    assert "sqlalchemy" in loaded  # the command itself was loaded
    assert sorted(loaded & {"alembic", "starlette", "uvicorn", "feedgen"}) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_summary_in_help_is_the_commands_own(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    first = " ".join((command.help or "").split("\n\n")[0].split())
    assert COMMANDS[name].help == first


def test_only_a_workbook_import_loads_openpyxl() -> None:
    """openpyxl costs start-up; the import command loads it for an .xlsx file only (issue #15)."""
    assert "openpyxl" not in imported("subscribers", "import", "--help")


def test_the_subscribers_commands_load_no_renderer() -> None:
    """The confirmation email's renderer (Markdown, iCalendar, YAML, Jinja: about 200 modules)
    loads when an email is made, not with every subscribers command (0.14 s of start-up, 12 MB
    of an import's peak memory: bench/bench_import.py --before)."""
    loaded = imported("subscribers", "import", "--help")
    assert "sqlalchemy" in loaded  # the command itself was loaded
    assert sorted(loaded & {"markdown_it", "icalendar", "yaml", "jinja2"}) == []
