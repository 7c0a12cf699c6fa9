"""What deploy/ needs from the synthesize family: the network to export (the VAE, the translation
generator: pix2pix's, or CycleGAN's source -> target one, or a GAN's generator). Synthesis runs are
not served by the REST service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medsight.errors import ConfigError

if TYPE_CHECKING:
    from medsight.deploy.export import ExportSpec
    from medsight.runs import Run

RUNTIME = f"{__package__}.runtime"  # this folder's torch-free runtime, whatever the folder is called


def export_spec(run: Run) -> ExportSpec:
    """The run's generating network on an example input, and what the runtime needs beyond the plan."""
    import torch

    from medsight.deploy.export import ExportSpec, example_input
    from medsight.tasks.synthesize.pipeline import load_model

    model, plan = load_model(run, "cpu"), run.plan
    if plan.model == "vae":
        network, example = model, torch.rand((1, plan.in_channels, *plan.input_size))
        layout = "(batch, channels, *input_size) in [0, 1] -> the reconstruction, same layout"
    elif plan.kind == "paired":
        network, example = model.generator, torch.rand((1, 1, *plan.input_size))
        layout = f"(batch, 1, *input_size): {plan.source} in [0, 1] -> {plan.target} in [0, 1]"
    else:
        k = len(plan.class_names) if plan.conditional else 0
        network, example = model.generator, example_input(plan.latent_size + k, [1] * plan.dim)
        layout = (
            f"(batch, {plan.latent_size} N(0, 1) latents + {k} one-hot classes, 1, 1) -> pictures in [0, 1]"
        )
    fields = {"input_size": list(plan.input_size), "layout": layout, "synthesis_model": plan.model}
    return ExportSpec(network=network.eval(), example=example, runtime=RUNTIME, fields=fields)


def served_model(run: Run) -> Any:
    raise ConfigError(
        f"serve: {run.path} is a synthesis run; the REST service serves predictive models "
        "(use `medsight predict` or `medsight generate`)"
    )
