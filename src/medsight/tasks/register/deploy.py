"""What deploy/ needs from the register family: the network to export (moving + fixed on the working
grid in, the velocity field out; integration, warping and files stay in the torch-free runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medsight.errors import ConfigError

if TYPE_CHECKING:
    from medsight.deploy.export import ExportSpec
    from medsight.runs import Run

RUNTIME = f"{__package__}.runtime"  # this folder's torch-free runtime, whatever the folder is called


def export_spec(run: Run) -> ExportSpec:
    """The run's network on an example pair of the working grid's size, and what the runtime needs."""
    from medsight.deploy.export import ExportSpec, example_input
    from medsight.tasks.register.learned import load_model

    _, model = load_model(run, "cpu")
    plan = run.plan
    example = example_input(2, plan.grid_array_shape)  # type: ignore[attr-defined]
    fields = {
        "grid_size_xyz": list(plan.grid_size),  # type: ignore[attr-defined]
        "working_spacing_mm": plan.spacing,  # type: ignore[attr-defined]
        "layout": "(batch, 2 = moving + fixed, *grid in z, y, x order), float32 in [0, 1]; output: "
        "a stationary velocity field (batch, dim, *grid) in voxels along the array axes",
        "integration_steps": plan.integration_steps,  # type: ignore[attr-defined]
        "atlas": plan.atlas,  # type: ignore[attr-defined]
    }
    return ExportSpec(network=model, example=example, runtime=RUNTIME, fields=fields)


def served_model(run: Run) -> None:
    raise ConfigError(f"serve: {run.path}: registration runs are not served yet; use `medsight predict`")
