"""`medsight robustness`: a run's split, clean and under each attack and epsilon, and how well
detectors tell the attacked inputs from clean ones; with ``shifts``, also under natural shifts (another
scanner's scale, contrast, colour, blur, noise, compression, bias field) at three severities.

Writes into ``out`` (default ``RUN/robustness``): ``robustness.json``, ``metric_vs_eps.png``,
``metric_vs_shift.png``,
``examples/<attack>.png`` (images, perturbations magnified, adversarial images) and ``report.html``.
The run itself is only read: checkpoints, plan and data are left as they were.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.errors import ConfigError, MedsightError
from medsight.metrics.table import json_safe
from medsight.robustness.adapter import AttackAdapter, Batch, case_count
from medsight.robustness.attacks import ATTACKS
from medsight.robustness.defences import with_defences
from medsight.robustness.space import UnitState, concat_states
from medsight.runs import Run, open_run
from medsight.utils import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_ATTACKS = ("fgsm", "pgd")
DEFAULT_EPS = ("1/255", "2/255", "4/255", "8/255")
N_EXAMPLES = 3


def evaluate_robustness(
    run_dir: str | Path,
    *,
    attacks: tuple[str, ...] | list[str] = DEFAULT_ATTACKS,
    eps: tuple[str, ...] | list[str] = DEFAULT_EPS,
    split: str = "test",
    steps: int = 20,
    max_cases: int | None = None,
    detectors: bool = True,
    out: str | Path | None = None,
    seed: int = 0,
    defences: list[str] | None = None,
    smoothing_sigma: str | float | None = None,
    smoothing_n: int = 1000,
    shifts: list[str] | None = None,
) -> dict[str, Any]:
    """Score ``run_dir`` on ``split`` clean and under every attack x epsilon; return robustness.json.

    Args:
        attacks: names in ``medsight.robustness.attacks.ATTACKS`` (fgsm, bim, pgd, pgd-l2, cw-l2, ...).
        eps: budgets in the attack space ("2/255"; "10HU" for CT models), see ``InputSpace.eps``.
        steps: iterations of the iterative attacks (PGD-20 by default).
        max_cases: attack only the first cases of the split (attacks on big 3D images are slow).
        detectors: also fit detectors on the validation split and report their AUROC (where the task's
            adapter ``supports_detectors``).
        defences: input transformations the model is evaluated (and attacked) through, e.g.
            ``["median:kernel=3"]``; attacks differentiate through them (BPDA where needed).
        smoothing_sigma: also certify the classifier smoothed by Gaussian noise of this sigma (unit space,
            e.g. "64/255"), with ``smoothing_n`` noisy copies per case: certified accuracy per L2 radius.
        shifts: natural shifts (``medsight.robustness.shifts.SHIFT_NAMES``) to score at each severity;
            an empty ``attacks`` with shifts gives the natural-shift report alone.
    """
    for name in attacks:
        ATTACKS.get(name)  # unknown names fail before any work
    run = open_run(run_dir)
    adapter = attack_adapter(run, split, max_cases)
    _check_capabilities(run, adapter, attacks, smoothing_sigma)
    if defences:
        adapter = with_defences(adapter, defences)
    adapter.model.eval()
    space = adapter.space
    eps_units = {e: space.eps(e) for e in eps}
    clean_outputs = _predict(adapter, [b.x for b in adapter.batches])
    report: dict[str, Any] = {
        "run": run.path.name,
        "task": run.config.task,
        "split": split,
        "cases": case_count(adapter),
        "metric": adapter.metric,
        "clean": adapter.score(clean_outputs, adapter.batches),
        "settings": {
            "attacks": list(attacks),
            "eps": list(eps),
            "steps": steps,
            "seed": seed,
            "defences": list(defences or []),
            "shifts": list(shifts or []),
        },
        "results": [],
    }
    if smoothing_sigma is not None:
        report["smoothing"] = _certify(adapter, space.eps(smoothing_sigma), smoothing_n, seed)
    detectors = detectors and adapter.supports_detectors
    fit_batches = _fit_batches(run) if detectors or "universal" in attacks else None
    detector_fit = _DetectorFit(adapter, fit_batches, seed) if detectors and fit_batches else None
    out_dir = Path(out) if out is not None else run.path / "robustness"
    units = [space.to_unit(b.x) for b in adapter.batches]
    if shifts:
        report["shifts"] = _shift_results(adapter, units, shifts, seed)
    for name in attacks:
        for e in eps:
            attack = _held_out_universal(adapter, fit_batches) if name == "universal" else ATTACKS.get(name)
            result, adversarial, outputs = _attack_split(
                adapter, units, name, attack, eps_units[e], steps, seed
            )
            result["eps"] = e
            if detector_fit is not None:
                result["detectors"] = detector_fit.auroc(units, adversarial)
            report["results"].append(result)
            log.info("%s eps %s: %s %.4f", name, e, adapter.metric, result["metrics"][adapter.metric])
        title = f"{name}, eps {eps[-1]} ({eps_units[eps[-1]]:.4g} of the intensity range)"
        examples = _examples(adapter, units, adversarial, clean_outputs, outputs)
        _write_examples(examples, title, out_dir / "examples" / f"{name}.png")
    _write(report, out_dir)
    return report


def attack_adapter(run: Run, split: str, max_cases: int | None = None) -> AttackAdapter:
    """The run's task's attack adapter of ``split`` (its first ``max_cases`` cases), through the registry."""
    from medsight.task_registry import get_task

    return get_task(run.config.task).attack_adapter(run, split, max_cases)


def _check_capabilities(
    run: Run, adapter: AttackAdapter, attacks: tuple[str, ...] | list[str], smoothing_sigma: object
) -> None:
    """ConfigError, before any attack runs, for an analysis the run's task does not support."""
    task = run.config.task
    if "universal" in attacks and not adapter.supports_universal:
        raise ConfigError(
            f"attack 'universal': needs inputs of one size and a validation split to fit the perturbation "
            f"on; task {task!r} does not provide them (choose another attack)"
        )
    if smoothing_sigma is not None and not adapter.supports_smoothing:
        raise ConfigError(
            f"smoothing: certifies single-label classifiers only; this run (task {task!r}) is not one"
        )


