"""Sliding-window inference: medsight's low-memory version against MONAI's plain call.

(a) speed: one 3D volume (the BraTS TCGA-DU-7294 FLAIR, 240x240x155, when ../shared/data has it,
    else a synthetic volume of that size), same patch, overlap 0.5, Gaussian blending, for a
    1x1-conv "network" (isolates the blending overhead) and a small DynUNet with random weights
    (timing only); the two calls alternate (ABBA) in one process. The ratio of the fastest repeats
    is the headline (the CPU is shared), with medians and the max abs difference of probabilities.
(b) memory: peak RSS (VmHWM) of a fresh subprocess predicting a synthetic 512x512x400 CT-sized
    volume to labels, for each method, plus a subprocess that only allocates the input.

Run:  .venv/bin/python benchmarks/inference.py          (about 6-8 minutes on 2 cores)
      .venv/bin/python benchmarks/inference.py --quick  (a smoke run on small sizes)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from medsight.utils import atomic_write_text, cpu_count, shared_data_root

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
BRATS_FLAIR = ("brats-tcga", "TCGA-DU-7294", "TCGA-DU-7294_fla.nii.gz")
MONAI_LIMIT_GB = 12.0


def build_net(patch: list[int], base_filters: int, out_channels: int) -> torch.nn.Module:
    """A small DynUNet with random weights (seeded): timing and memory only, never accuracy."""
    from medsight.models import build_model

    torch.manual_seed(0)
    net = build_model(
        "dynunet",
        spatial_dims=3,
        in_channels=1,
        out_channels=out_channels,
        patch_size=patch,
        base_filters=base_filters,
        max_depth=4,
    )
    return net.eval()


def load_volume(shape: tuple[int, int, int], synthetic: bool) -> tuple[torch.Tensor, str]:
    """The BraTS FLAIR (z-scored) when present, else a seeded synthetic volume of ``shape``."""
    root = None if synthetic else shared_data_root()
    path = root.joinpath(*BRATS_FLAIR) if root else None
    if path is not None and path.is_file():
        import nibabel as nib

        arr = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        arr = (arr - arr.mean()) / (arr.std() + 1e-6)
        return torch.from_numpy(arr)[None], "/".join(BRATS_FLAIR)
    gen = torch.Generator().manual_seed(0)
    why = "asked for" if synthetic else "BraTS FLAIR not found"
    return torch.randn((1, *shape), generator=gen), f"synthetic {list(shape)} ({why})"


def run_ours(net: torch.nn.Module, x: torch.Tensor, patch: list[int], overlap: float, output: str):
    from medsight.engine.inference import sliding_window_predict

    return sliding_window_predict(
        net, x, patch_size=patch, overlap=overlap, mode="gaussian", activation="softmax", output=output
    )


def run_monai(net: torch.nn.Module, x: torch.Tensor, patch: list[int], overlap: float, output: str):
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        logits = sliding_window_inference(x[None], patch, 1, net, overlap=overlap, mode="gaussian")[0]
        return logits.argmax(0, keepdim=True) if output == "labels" else torch.softmax(logits, 0)


class TimedNet(torch.nn.Module):
    """Wraps a network and adds up the seconds spent inside it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.seconds = net, 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.net(x)
        self.seconds += time.perf_counter() - t0
        return out


def time_pair(net: torch.nn.Module, x: torch.Tensor, patch: list[int], repeats: int) -> dict:
    """Alternate ours and MONAI's (ABBA order): total times, time outside the network, agreement.

    On a shared CPU the network time varies from call to call; the time outside the network
    (windowing, blending, normalising, activation) is the part the two methods differ in.
    """
    timed = TimedNet(net).eval()
    times: dict[str, list[float]] = {"medsight": [], "monai": []}
    outside: dict[str, list[float]] = {"medsight": [], "monai": []}
    outs = {}
    pair = [("medsight", run_ours), ("monai", run_monai)]
    for r in range(repeats):
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            timed.seconds = 0.0
            t0 = time.perf_counter()
            outs[name] = fn(timed, x, patch, 0.5, "probabilities")
            times[name].append(time.perf_counter() - t0)
            outside[name].append(times[name][-1] - timed.seconds)
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    med_out = {k: statistics.median(v) for k, v in outside.items()}
    agree = outs["medsight"].argmax(0) == outs["monai"].argmax(0)
    return {
        "times_s": times,
        "outside_network_s": outside,
        "min_s": best,
        "median_s": med,
        "median_outside_network_s": med_out,
        "ratio_min_medsight_over_monai": best["medsight"] / best["monai"],
        "ratio_median_medsight_over_monai": med["medsight"] / med["monai"],
        "max_abs_diff_probabilities": float((outs["medsight"] - outs["monai"]).abs().max()),
        "labels_agree_fraction": float(agree.double().mean()),
    }


def speed(args: argparse.Namespace) -> dict:
    """Time both methods on one volume: a 1x1-conv "network" isolates the blending overhead,
    then the small DynUNet gives the end-to-end ratio. An untimed round warms the allocator."""
    x, source = load_volume(tuple(args.speed_shape), args.synthetic)
    torch.manual_seed(0)
    pointwise = torch.nn.Conv3d(1, args.classes, 1).eval()
    run_ours(pointwise, x, args.patch, 0.5, "probabilities")
    run_monai(pointwise, x, args.patch, 0.5, "probabilities")
    net = build_net(args.patch, args.base_filters, args.classes)
    return {
        "volume": source,
        "shape": list(x.shape[1:]),
        "overlap": 0.5,
        "overhead_1x1_conv": time_pair(pointwise, x, args.patch, max(5, args.repeats)),
        "dynunet": time_pair(net, x, args.patch, args.repeats),
    }


