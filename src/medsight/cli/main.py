"""The ``medsight`` command: a thin layer over the Python API, one function per verb.

Errors that medsight raises on purpose print one line and exit with code 2; ``--debug`` shows the
traceback. Heavy imports happen inside the commands so ``medsight --help`` is instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="medsight: deep learning for medical image analysis.",
)
_STATE = {"debug": False}

SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config field: train.epochs=50")
]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
) -> None:
    from medsight.logs import configure_logging

    _STATE["debug"] = debug
    configure_logging(debug=debug, verbose=verbose)


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


TaskOption = Annotated[str | None, typer.Option(help="Task family (medsight list tasks).")]


@app.command()
def fingerprint(
    dataset: Annotated[str, typer.Argument(help="A dataset folder, file or name (medsight list datasets)")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the whole fingerprint as JSON.")] = False,
    task: TaskOption = None,
) -> None:
    """What is in the data: shapes, spacings, intensities, classes, and every problem found."""
    from medsight.config import load_config
    from medsight.task_registry import get_task

    cfg = load_config(None, task=task, data={"dataset": dataset})
    family = get_task(cfg.task)
    fp = family.fingerprint(family.load(dataset, cfg), cfg)
    typer.echo(fp.to_json() if json_out else "\n".join(fp.summary_lines()))


@app.command()
def plan(
    dataset: Annotated[str, typer.Argument(help="A dataset folder, file or name")],
    task: TaskOption = None,
    config: Annotated[Path | None, typer.Option(help="YAML config.")] = None,
    set_: SetOption = None,
    no_measure: Annotated[bool, typer.Option("--no-measure", help="Do not time candidate networks.")] = False,
) -> None:
    """The plan training would use, and why."""
    from medsight.api import prepare
    from medsight.config import load_config

    cfg = load_config(config, set_, task=task, data={"dataset": dataset})
    _, chosen = prepare(dataset, cfg, measure=not no_measure)
    _echo_json(chosen.model_dump(mode="json"))


@app.command()
def train(
    task: Annotated[str, typer.Argument(help="Task family (medsight list tasks).")],
    dataset: Annotated[str | None, typer.Argument(help="A dataset folder, file or name")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config.")] = None,
    set_: SetOption = None,
    fold: Annotated[str | None, typer.Option(help="Validation fold (0..k-1) or 'all'.")] = None,
    out: Annotated[Path | None, typer.Option(help="Parent folder of run folders.")] = None,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Repeatable run.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue a killed run in its folder.")] = None,
) -> None:
    """Train a model; writes one run folder (checkpoints, metrics, eval, report.html)."""
    from medsight import api

    if resume is not None:
        typer.echo(f"report: {api.resume(resume) / 'report.html'}")
        return
    if dataset is None:
        raise typer.BadParameter("DATASET is required (or --resume RUN)")
    overrides = list(set_ or [])
    if fold is not None:
        overrides.append(f"data.fold={fold}")
    if deterministic:
        overrides.append("train.deterministic=true")
    run = api.train(dataset, task=task, config=config, overrides=overrides, out=out)
    typer.echo(f"run: {run}")
    typer.echo(f"report: {run / 'report.html'}")


@app.command()
def predict(
    input: Annotated[Path, typer.Option(help="An image, a DICOM series folder, or a folder of images.")],
    output: Annotated[Path, typer.Option(help="Output folder (or file, for one input).")],
    tta: Annotated[bool | None, typer.Option("--tta/--no-tta", help="Flip test-time augmentation.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Predict again cases whose output exists (default: skip).")
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(help="Predict shard I/N of the cases (default: torchrun's RANK/WORLD_SIZE, else all)."),
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run",
            "--run-dir",
            help="A run folder written by `medsight train` (--run-dir: the same, for use under torchrun).",
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="An export folder from `medsight export` (ONNX Runtime, no torch).")
    ] = None,
    dicom: Annotated[
        bool | None,
        typer.Option(
            "--dicom/--no-dicom",
            help="DICOM results (SEG, SR) for DICOM inputs. "
            "Default: written when possible; --dicom makes them required.",
        ),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            "--fixed",
            help="An image the task needs beside each input (registration: the fixed image; "
            "default the run's atlas).",
        ),
    ] = None,
) -> None:
    """Predict with a trained run (--run) or an exported model (--model): what the run's task writes
    (label maps in the input's geometry, a CSV of class probabilities ...). DICOM inputs also get DICOM
    results (SEG, SR) where the task makes them.

    Reruns resume: finished outputs are skipped. Shard with --shard I/N or under torchrun."""
    from medsight import api

    for path in api.predict(
        run,
        input,
        output,
        model=model,
        tta=tta,
        overwrite=overwrite,
        shard=shard,
        dicom=dicom,
        reference=reference,
    ):
        typer.echo(str(path))


@app.command()
def pacs(
    url: Annotated[str, typer.Option(help="DICOMweb root, e.g. http://host:8042/dicom-web")],
    study: Annotated[str, typer.Option(help="StudyInstanceUID of the study to segment.")],
    run: Annotated[Path, typer.Option(help="A segmentation run folder.")],
    series: Annotated[str | None, typer.Option(help="SeriesInstanceUID (default: largest CT/MR).")] = None,
    user: Annotated[str | None, typer.Option(help="HTTP basic-auth user.")] = None,
    password: Annotated[str | None, typer.Option(help="HTTP basic-auth password.")] = None,
    token: Annotated[str | None, typer.Option(help="Bearer token (instead of user/password).")] = None,
    output: Annotated[Path | None, typer.Option(help="Also keep the SEG and NIfTI in this folder.")] = None,
) -> None:
    """Segment a study on a PACS: QIDO-RS search, WADO-RS retrieve, predict, STOW-RS the DICOM SEG."""
    from medsight.deploy.pacs import pacs_predict

    if (user is None) != (password is None):
        raise typer.BadParameter("--user and --password go together")
    auth = (user, password) if user is not None and password is not None else None
    result = pacs_predict(url, study, run, series_uid=series, auth=auth, token=token, output=output)
    _echo_json(result.to_dict())


@app.command()
def export(
    run: Annotated[Path, typer.Option(help="A run folder written by `medsight train`.")],
    format: Annotated[str, typer.Option(help="onnx or torchscript.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Export folder (default: RUN/export-FORMAT).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing non-empty --out.")] = False,
) -> None:
    """Export a run's network (ONNX or TorchScript) with its pre/post-processing spec (deploy.json)."""
    from medsight import api

    typer.echo(str(api.export(run, format, out, force=force)))


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option(help="A run folder.")],
    split: Annotated[str, typer.Option(help="val (the run's fold), test or train.")] = "val",
    input: Annotated[Path | None, typer.Option(help="Images to predict and score.")] = None,
    reference: Annotated[
        Path | None, typer.Option(help="Reference label files, named like the images.")
    ] = None,
) -> None:
    """Score a run (per-case CSV + summary with 95% CIs in eval/<split>/) and refresh its report."""
    from medsight import api

    summary = api.evaluate(run, split=split, input=input, reference=reference)
    _echo_json(summary.get("mean") or summary.get("all") or summary)


