"""REST service throughput and latency: `medsight serve` under N concurrent clients for T seconds.

The server runs as its own process (``medsight serve``, one inference worker: requests queue), the
clients are threads of this process posting the same image to ``/predict`` over loopback and timing
each answer. Reported: requests per second, latency p50 / p95 / p99 (ms), and every non-200 answer or
connection error (there should be none).

Usage (from the repo root)::

    .venv/bin/python benchmarks/service.py                       # phantom model, 8 clients, 20 s
    .venv/bin/python benchmarks/service.py --run runs/segment-drive-... --image retina.png
    .venv/bin/python benchmarks/service.py --quick               # a smoke run (2 clients, 3 s)

Without ``--run`` a small 2D segmenter is trained on the built-in fundus phantom first (about a
minute on 2 cores; ``--iterations``) and one of its test images is sent. Results go to
``benchmarks/results/service.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from medsight.utils import atomic_write_text, cpu_count

RESULTS = Path(__file__).resolve().parent / "results" / "service.json"
TOKEN = "benchmark-token"


def phantom_model(folder: Path, iterations: int, size: int) -> tuple[Path, Path]:
    """Train a small fundus-phantom segmenter; returns (run folder, a test image)."""
    from medsight import api
    from medsight.data import make_phantom_dataset

    data = make_phantom_dataset(folder / "fundus", kind="fundus2d", n_train=8, n_test=2, seed=0, size=size)
    run = api.train(
        data,
        overrides=[f"train.max_iterations={iterations}", "train.progress=false", "data.fold=all"],
        out=folder / "runs",
        measure=False,
    )
    return run, sorted((data / "imagesTs").iterdir())[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, workers: int, timeout_s: float) -> subprocess.Popen:
    """``medsight serve`` in a subprocess; returns once /health answers."""
    cmd = [sys.executable, "-m", "medsight.cli.main", "serve", "--run", str(run), "--port", str(port)]
    cmd += ["--workers", str(workers), "--timeout", str(timeout_s)]
    env = {**os.environ, "MEDSIGHT_API_TOKEN": TOKEN}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer /health within 120 s")


def load(url: str, image: Path, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` threads post ``image`` until ``seconds`` have passed; latencies of 200 answers."""
    data = image.read_bytes()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    sent = [0] * clients
    start = time.perf_counter()
    deadline = start + seconds

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.perf_counter() < deadline:
                sent[i] += 1
                t0 = time.perf_counter()
                try:
                    r = http.post(
                        "/predict",
                        files={"file": (image.name, data)},
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    )
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)
                    continue
                if r.status_code == 200:
                    latencies[i].append(time.perf_counter() - t0)
                else:
                    failures.append(f"HTTP {r.status_code}: {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    lat = sorted(x for per in latencies for x in per)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) >= 2 else lat * 99
    return {
        "requests_sent": sum(sent),
        "requests_ok": len(lat),
        "failures": len(failures),
        "failure_examples": sorted(set(failures))[:5],
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(lat) / elapsed, 2),
        "latency_ms": {
            "p50": round(1000 * q[49], 1) if lat else None,
            "p95": round(1000 * q[94], 1) if lat else None,
            "p99": round(1000 * q[98], 1) if lat else None,
            "mean": round(1000 * statistics.fmean(lat), 1) if lat else None,
            "max": round(1000 * lat[-1], 1) if lat else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run folder to serve (default: train a phantom model)")
    parser.add_argument("--image", type=Path, help="image to post (default: a phantom test image)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=int, default=5, help="requests before timing")
    parser.add_argument("--workers", type=int, default=1, help="inference threads of the server")
    parser.add_argument("--iterations", type=int, default=200, help="phantom model training iterations")
    parser.add_argument("--size", type=int, default=256, help="phantom image size (pixels)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 clients, 3 s, tiny model")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds, args.warmup, args.iterations, args.size = 2, 3.0, 1, 4, 64
        if args.output == RESULTS:
            args.output = Path(tempfile.gettempdir()) / "medsight-service-quick.json"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medsight-bench-service-") as tmp:
        run, image = args.run, args.image
        if run is None:
            run, phantom_image = phantom_model(Path(tmp), args.iterations, args.size)
            image = image or phantom_image
        if image is None:
            raise SystemExit("--image is required with --run")
        port = free_port()
        server = start_server(run, port, args.workers, timeout_s=600)
        try:
            url = f"http://127.0.0.1:{port}"
            health = httpx.get(f"{url}/health").json()
            image_name, image_bytes = image.name, image.stat().st_size
            for _ in range(args.warmup):
                httpx.post(
                    f"{url}/predict",
                    files={"file": (image.name, image.read_bytes())},
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=120,
                ).raise_for_status()
            result = load(url, image, args.clients, args.seconds)
            served = httpx.get(f"{url}/health").json()["served"]
        finally:
            server.terminate()
            server.wait(timeout=30)
    import torch

    res = {
        "benchmark": "service",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "config": {
            "clients": args.clients,
            "seconds": args.seconds,
            "workers": args.workers,
            "run": health["run"],
            "model": health["model"],
            "image": image_name,
            "image_bytes": image_bytes,
        },
        "result": result,
        "server_counted_ok": served - args.warmup,
        "machine": {
            "cpus": cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
        },
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    lat = result["latency_ms"]
    print(f"{'clients':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'ok':>6} {'failed':>6}")
    print(
        f"{args.clients:>8} {result['requests_per_s']:>8} {lat['p50']:>8} {lat['p95']:>8} {lat['p99']:>8} "
        f"{result['requests_ok']:>6} {result['failures']:>6}"
    )
    atomic_write_text(args.output, json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
