"""``medsight explain``: Grad-CAM or occlusion maps of a trained classifier, one PNG per input."""

from __future__ import annotations

from pathlib import Path

from medsight.errors import ConfigError
from medsight.runs import open_run
from medsight.utils import atomic_write


def explain_path(
    run_dir: str | Path,
    source: str | Path,
    output: str | Path,
    *,
    method: str = "gradcam",
    target: str | None = None,
) -> list[Path]:
    """Explain the run's decision (or class ``target``, a name or index) for every input under ``source``."""
    from medsight.data.inputs import input_samples
    from medsight.explain import explain, explanation_png
    from medsight.tasks.classify.pipeline import load_model, predict_probabilities, stack_inputs

    run = open_run(run_dir)
    task, model = load_model(run)
    names = run.plan.class_names
    target_index = _target_index(target, names)
    written = []
    for sample in input_samples(Path(source)):
        x = stack_inputs([sample], run.plan)
        probs = predict_probabilities(task, model, x)[0]
        cls = int(probs.argmax()) if target_index is None else target_index
        heat = explain(model, x[0].float(), method=method, target=cls)
        title = f"{Path(sample.case_id).name}: {method} for {names[cls]} (p={probs[cls]:.3f})"
        png = explanation_png(x[0].float().numpy(), heat, title=title)
        path = Path(output) / f"{Path(sample.case_id).name.split('.')[0]}-{method}.png"
        written.append(atomic_write(path, lambda tmp, data=png: tmp.write_bytes(data)))
    return written


def _target_index(target: str | None, names: list[str]) -> int | None:
    if target is None:
        return None
    if target in names:
        return names.index(target)
    if target.isdigit() and int(target) < len(names):
        return int(target)
    raise ConfigError(f"--target: expected a class name ({', '.join(names)}) or index, got {target!r}")