@app.command()
def convert(
    source: Annotated[str, typer.Argument(help="Any supported dataset layout or name.")],
    to_msd: Annotated[Path, typer.Option("--to-msd", help="Destination MSD / nnU-Net v2 folder (new).")],
) -> None:
    """Convert a dataset to an MSD / nnU-Net v2 folder."""
    from medsight.data import convert_to_msd

    typer.echo(str(convert_to_msd(source, to_msd)))


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help="models, tasks or datasets")]) -> None:
    """List the registered models, tasks or datasets."""
    if what == "models":
        from medsight.models import model_info, model_names

        for name in model_names():
            info = model_info(name)
            dims = "/".join(f"{d}D" for d in info.dims)
            typer.echo(f"{name:18s} {info.family:15s} {dims:6s} -> {info.output}")
        return
    if what == "tasks":
        from medsight.task_registry import task_names

        names = task_names()
    elif what == "datasets":
        from medsight.data import DATASETS

        for name in DATASETS.names():
            adapter = DATASETS.get(name)
            typer.echo(f"{name:20s} {adapter.targets:10s} {adapter.description}")
        return
    else:
        raise typer.BadParameter(f"expected models, tasks or datasets, got {what!r}")
    for name in names:
        typer.echo(name)


@app.command()
def explain(
    run: Annotated[Path, typer.Option(help="A run folder whose task explains its answers (classify).")],
    input: Annotated[Path, typer.Option(help="An image, a folder of images or a CSV manifest.")],
    output: Annotated[Path, typer.Option(help="Folder for the explanation PNGs.")] = Path("explanations"),
    method: Annotated[str, typer.Option(help="gradcam or occlusion.")] = "gradcam",
    target: Annotated[str | None, typer.Option(help="Class to explain (default: the predicted one).")] = None,
) -> None:
    """Grad-CAM or occlusion-sensitivity maps of a model's decision, one PNG per input."""
    from medsight import api

    for path in api.explain(run, input, output, method=method, target=target):
        typer.echo(str(path))