def _predict(adapter: AttackAdapter, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.inference_mode():
        return [adapter.forward(x).float() for x in inputs]


def _attack_split(
    adapter: AttackAdapter,
    units: list[tuple[torch.Tensor, UnitState]],
    name: str,
    attack: Any,
    eps: float,
    steps: int,
    seed: int,
) -> tuple[dict[str, Any], list[torch.Tensor], list[torch.Tensor]]:
    """Attack every batch (given as clean unit images and states); (result, adversarial unit images,
    the model's outputs on them)."""
    space = adapter.space
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    adversarial, linf, l2 = [], [], []
    for batch, (u, state) in zip(adapter.batches, units, strict=True):
        forward = space.forward_fn(adapter.forward, state)
        u_adv = attack(forward, adapter.loss, u, batch.y, eps=eps, steps=steps, generator=generator).detach()
        delta = (u_adv - u).flatten(1)
        linf += delta.abs().amax(dim=1).tolist()
        l2 += delta.norm(dim=1).tolist()
        adversarial.append(u_adv)
    outputs = _predict(
        adapter, [space.from_unit(a, st) for a, (_, st) in zip(adversarial, units, strict=True)]
    )
    result = {
        "attack": name,
        "eps_unit": eps,
        "metrics": adapter.score(outputs, adapter.batches),
        "perturbation": {"linf_mean": float(np.mean(linf)), "l2_mean": float(np.mean(l2))},
        "seconds": round(time.perf_counter() - started, 2),
    }
    return result, adversarial, outputs


def _shift_results(
    adapter: AttackAdapter, units: list[tuple[torch.Tensor, UnitState]], shifts: list[str], seed: int
) -> list[dict[str, Any]]:
    """The metrics of every batch under each shift and severity (dense targets moved with the image)."""
    from medsight.robustness.shifts import SEVERITIES, apply_shift, move_target, parameter

    rows = []
    for name in shifts:
        for severity in SEVERITIES:
            generator = torch.Generator().manual_seed(seed)
            shifted = []
            for batch, (u, state) in zip(adapter.batches, units, strict=True):
                x = adapter.space.from_unit(apply_shift(name, u, severity, generator), state)
                y = move_target(name, batch.y, tuple(u.shape[2:]), severity)
                shifted.append(Batch(x=x, y=y, case_ids=batch.case_ids))
            metrics = adapter.score(_predict(adapter, [b.x for b in shifted]), shifted)
            rows.append(
                {
                    "shift": name,
                    "severity": severity,
                    "parameter": parameter(name, severity),
                    "metrics": metrics,
                }
            )
            log.info("shift %s severity %d: %s %.4f", name, severity, adapter.metric, metrics[adapter.metric])
    return rows


RADII = (0.0, 0.25, 0.5, 1.0)  # L2, in unit-space units


def _certify(adapter: AttackAdapter, sigma: float, n: int, seed: int) -> dict[str, Any]:
    """Randomised smoothing (Cohen et al. 2019) of a single-label classifier: certified accuracy by radius."""
    from medsight.robustness.smoothing import SmoothedClassifier, certified_accuracy

    labels, radii, truth = [], [], []
    for batch in adapter.batches:
        u, state = adapter.space.to_unit(batch.x)
        smooth = SmoothedClassifier.from_model(  # each case normalised with its own state
            adapter.forward, adapter.space, state, len(adapter.class_names), sigma, seed=seed
        )
        got, r = smooth.certify(u, n0=100, n=n, alpha=0.001, batch=min(n, 500))
        labels.append(got)
        radii.append(r)
        truth.append(batch.y.numpy())
    labels_all, radii_all, y = np.concatenate(labels), np.concatenate(radii), np.concatenate(truth)
    accuracy = certified_accuracy(labels_all, radii_all, y, RADII)
    return {
        "sigma": sigma,
        "n": n,
        "alpha": 0.001,
        "certified_accuracy": {str(r): float(a) for r, a in zip(RADII, accuracy, strict=True)},
        "abstained": float(np.mean(labels_all == -1)),
        "median_radius_of_correct": float(np.median(radii_all[labels_all == y]))
        if (labels_all == y).any()
        else 0.0,
    }


class _DetectorFit:
    """Detectors fitted on the validation split's clean inputs, scoring clean vs adversarial inputs
    (``medsight.robustness.detectors.evaluate_detectors``: Mahalanobis, LID, feature squeezing)."""

    def __init__(self, adapter: AttackAdapter, fit_batches: list[Batch], seed: int) -> None:
        self.adapter, self.seed = adapter, seed
        self.x_fit, self.fit_state = adapter.space.to_unit(torch.cat([b.x for b in fit_batches]))
        self.y_fit = torch.cat([b.y for b in fit_batches])

    def auroc(self, units: list[tuple[torch.Tensor, UnitState]], adversarial: list[torch.Tensor]) -> dict:
        from medsight.robustness.detectors import evaluate_detectors

        space, model = self.adapter.space, self.adapter.model
        x_clean, state = torch.cat([u for u, _ in units]), concat_states([s for _, s in units])
        with torch.no_grad():
            return evaluate_detectors(
                space.forward_fn(model, state),
                model,
                self.x_fit,
                self.y_fit,
                x_clean,
                torch.cat(adversarial),
                fit_forward=space.forward_fn(model, self.fit_state),
                seed=self.seed,
            )


def _fit_batches(run: Run) -> list[Batch] | None:
    """Clean cases disjoint from the attacked ones, to fit detectors and universal perturbations on: the
    run's validation split (None, with a warning, when it has none)."""
    try:
        return attack_adapter(run, "val").batches
    except MedsightError as exc:  # no validation split: report without detectors
        log.warning("no validation cases to fit detectors and universal perturbations on: %s", exc)
        return None


def _held_out_universal(adapter: AttackAdapter, fit_batches: list[Batch] | None) -> Any:
    """The universal attack with its perturbation fitted on the validation cases, applied to the attacked
    ones (the registry's "universal" fits on the very batch it attacks, which overstates it)."""
    from medsight.robustness.attacks.universal import apply_universal, fit_universal

    if fit_batches is None or not adapter.space.stateless:
        raise ConfigError(
            "attack 'universal': needs a validation split and an input normalisation without per-image "
            "state (rgb, ct or unmasked zscore)"
        )
    u_fit, state = adapter.space.to_unit(torch.cat([b.x for b in fit_batches]))
    y_fit = torch.cat([b.y for b in fit_batches])
    fitted: dict[float, torch.Tensor] = {}

    def attack(forward: Any, loss_fn: Any, x: torch.Tensor, y: torch.Tensor, *, eps: float, **options: Any):
        if eps not in fitted:
            fit_forward = adapter.space.forward_fn(adapter.forward, state)
            generator = options.get("generator")
            fitted[eps] = fit_universal(fit_forward, loss_fn, u_fit, y_fit, eps=eps, generator=generator)
        return apply_universal(x, fitted[eps])

    return attack


# ---------------------------------------------------------------------------------------- outputs
def _examples(
    adapter: AttackAdapter,
    units: list[tuple[torch.Tensor, UnitState]],
    adversarial: list[torch.Tensor],
    clean_outputs: list[torch.Tensor],
    adv_outputs: list[torch.Tensor],
) -> list[dict[str, Any]]:
    """The first N_EXAMPLES cases: clean and adversarial unit images with the model's answers."""
    rows: list[dict[str, Any]] = []
    for batch, (u, _), u_adv, clean, adv in zip(
        adapter.batches, units, adversarial, clean_outputs, adv_outputs, strict=True
    ):
        for j in range(min(len(batch.case_ids), N_EXAMPLES - len(rows))):
            y = batch.y[j : j + 1]
            rows.append(
                {
                    "case": batch.case_ids[j],
                    "clean": u[j].numpy(),
                    "adversarial": u_adv[j].numpy(),
                    "clean_text": adapter.describe(clean[j : j + 1], y),
                    "adv_text": adapter.describe(adv[j : j + 1], y),
                }
            )
        if len(rows) == N_EXAMPLES:
            break
    return rows


def _write_examples(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    from medsight.report.robustness import perturbation_png
    from medsight.utils import atomic_write

    png = perturbation_png(rows, title)
    atomic_write(path, lambda tmp: tmp.write_bytes(png))


def _write(report: dict[str, Any], out_dir: Path) -> None:
    from medsight.report import build_report
    from medsight.report.robustness import metric_vs_eps_png, metric_vs_shift_png
    from medsight.utils import atomic_write

    atomic_write_text(out_dir / "robustness.json", json.dumps(json_safe(report), indent=2))
    plots = {"metric_vs_eps.png": metric_vs_eps_png, "metric_vs_shift.png": metric_vs_shift_png}
    for name, draw in plots.items():
        if (png := draw(report)) is not None:
            atomic_write(out_dir / name, lambda tmp, data=png: tmp.write_bytes(data))
    build_report(out_dir, title=f"Robustness · {report['run']} · {report['split']}")


def parse_list(text: str | None, default: tuple[str, ...]) -> list[str]:
    """``"pgd,fgsm"`` -> ["pgd", "fgsm"]; None -> the default; ``"none"`` -> []."""
    if text is None:
        return list(default)
    if text.strip() == "none":
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"expected a comma-separated list, got {text!r}")
    return items
