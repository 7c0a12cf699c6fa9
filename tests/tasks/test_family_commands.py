"""A family adds its own verbs (``medsight degrade`` ...) with a ``commands.py`` beside its family module:
the CLI registers them with no edit to the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import medsight.tasks
from medsight.cli.main import add_family_commands

COMMANDS = '''
import typer

def register_commands(app: typer.Typer) -> None:
    @app.command("shout")
    def shout(word: str) -> None:
        """Say a word loudly."""
        typer.echo(word.upper())
'''


def make_family(root: Path, name: str, commands: str | None) -> str:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    if commands is not None:
        (package / "commands.py").write_text(commands)
    return name


def test_a_family_with_commands_adds_its_verb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    loud = make_family(tmp_path, "loud_family", COMMANDS)
    quiet = make_family(tmp_path, "quiet_family", None)
    monkeypatch.setattr(medsight.tasks, "FAMILIES", (quiet, loud))
    app = typer.Typer()

    @app.command()
    def shared() -> None:
        """A verb every family has."""

    add_family_commands(app)
    result = CliRunner().invoke(app, ["shout", "ward"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "WARD"
    assert "quiet_family" not in sys.modules  # a family without verbs is not imported for the CLI