@app.command()
def attack(
    run: Annotated[Path, typer.Option(help="A run folder.")],
    input: Annotated[Path, typer.Option(help="An image or a folder of images.")],
    output: Annotated[Path, typer.Option(help="Folder for the adversarial images and attack.csv.")],
    attack: Annotated[str, typer.Option(help="fgsm, bim, pgd, pgd-l2, cw-l2, deepfool, square ...")] = "pgd",
    eps: Annotated[str, typer.Option(help="Budget: 2/255 of the intensity range, or 10HU for CT.")] = "2/255",
    steps: Annotated[int, typer.Option(help="Iterations of iterative attacks.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of random starts.")] = 0,
) -> None:
    """Write adversarial copies of images (same names and formats) and attack.csv (answers before/after)."""
    from medsight.robustness.files import attack_path

    for path in attack_path(run, input, output, attack=attack, eps=eps, steps=steps, seed=seed):
        typer.echo(str(path))


@app.command()
def robustness(
    run: Annotated[Path, typer.Option(help="A run folder.")],
    attack: Annotated[
        str | None, typer.Option(help="Comma-separated attacks (default fgsm,pgd; none for no attack).")
    ] = None,
    eps: Annotated[
        str | None, typer.Option(help="Comma-separated budgets (default 1/255,2/255,4/255,8/255).")
    ] = None,
    split: Annotated[str, typer.Option(help="test, val or train.")] = "test",
    steps: Annotated[int, typer.Option(help="Iterations of iterative attacks (PGD-20).")] = 20,
    max_cases: Annotated[int | None, typer.Option(help="Attack only the first N cases.")] = None,
    detectors: Annotated[bool, typer.Option(help="Fit detectors and report their AUROC.")] = True,
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/robustness).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of random starts.")] = 0,
    defence: Annotated[
        str | None, typer.Option(help="Evaluate through input defences: median:kernel=3,bit-depth:bits=5.")
    ] = None,
    smoothing: Annotated[
        str | None, typer.Option(help="Certify randomised smoothing with this noise sigma (e.g. 64/255).")
    ] = None,
    smoothing_n: Annotated[int, typer.Option(help="Noisy copies per case for smoothing.")] = 1000,
    shifts: Annotated[
        str | None,
        typer.Option(help="Natural shifts at 3 severities: all, or scale,gamma,colour,blur,noise,..."),
    ] = None,
) -> None:
    """Clean and attacked metrics per attack and epsilon, detector AUROC, and with --shifts the metric
    under natural shifts per severity: robustness.json + report.html."""
    from medsight.robustness.evaluate import DEFAULT_ATTACKS, DEFAULT_EPS, evaluate_robustness, parse_list
    from medsight.robustness.shifts import parse_shifts

    report = evaluate_robustness(
        run,
        attacks=parse_list(attack, DEFAULT_ATTACKS),
        eps=parse_list(eps, DEFAULT_EPS),
        split=split,
        steps=steps,
        max_cases=max_cases,
        detectors=detectors,
        out=out,
        seed=seed,
        defences=parse_list(defence, ()) if defence else None,
        smoothing_sigma=smoothing,
        smoothing_n=smoothing_n,
        shifts=parse_shifts(shifts) if shifts else None,
    )
    metric = report["metric"]
    typer.echo(f"clean {metric}: {report['clean'][metric]:.4f}")
    for r in report["results"]:
        det = ", ".join(f"{k} {v:.3f}" for k, v in (r.get("detectors") or {}).items())
        typer.echo(f"{r['attack']:>10s} eps {r['eps']:>7s}: {metric} {r['metrics'][metric]:.4f}  {det}")
    for r in report.get("shifts", []):
        typer.echo(f"{r['shift']:>10s} severity {r['severity']}: {metric} {r['metrics'][metric]:.4f}")
    if "smoothing" in report:
        cert = ", ".join(f"r={k}: {v:.3f}" for k, v in report["smoothing"]["certified_accuracy"].items())
        typer.echo(f"smoothing sigma {report['smoothing']['sigma']:.4f}: certified accuracy {cert}")


