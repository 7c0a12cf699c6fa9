"""Exported inference: ONNX Runtime against PyTorch on the CPU, same model, same input, same threads.

Three cases, each model with random (seeded) weights, since only time is measured here (a test
checks that both give the same outputs on trained models and real images):

(a) 2D segmentation: a DynUNet on a 512x512 RGB image, sliding window (patch 256, overlap 0.5,
    Gaussian blending, softmax): medsight's PyTorch ``sliding_window_predict`` against the ONNX
    runtime's numpy ``sliding_window`` with the exported network;
(b) 2D classification: a ResNet-18 on a batch of 16 images of 128x128, one forward pass;
(c) 3D segmentation: a 3D DynUNet on a 128^3 volume, sliding window (patch 64^3, overlap 0.5).

PyTorch and ONNX Runtime use the same thread count (``--threads``, default: all cores); the runs
alternate (ABBA) in one process and the ratio of the fastest repeats is the headline, with medians
and the max abs difference of the outputs.

Run:  .venv/bin/python benchmarks/deploy.py          (under 3 minutes on 2 cores)
      .venv/bin/python benchmarks/deploy.py --quick  (a smoke run on tiny sizes)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.utils import atomic_write_text, cpu_count

RESULTS = Path(__file__).resolve().parent / "results" / "deploy.json"


def cases(quick: bool) -> list[dict[str, Any]]:
    """What is timed: name, network, input shape, patch (None: one forward pass of the batch)."""
    if quick:
        return [
            dict(name="2D DynUNet, sliding window", net="dynunet", dim=2, channels=3, out=2,
                 shape=[1, 3, 96, 96], patch=[64, 64], kwargs={"base_filters": 8, "max_depth": 3}),
            dict(name="2D ResNet-18, batch", net="resnet18", dim=2, channels=1, out=2,
                 shape=[4, 1, 32, 32], patch=None, kwargs={"small_input": True, "widen_factor": 0.25}),
            dict(name="3D DynUNet, sliding window", net="dynunet", dim=3, channels=1, out=3,
                 shape=[1, 1, 40, 40, 40], patch=[32, 32, 32], kwargs={"base_filters": 4, "max_depth": 3}),
        ]  # fmt: skip
    return [
        dict(name="2D DynUNet, sliding window", net="dynunet", dim=2, channels=3, out=2,
             shape=[1, 3, 512, 512], patch=[256, 256], kwargs={"base_filters": 8, "max_depth": 4}),
        dict(name="2D ResNet-18, batch", net="resnet18", dim=2, channels=1, out=2,
             shape=[16, 1, 128, 128], patch=None, kwargs={}),
        dict(name="3D DynUNet, sliding window", net="dynunet", dim=3, channels=1, out=3,
             shape=[1, 1, 128, 128, 128], patch=[64, 64, 64], kwargs={"base_filters": 4, "max_depth": 4}),
    ]  # fmt: skip


def build(case: dict[str, Any]) -> torch.nn.Module:
    from medsight.models import build_model

    torch.manual_seed(0)
    size = case["patch"] or case["shape"][2:]
    net = build_model(
        case["net"],
        spatial_dims=case["dim"],
        in_channels=case["channels"],
        out_channels=case["out"],
        patch_size=size,
        **case["kwargs"],
    )
    return net.eval()


def runners(case: dict[str, Any], folder: Path, threads: int) -> tuple[Callable, Callable, np.ndarray]:
    """(PyTorch call, ONNX Runtime call, input) for one case; the network exported to ONNX first."""
    from medsight.deploy.export import export_onnx
    from medsight.deploy.runtime import load_network, sliding_window
    from medsight.engine.inference import sliding_window_predict

    net = build(case)
    size = case["patch"] or case["shape"][2:]
    example = torch.randn((1, case["channels"], *size), generator=torch.Generator().manual_seed(1))
    path = folder / f"{case['net']}{case['dim']}d.onnx"
    export_onnx(net, example, path, opset=17)
    session = load_network(path, "onnx", threads)
    x = np.random.default_rng(0).normal(size=case["shape"]).astype(np.float32)
    if case["patch"] is None:

        def run_torch() -> np.ndarray:
            with torch.inference_mode():
                return torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()

        def run_onnx() -> np.ndarray:
            logits = session(x)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

        return run_torch, run_onnx, x
    window = {"patch_size": case["patch"], "overlap": 0.5, "batch_size": 1}

    def run_torch_sw() -> np.ndarray:
        return sliding_window_predict(net, torch.from_numpy(x[0]), activation="softmax", **window).numpy()

    def run_onnx_sw() -> np.ndarray:
        return sliding_window(session, x[0], activation="softmax", **window)

    return run_torch_sw, run_onnx_sw, x


def time_case(case: dict[str, Any], folder: Path, threads: int, repeats: int) -> dict[str, Any]:
    run_torch, run_onnx, x = runners(case, folder, threads)
    a, b = run_torch(), run_onnx()  # warm-up, and the outputs compared
    times: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    order = [("pytorch", run_torch), ("onnxruntime", run_onnx)]
    for r in range(repeats):
        for who, fn in order if r % 2 == 0 else order[::-1]:  # ABBA
            t0 = time.perf_counter()
            fn()
            times[who].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    return {
        "case": case["name"],
        "network": f"{case['net']} {case['kwargs']}",
        "input": case["shape"],
        "patch": case["patch"],
        "min_s": best,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "speedup_onnx": best["pytorch"] / best["onnxruntime"],
        "max_abs_diff": float(np.abs(a - b).max()),
    }


def print_table(res: dict[str, Any]) -> None:
    print(
        f"\nONNX Runtime vs PyTorch, CPU, {res['config']['threads']} thread(s), "
        f"min of {res['config']['repeats']} repeats"
    )
    print(f"  {'case':<28} {'input':<20} {'PyTorch s':>10} {'ORT s':>8} {'speed-up':>9} {'max|diff|':>10}")
    for r in res["results"]:
        shape = "x".join(str(s) for s in r["input"])
        print(
            f"  {r['case']:<28} {shape:<20} {r['min_s']['pytorch']:10.3f} {r['min_s']['onnxruntime']:8.3f} "
            f"{r['speedup_onnx']:8.2f}x {r['max_abs_diff']:10.2e}"
        )


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a benchmark")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=cpu_count(), help="for both PyTorch and ONNX Runtime")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:  # never overwrites the real results
        args.repeats = 1
        if args.output == RESULTS:
            args.output = Path(tempfile.gettempdir()) / "medsight-deploy-quick.json"
    return args


def main() -> None:
    import onnxruntime

    args = parse()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        results = [time_case(c, Path(tmp), args.threads, args.repeats) for c in cases(args.quick)]
    res = {
        "benchmark": "deploy",
        "config": {
            "threads": args.threads,
            "repeats": args.repeats,
            "quick": args.quick,
            "weights": "random (seeded): timing only",
            "sliding_window": "overlap 0.5, gaussian, batch 1, softmax",
            "opset": 17,
        },
        "results": results,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "cpu_count": cpu_count(),
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    res["wall_s"] = time.perf_counter() - t0
    print_table(res)
    atomic_write_text(args.output, json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {args.output} in {res['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
