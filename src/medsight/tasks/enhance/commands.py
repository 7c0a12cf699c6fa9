"""The enhance family's own CLI verb: ``medsight degrade`` (registered by the CLI through
:func:`register_commands`; the work is :func:`medsight.tasks.enhance.degrade`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register_commands(app: typer.Typer) -> None:
    """Add ``degrade`` to the ``medsight`` app."""

    @app.command("degrade")
    def degrade_command(
        input: Path = typer.Option(..., "--input", help="An image, a DICOM series or a folder of them."),
        output: Path = typer.Option(..., "--output", help="A file (one input) or a folder."),
        degradation: str = typer.Option(
            ...,
            "--degradation",
            help="kspace:4x | kspace:8x | lowdose-ct:0.25 | rician:S | gaussian:S | sr:2x",
        ),
        seed: int = typer.Option(0, "--seed", help="Seeds every random draw (masks, noise)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    ) -> None:
        """Degrade clean images (seeded; the settings are logged beside the outputs)."""
        from medsight.tasks.enhance.degrade import degrade

        for path in degrade(input, output, degradation, seed=seed, overwrite=overwrite):
            typer.echo(str(path))
