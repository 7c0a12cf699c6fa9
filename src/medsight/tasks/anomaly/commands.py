"""The anomaly family's own CLI verb: ``medsight pretrain`` (registered by the CLI through
:func:`register_commands`; the work is :func:`medsight.tasks.anomaly.pretrain`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register_commands(app: typer.Typer) -> None:
    """Add ``pretrain`` to the ``medsight`` app."""

    @app.command("pretrain")
    def pretrain_command(
        dataset: str = typer.Argument(
            ..., help="Unlabelled images: a MedMNIST name or .npz, class folders, a CSV."
        ),
        method: str = typer.Option("ae", "--method", help="ae | vae | dbn | simclr | mae"),
        set_: list[str] | None = typer.Option(
            None, "--set", help="train.* (train.time_budget=20m ...) or plan.* of the classify plan to match."
        ),
        out: Path = typer.Option(Path("runs"), "--out", help="Parent folder of the run folder."),
    ) -> None:
        """Pretrain an encoder on unlabelled images; writes RUN/encoder.pt for
        `medsight train classify DATA --set plan.pretrained=RUN/encoder.pt`."""
        from medsight.tasks.anomaly import pretrain

        run = pretrain(dataset, method, overrides=list(set_ or []), out=out)
        typer.echo(f"run: {run}")
        typer.echo(f"encoder: {run / 'encoder.pt'}")
