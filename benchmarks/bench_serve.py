"""Bounded load test of ``seglab serve`` on 127.0.0.1: latency, throughput, errors, server RSS.

A checkpoint of the ``nuclei_unet`` recipe's U-Net (depth 4, 16 base channels; random weights:
the load, not the answer, is measured) is served by uvicorn in a subprocess (``--concurrency 2
--queue 32``); ``--requests`` POSTs of one ``--size`` x ``--size`` synthetic nuclei PNG are sent
at each client concurrency, and the server's resident memory is read before and after.

    python benchmarks/bench_serve.py [--requests 200] [--size 512] [--levels 1 4 16]
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from seglab.data.synthetic import synth_tile
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta, save_checkpoint


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    kwargs = {"in_channels": 3, "num_classes": 3, "depth": 4, "base_channels": 16}
    torch.manual_seed(0)
    save_checkpoint(work / "unet.ckpt", create_model("unet", **kwargs), make_meta(
        task="instance", method="three_class", model_name="unet", model_kwargs=kwargs,
        preprocessing={"in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
        decoder={"name": "three_class_watershed", "kwargs": {}}, patch_size=256))
    buf = io.BytesIO()
    Image.fromarray(synth_tile(args.size, seed=1)[0]).save(buf, format="PNG")
    png = buf.getvalue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "seglab", "serve", "--checkpoint", str(work / "unet.ckpt"), "--port", str(port),
                             "--concurrency", "2", "--queue", "32", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        httpx.post(base + "/predict", files={"file": ("x.png", png, "image/png")}, timeout=120)  # warm-up
        before = rss_mb(proc.pid)
        print(f"{args.requests} requests per level of a {args.size}x{args.size} PNG; server --concurrency 2 --queue 32; RSS after warm-up {before:.0f} MB")
        print(f"{'clients':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>7s} {'errors':>7s} {'RSS MB':>7s}")
        with httpx.Client(timeout=300) as client:
            def one(_):
                t = time.perf_counter()
                r = client.post(base + "/predict", files={"file": ("x.png", png, "image/png")})
                return time.perf_counter() - t, r.status_code
            for level in args.levels:
                start = time.perf_counter()
                with ThreadPoolExecutor(level) as pool:
                    results = list(pool.map(one, range(args.requests)))
                wall = time.perf_counter() - start
                lat = np.array([r[0] for r in results]) * 1000
                errors = sum(code != 200 for _, code in results)
                print(f"{level:7d} {np.percentile(lat, 50):8.0f} {np.percentile(lat, 99):8.0f} {args.requests / wall:7.2f} {errors:7d} {rss_mb(proc.pid):7.0f}")
        time.sleep(2)
        after = rss_mb(proc.pid)
        print(f"server RSS: {before:.0f} MB after warm-up, {after:.0f} MB 2 s after the last level ({100 * (after - before) / before:+.1f}%)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