def vm_hwm_gb() -> float:
    """Peak resident memory of this process (VmHWM), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh subprocess: one prediction to labels, then prints peak RSS as JSON."""
    torch.set_num_threads(cpu_count())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, *args.memory_shape), generator=gen)
    t0 = time.perf_counter()
    if args.memory_child != "input-only":
        net = build_net(args.patch, args.base_filters, args.classes)
        fn = run_ours if args.memory_child == "medsight" else run_monai
        labels = fn(net, x, args.patch, args.memory_overlap, "labels")
        assert labels.shape[1:] == x.shape[1:]
    print(json.dumps({"peak_rss_gb": vm_hwm_gb(), "seconds": time.perf_counter() - t0}))


def monai_estimate_gb(shape: list[int], classes: int) -> float:
    """MONAI keeps the input, a float32 output for every class, a count map, then int64 labels."""
    n = float(np.prod(shape))
    return n * (4 + 4 * classes + 4 + 8) / 1e9


def memory(args: argparse.Namespace) -> dict:
    """Peak RSS of each method, each in its own fresh subprocess."""
    result: dict = {"shape": args.memory_shape, "overlap": args.memory_overlap, "output": "labels"}
    est = monai_estimate_gb(args.memory_shape, args.classes)
    result["monai_estimated_gb"] = est
    for who in ("input-only", "medsight", "monai"):
        if who == "monai" and est > MONAI_LIMIT_GB:
            result[who] = {"skipped": f"estimated {est:.1f} GB > {MONAI_LIMIT_GB} GB"}
            continue
        cmd = [sys.executable, __file__, "--memory-child", who, *child_args(args)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result[who] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def child_args(args: argparse.Namespace) -> list[str]:
    return [
        "--patch", *map(str, args.patch), "--base-filters", str(args.base_filters),
        "--classes", str(args.classes), "--memory-shape", *map(str, args.memory_shape),
        "--memory-overlap", str(args.memory_overlap),
    ]  # fmt: skip


def print_table(res: dict) -> None:
    s, m = res["speed"], res["memory"]
    print(f"\nSpeed: {s['volume']} {s['shape']}, overlap 0.5, gaussian, patch {res['config']['patch']}")
    print("  min total s over repeats (ratio), and median s spent outside the network")
    head = ("medsight", "monai", "ratio", "out:ours", "monai", "max |dp|")
    print(f"  {'network':<20} " + " ".join(f"{h:>9}" for h in head))
    for label, key in (("1x1 conv (overhead)", "overhead_1x1_conv"), ("small DynUNet", "dynunet")):
        r = s[key]
        mo = r["median_outside_network_s"]
        print(
            f"  {label:<20} {r['min_s']['medsight']:9.2f} {r['min_s']['monai']:9.2f} "
            f"{r['ratio_min_medsight_over_monai']:9.3f} {mo['medsight']:9.2f} {mo['monai']:9.2f} "
            f"{r['max_abs_diff_probabilities']:9.1e}"
        )
    print(f"\nMemory: synthetic {m['shape']} -> labels, overlap {m['overlap']} (fresh process each)")
    print(f"  {'run':<11} {'peak RSS GB':>11} {'s':>8}")
    for who in ("input-only", "medsight", "monai"):
        r = m[who]
        if "skipped" in r:
            print(f"  {who:<11} skipped: {r['skipped']}")
        else:
            print(f"  {who:<11} {r['peak_rss_gb']:11.2f} {r['seconds']:8.1f}")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a benchmark")
    p.add_argument("--synthetic", action="store_true", help="use a synthetic volume even if BraTS is present")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--patch", type=int, nargs=3, default=[128, 128, 128])
    p.add_argument("--base-filters", type=int, default=4)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--speed-shape", type=int, nargs=3, default=[240, 240, 155])
    p.add_argument("--memory-shape", type=int, nargs=3, default=[512, 512, 400])
    p.add_argument("--memory-overlap", type=float, default=0.25)
    p.add_argument("--memory-child", choices=["input-only", "medsight", "monai"], help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:  # never overwrites the real results
        args.patch, args.repeats, args.synthetic = [32, 32, 32], 1, True
        args.speed_shape, args.memory_shape = [48, 48, 40], [64, 64, 48]
        if args.output == RESULTS:
            args.output = Path(tempfile.gettempdir()) / "medsight-inference-quick.json"
    return args


def main() -> None:
    args = parse()
    if args.memory_child:
        memory_child(args)
        return
    torch.set_num_threads(cpu_count())
    t0 = time.perf_counter()
    res = {
        "benchmark": "inference",
        "config": {
            "network": f"DynUNet (medsight 'dynunet', base_filters={args.base_filters}, max_depth=4, "
            f"{args.classes} classes, random weights: timing and memory only)",
            "patch": args.patch,
            "repeats": args.repeats,
            "quick": args.quick,
            "mode": "gaussian",
            "batch_size": 1,
            "accumulator": "float32",
        },
        "speed": speed(args),
        "memory": memory(args),
    }
    import monai

    res["machine"] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "cpu_count": cpu_count(),
        "threads": torch.get_num_threads(),
    }
    res["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    res["wall_s"] = time.perf_counter() - t0
    print_table(res)
    atomic_write_text(args.output, json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {args.output} in {res['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
