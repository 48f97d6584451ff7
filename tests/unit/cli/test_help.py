"""`mlsys --help` reads as sentences: each command's line in its group's list is one whole
sentence, and a command's own help wraps its paragraphs at the terminal's width, not where
its docstring's source lines end."""

from __future__ import annotations

import inspect

import pytest
import typer.main
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner

from app.cli import app

ROOT = typer.main.get_command(app)
Command = TyperCommand | TyperGroup


def commands(group: TyperGroup = ROOT, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    """Every command and group under `group`, with the words that call it."""
    found = []
    for name, command in group.commands.items():
        found.append(((*path, name), command))
        if isinstance(command, TyperGroup):
            found += commands(command, (*path, name))
    return found


def groups() -> list[tuple[str, ...]]:
    return [(), *(path for path, command in commands() if isinstance(command, TyperGroup))]


def paragraphs(command: Command) -> list[str]:
    """The help's paragraphs as a reader sees them: one line each, Markdown's code marks gone."""
    text = inspect.cleandoc(command.help or "").replace("`", "")
    return [" ".join(p.split()) for p in text.split("\n\n")]


def summary(command: Command) -> str:
    return " ".join((command.short_help or "").split()) or paragraphs(command)[0]


def help_lines(*words: str, columns: int) -> list[str]:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return [" ".join(line.strip(" │").split()) for line in result.output.splitlines()]


@pytest.mark.parametrize("path", [path for path, _ in commands()], ids=" ".join)
def test_each_command_is_summed_up_in_one_whole_sentence(path):
    command = dict(commands())[path]
    line = summary(command)
    assert line[:1].isupper() and line.endswith("."), f"mlsys {' '.join(path)}: {line!r}"
    assert len(line) <= 100, f"mlsys {' '.join(path)}: a summary of one line, not {len(line)} characters"


@pytest.mark.parametrize("group", groups(), ids=lambda g: " ".join(("mlsys", *g)))
def test_a_groups_list_shows_each_summary_whole_on_its_line(group):
    """At a width where nothing needs wrapping, each command's row is its name and its whole
    summary: no summary is cut short or continued on a second line."""
    lines = help_lines(*group, columns=200)
    listed = ROOT if not group else dict(commands())[group]
    for name, command in listed.commands.items():
        assert f"{name} {summary(command)}" in lines, (name, lines)


@pytest.mark.parametrize("path", [path for path, _ in commands()], ids=" ".join)
def test_a_commands_help_wraps_its_paragraphs_at_the_terminals_width(path):
    """On a terminal wide enough for any paragraph, each paragraph of the docstring is one line."""
    command = dict(commands())[path]
    lines = help_lines(*path, columns=1000)
    for paragraph in paragraphs(command):
        assert paragraph in lines, (paragraph, lines)
