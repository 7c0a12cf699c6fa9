"""The synthesize family's own CLI verb: ``medsight generate`` (registered by the CLI through
:func:`register_commands`; the work is :func:`medsight.tasks.synthesize.generate`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register_commands(app: typer.Typer) -> None:
    """Add ``generate`` to the ``medsight`` app."""

    @app.command("generate")
    def generate_command(
        run: Path = typer.Option(..., "--run", help="A synthesis run folder (medsight train synthesize)."),
        n: int = typer.Option(..., "--n", help="How many pictures to make."),
        output: Path = typer.Option(..., "--output", help="A new (or empty) folder."),
        class_name: str | None = typer.Option(
            None, "--class", help="Only this class (class-conditional models)."
        ),
        seed: int = typer.Option(0, "--seed", help="The same seed makes the same pictures."),
    ) -> None:
        """Make new pictures with a trained generator: named files and samples.csv."""
        from medsight.tasks.synthesize import generate

        written = generate(run, n, output, class_name=class_name, seed=seed)
        typer.echo(str(written[0]))
