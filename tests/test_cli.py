"""CLI conventions: help and an example on every command, every command in the README, errors
as one line (the traceback only with --debug)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsroom.cli.main import main

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    context = click.Context(group)
    for name in group.list_commands(context):  # the lazy commands loaded too
        command = group.get_command(context, name)
        assert command is not None
        path = (*prefix, name)
        yield " ".join(path), command
        if isinstance(command, click.Group):
            yield from walk(command, path)


COMMANDS = list(walk(main))


def test_there_are_commands() -> None:
    names = [name for name, _ in COMMANDS]
    assert {"init", "db", "db upgrade", "settings"} <= set(names)


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_has_help_with_an_example(name: str, command: click.Command) -> None:
    assert command.get_short_help_str(), f"`newsroom {name}` has no one-line help"
    assert re.search(r"Examples?:", command.help or ""), (
        f"`newsroom {name}` has no example in its help"
    )
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"`newsroom {name}` option {param.opts} has no help"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_every_command_is_in_the_readme(name: str, command: click.Command) -> None:
    assert f"newsroom {name}" in README, f"`newsroom {name}` is missing from README.md"


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_short_help_flag_everywhere(name: str, command: click.Command) -> None:
    result = CliRunner().invoke(main, [*name.split(), "-h"])
    assert result.exit_code == 0
    assert re.search(r"Examples?:", result.stdout)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    plain = CliRunner().invoke(main, ["--site", str(tmp_path), "settings"])
    assert plain.exit_code == 1 and "Traceback" not in plain.stderr
    debug = CliRunner().invoke(main, ["--site", str(tmp_path), "--debug", "settings"])
    assert debug.exit_code == 1
    assert debug.exception is not None and "no newsroom.toml" in str(debug.exception)


def test_settings_as_json_hides_secrets(site_dir: Path) -> None:
    import json

    result = CliRunner().invoke(main, ["--site", str(site_dir), "settings", "--json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["secret.key"]["value"] == "(set)"
    assert rows["site.name"]["value"] == "Test Newsroom"
    assert rows["site.name"]["source"] == "newsroom.toml"


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "newsroom", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "Usage:" in done.stdout


def test_output_piped_into_head_ends_quietly(site_dir: Path) -> None:
    """`newsroom settings | head -1`: the reader stops reading; newsroom ends without a
    BrokenPipeError and with status 0, as `cat` would."""
    process = subprocess.Popen(
        [sys.executable, "-m", "newsroom", "--site", str(site_dir), "settings"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before newsroom has written anything: its first write fails
    errors = process.stderr.read()
    process.stderr.close()
    assert process.wait(60) == 0
    assert errors == ""


def test_a_wrong_option_through_the_entry_point_is_a_usage_error() -> None:
    """Through the real entry point: a wrong option is click's usage error (status 2)."""
    done = subprocess.run(
        [sys.executable, "-m", "newsroom", "--no-such-option"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "No such option" in done.stderr
    assert "Traceback" not in done.stderr
