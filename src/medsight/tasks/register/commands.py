"""The register family's own CLI verb: ``medsight register`` (one pair, any method; registered by the CLI
through :func:`register_commands`; the work is :func:`medsight.tasks.register.register`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register_commands(app: typer.Typer) -> None:
    """Add ``register`` to the ``medsight`` app."""

    @app.command("register")
    def register_command(
        fixed: Path = typer.Option(..., "--fixed", help="The fixed image (any format medsight reads)."),
        moving: Path = typer.Option(..., "--moving", help="The moving image."),
        output: Path = typer.Option(..., "--output", help="A new (or empty) folder for the outputs."),
        method: str = typer.Option("bspline", "--method", help="affine | bspline | demons | learned"),
        run: Path | None = typer.Option(None, "--run", help="A run of `medsight train register` (learned)."),
        moving_labels: Path | None = typer.Option(
            None, "--moving-labels", help="Warped by nearest neighbour."
        ),
        fixed_labels: Path | None = typer.Option(
            None, "--fixed-labels", help="With --moving-labels: Dice and HD95 per label in metrics.json."
        ),
        spacing: str = typer.Option(
            "auto", "--spacing", help="Working spacing (mm) of the classical methods; auto: 2 mm for volumes."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --output."),
    ) -> None:
        """Register a moving image to a fixed image in physical space: warped image and labels, ITK
        displacement field, affine .tfm, Jacobian map, checkerboard PNG and metrics.json in OUTPUT."""
        from medsight.tasks.register.pairwise import register

        result = register(
            fixed,
            moving,
            method,
            output=output,
            moving_labels=moving_labels,
            fixed_labels=fixed_labels,
            run=run,
            spacing=None if spacing == "native" else spacing,
            overwrite=overwrite,
        )
        shown = {k: v for k, v in result.metrics.items() if k != "per_label"}
        typer.echo(json.dumps(shown, indent=2, default=float))