@app.command()
def serve(
    run: Annotated[Path, typer.Option(help="A run folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MEDSIGHT_API_TOKEN", help="Bearer token clients must send ($MEDSIGHT_API_TOKEN)."
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without a token (trusted networks).")
    ] = False,
    max_upload_mb: Annotated[float, typer.Option(help="Refuse larger uploads (413).")] = 256,
    timeout: Annotated[
        float, typer.Option(help="Seconds a request may wait and run (503/504 beyond).")
    ] = 120,
    workers: Annotated[int, typer.Option(help="Inference threads; other requests queue.")] = 1,
) -> None:
    """REST service: POST /predict an image (the task's answer as JSON), GET /health, a web page at /."""
    from medsight.deploy.service import create_app
    from medsight.deploy.service import serve as serve_app

    api_app = create_app(
        run,
        token,
        auth=not no_auth,
        max_upload_bytes=int(max_upload_mb * 1024**2),
        timeout_s=timeout,
        workers=workers,
    )
    typer.echo(f"serving {run.name} on http://{host}:{port}/ (API docs at /docs)")
    serve_app(api_app, host, port)


datasets_app = typer.Typer(no_args_is_help=True, help="Fetch public datasets.")
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("fetch")
def datasets_fetch(
    collection: Annotated[str, typer.Argument(help="medmnist")],
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. pneumoniamnist.")],
    size: Annotated[int, typer.Option(help="Image size: 28, 64, 128 or 224 (3D: 28 or 64).")] = 28,
    root: Annotated[
        Path, typer.Option(help="Folder to keep the file in (a file already there is reused).")
    ] = Path("data/medmnist"),
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the MD5 check.")] = False,
    timeout: Annotated[float, typer.Option(help="Network timeout, seconds.")] = 60,
) -> None:
    """Download a dataset file from its official source and check its checksum."""
    if collection != "medmnist":
        raise typer.BadParameter(f"unknown collection {collection!r}; known: medmnist")
    from medsight.data.medmnist import fetch_medmnist

    typer.echo(str(fetch_medmnist(name, size, root=root, verify=not no_verify, timeout=timeout)))


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Parent folder of the run.")] = Path("runs"),
    time_budget: Annotated[str, typer.Option(help="Training wall-clock budget.")] = "3m",
) -> None:
    """Train a segmenter on a built-in phantom (no download) and write its report."""
    from medsight.cli.demo import run_demo

    report = run_demo(out, time_budget)
    typer.echo(f"report: {report}")


def add_family_commands(cli: typer.Typer) -> None:
    """The verbs a family adds beside the shared ones (``medsight degrade`` ...): each family package in
    ``tasks.FAMILIES`` with a ``commands.py`` module has its ``register_commands(app)`` called. Only the
    package folders are looked at here; a family is imported when it has such a module."""
    import importlib
    import importlib.util

    from medsight.tasks import FAMILIES

    for package in FAMILIES:
        spec = importlib.util.find_spec(package)
        folders = spec.submodule_search_locations if spec is not None else None
        if folders and any((Path(folder) / "commands.py").is_file() for folder in folders):
            importlib.import_module(f"{package}.commands").register_commands(cli)


add_family_commands(app)


def main() -> None:
    """Entry point with the one-line error contract."""
    from medsight.errors import MedsightError

    try:
        app()
    except MedsightError as exc:
        if _STATE["debug"]:
            raise
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
