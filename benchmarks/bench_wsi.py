"""Whole-slide prediction: peak memory vs slide size, background skipping, MONAI, tiling invariance.

Run: ``.venv/bin/python benchmarks/bench_wsi.py [--sizes 10000,30000,60000] [--quick] [--work DIR]``

1. Model: a small seglab U-Net (``depth=3, base_channels=8``, 0.12 M parameters; ``--width``) trained for
   ``--train-seconds`` (60) on patches of the synthetic slides' own renderer
   (:mod:`seglab.data.synthetic_slide`: pink tissue, purple nuclei of 3.5 µm radius) at
   0.5 µm/px, three-class targets; saved as a checkpoint recording ``mpp = 0.5``.
2. Slides: pyramidal OME-TIFFs (3 levels, 256-px zlib tiles) of ``N x N`` px at 0.25 µm/px
   with 5 tissue islands covering 15% of the area, written tile by tile from an iterator (never
   held in memory). The model runs on level 1 (0.5 µm/px); outputs are in level-0 pixels.
3. Each slide is predicted by ``seglab predict`` in its own process (``--tile 256``, default
   blocks of 1536 + 64 px (the default), ``--tissue auto``); wall time and the process's peak RSS
   (``os.wait4``) are measured; tiles run / skipped come from ``summary.csv``. Tissue MP/s is
   the tissue area at the model's resolution per second of wall time.
4. Background skipping: the slides of ``--none-sizes`` (default: the smallest) again with
   ``--tissue none``; the ratio of the prediction times (and of the tiles run: its ceiling).
5. MONAI: on a 10k x 10k slide at the model's resolution (0.5 µm/px, so no resampling), seglab
   (``--tissue none``) against MONAI's ``sliding_window_inference`` (same model, 256-px window,
   overlap 0.25, Gaussian, batch 8) over the whole image in memory, followed by seglab's
   block-wise decoder on the whole probability map; each in its own process.
6. Tiling invariance: a 2048 x 2048 image of dark ellipses 30-160 px long (up to 10x the
   16-px margin), predicted through the block pipeline with 256-px blocks vs in one block, with
   a model that calls dark pixels interior; AJI between the two maps.

The prediction processes run torch on one thread (``--threads``; on a CPU shared with other jobs
two OpenMP threads wait at barriers for each other); seglab's block pipeline decodes and writes
on a second thread, so a seglab prediction uses up to two cores (the MONAI arm, one).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MODEL = {"in_channels": 3, "num_classes": 3, "depth": 3, "base_channels": 8}
SLIDE_MPP, MODEL_MPP = 0.25, 0.5


def train_checkpoint(path: Path, seconds: float, seed: int = 0, width: int = 8) -> int:
    """Train the small U-Net on rendered slide patches for ``seconds``; returns the step count."""
    from scipy import ndimage as ndi

    from seglab.data.synthetic_slide import _inside, _nuclei, make_islands, render
    from seglab.data.targets import three_class_targets
    from seglab.models import create_model
    from seglab.spec.checkpoint import make_meta, save_checkpoint

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    canvas = 8192
    islands = make_islands(canvas, canvas, coverage=0.3, count=6, seed=seed)

    def patch(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        y0, x0 = rng.uniform(0, canvas - 2 * size, 2)
        ys, xs = y0 + (np.arange(size) + 0.5) * 2, x0 + (np.arange(size) + 0.5) * 2  # level-0 points at 0.5 µm/px
        nuclei = _nuclei(ys, xs, spacing=12 / SLIDE_MPP, radius=3.5 / SLIDE_MPP, seed=seed) & _inside(islands, ys, xs)
        return render(islands, ys, xs, mpp=SLIDE_MPP, seed=seed), ndi.label(nuclei)[0]

    kwargs = {**MODEL, "base_channels": width}
    model = create_model("unet", **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    mean, std = 0.8, 0.15
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        batch = [patch() for _ in range(8)]
        x = (torch.from_numpy(np.stack([b[0] for b in batch])).permute(0, 3, 1, 2).float() / 255 - mean) / std
        y = torch.from_numpy(np.stack([three_class_targets(b[1]) for b in batch])).long()
        loss = torch.nn.functional.cross_entropy(model(x), y, weight=torch.tensor([1.0, 1.0, 2.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    meta = make_meta(task="instance", model_name="unet", model_kwargs=kwargs, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [mean] * 3, "std": [std] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 10}}, patch_size=128, mpp=MODEL_MPP)
    save_checkpoint(path, model, meta)
    return steps


def make_slide(path: Path, size: int, mpp: float = SLIDE_MPP) -> float:
    """Write a synthetic slide unless it exists; returns the seconds spent."""
    from seglab.data.synthetic_slide import write_synthetic_slide

    if path.is_file():
        return 0.0
    start = time.perf_counter()
    tmp = path.with_name(".tmp." + path.name)
    write_synthetic_slide(tmp, size, size, mpp=mpp, levels=3, tile=256, coverage=0.15, islands=5, seed=1)
    tmp.rename(path)
    return time.perf_counter() - start


def measured(cmd: list[str], threads: int) -> tuple[float, float]:
    """Run ``cmd``; its wall seconds and peak RSS in MB (``os.wait4`` of that one process)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def seglab_predict(ckpt: Path, slide: Path, out: Path, threads: int, *extra: str) -> dict:
    cmd = [PY, "-m", "seglab", "predict", "--checkpoint", str(ckpt), "--input", str(slide), "--output", str(out),
           "--tile", "256", "--workers", "0", *extra]
    seconds, rss = measured(cmd, threads)
    from seglab.inference.slide_run import input_stem

    row = next(r for r in csv.DictReader((out / "summary.csv").open()) if r["stem"] == input_stem(slide))
    tissue_mp = float(row["tissue_mm2"]) / MODEL_MPP**2  # mm² -> MP at the model's µm/px
    inner = float(row["seconds"])  # the slide's prediction, without starting Python and loading torch
    return {"seconds": seconds, "inner_s": inner, "rss_mb": rss, "objects": int(row["instances"]),
            "tiles_run": int(row["tiles_run"]), "tiles_skipped": int(row["tiles_skipped"]), "tissue_mp": tissue_mp,
            "tissue_mp_s": tissue_mp / inner}


def monai_arm(ckpt: str, slide: str, out: str) -> None:
    """(subprocess) MONAI's sliding window over the whole image in memory, then seglab's decoder."""
    import tifffile
    from monai.inferers import sliding_window_inference

    from seglab.inference import Predictor
    from seglab.inference.stitch import decode_blockwise

    predictor = Predictor.from_checkpoint(ckpt, tile=256)
    image = tifffile.imread(slide, level=0)
    x = predictor.preprocess(image)[None]
    del image
    fn = predictor._predict_fn()
    with torch.inference_mode():
        probs = sliding_window_inference(x, roi_size=(256, 256), sw_batch_size=8, predictor=fn, overlap=0.25,
                                         mode="gaussian")[0].numpy()
    labels = decode_blockwise([(0, probs.shape[1], probs)], probs.shape[1:], predictor.decode_probs, block=2048, margin=64)
    tifffile.imwrite(out, labels.astype(np.uint32), compression="zlib", tile=(256, 256))
    print(int(len(np.unique(labels)) - 1))


def tiling_invariance(size: int = 2048, block: int = 256, margin: int = 16, seed: int = 0) -> dict:
    """AJI between the block pipeline (small blocks) and one block, on objects up to 10x the margin."""
    import tempfile

    import tifffile
    from skimage.draw import ellipse

    from seglab.inference import ArraySource, Predictor
    from seglab.inference.slide_run import predict_slide
    from seglab.metrics.instance import aji
    from seglab.spec.checkpoint import make_meta

    class DarkIsInterior(torch.nn.Module):
        def forward(self, x):
            dark = -x.mean(1, keepdim=True)
            return torch.cat([-6 * dark, 6 * dark, torch.full_like(dark, -20.0)], 1)

    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 225, np.uint8)
    for _ in range(size * size // 20000):
        r = ellipse(*rng.uniform(0, size, 2), *rng.uniform(8, 80, 2), shape=(size, size), rotation=rng.uniform(0, np.pi))
        if (image[r][:, 0] > 100).all():
            image[r] = 40
    meta = make_meta(task="instance", model_name="unet", model_kwargs={}, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 10}}, patch_size=256)
    one = Predictor(DarkIsInterior(), meta, tile=256, block=size, margin=margin).predict(image)["instances"]
    with tempfile.TemporaryDirectory() as out:
        predict_slide(Predictor(DarkIsInterior(), meta, tile=256, block=block, margin=margin), ArraySource(image), out, "x")
        tiled = tifffile.imread(Path(out) / "x_instances.ome.tif")
    extent = max(max(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in __import__("scipy.ndimage").ndimage.find_objects(one) if s)
    return {"aji": aji(one, tiled), "objects_one_pass": int(one.max()), "objects_tiled": int(len(np.unique(tiled)) - 1),
            "largest_object_px": int(extent), "margin": margin, "block": block}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,60000", help="slide sides in level-0 px, comma separated")
    parser.add_argument("--quick", action="store_true", help="sizes 4096,8192, MONAI on 4096")
    parser.add_argument("--work", default="/tmp/bench_wsi", help="folder for the checkpoint, slides and outputs")
    parser.add_argument("--train-seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=8, help="the U-Net's channels at full resolution (8: 0.12 M parameters)")
    parser.add_argument("--monai-size", type=int, default=10000)
    parser.add_argument("--none-sizes", default="", help="slides (sides, comma separated) also run with --tissue none "
                        "for the skipping ratio (default: the first of --sizes)")
    parser.add_argument("--skip", default="", help="parts to leave out: monai,invariance,none")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--monai-arm", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.monai_arm:
        return monai_arm(*args.monai_arm)
    torch.set_num_threads(args.threads)
    sizes = [4096, 8192] if args.quick else [int(s) for s in args.sizes.split(",")]
    monai_size = 4096 if args.quick else args.monai_size
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / f"unet_w{args.width}.ckpt"
    if not ckpt.is_file():
        steps = train_checkpoint(ckpt, args.train_seconds, width=args.width)
        print(f"model: U-Net depth 3 x {args.width} channels trained {steps} steps on rendered slide patches -> {ckpt}")
    figures: dict = {"slides": {}}
    for size in sizes:
        slide = work / f"slide{size}.ome.tif"
        made = make_slide(slide, size)
        if made:
            print(f"slide {size} x {size}: written tile by tile in {made:.0f} s ({slide.stat().st_size / 1e9:.2f} GB)")
        res = seglab_predict(ckpt, slide, work / f"out{size}", args.threads)
        figures["slides"][size] = res
        print(f"{size:>6} px: {res['seconds']:7.1f} s wall ({res['inner_s']:.1f} s predicting), peak RSS {res['rss_mb']:6.0f} MB, tissue {res['tissue_mp']:.0f} MP "
              f"at 0.5 µm/px ({res['tissue_mp_s']:.2f} MP/s), tiles run {res['tiles_run']} skipped {res['tiles_skipped']}, "
              f"{res['objects']} objects", flush=True)
    if len(sizes) > 1:
        a, b = figures["slides"][sizes[0]], figures["slides"][sizes[-1]]
        figures["rss_ratio"] = b["rss_mb"] / a["rss_mb"]
        print(f"peak RSS {sizes[-1]} / {sizes[0]}: {figures['rss_ratio']:.2f}")
    if "none" not in args.skip:
        figures["tissue_none"] = {}
        for size in [int(s) for s in args.none_sizes.split(",")] if args.none_sizes else sizes[:1]:
            slide = work / f"slide{size}.ome.tif"
            make_slide(slide, size)
            auto = figures["slides"].get(size) or seglab_predict(ckpt, slide, work / f"out{size}", args.threads)
            none = seglab_predict(ckpt, slide, work / f"out{size}_none", args.threads, "--tissue", "none")
            none["skip_speedup"] = speedup = none["inner_s"] / auto["inner_s"]
            none["skip_speedup_wall"] = wall = none["seconds"] / auto["seconds"]
            none["auto_inner_s"], none["tile_ratio"] = auto["inner_s"], none["tiles_run"] / auto["tiles_run"]
            figures["tissue_none"][size] = none
            print(f"--tissue none on {size}: {none['seconds']:.1f} s wall ({none['inner_s']:.1f} s predicting), "
                  f"tiles {none['tiles_run']} ({none['tile_ratio']:.1f}x auto's); auto is {speedup:.1f}x faster "
                  f"predicting ({wall:.1f}x in wall time)", flush=True)
    if "monai" not in args.skip:
        slide = work / f"flat{monai_size}.ome.tif"
        make_slide(slide, monai_size, mpp=MODEL_MPP)
        ours = seglab_predict(ckpt, slide, work / f"out_flat{monai_size}", args.threads, "--tissue", "none")
        t, rss = measured([PY, __file__, "--monai-arm", str(ckpt), str(slide), str(work / "monai.tif")], args.threads)
        figures["monai"] = {"size": monai_size, "seglab_s": ours["seconds"], "seglab_rss_mb": ours["rss_mb"],
                            "monai_s": t, "monai_rss_mb": rss}
        print(f"{monai_size} x {monai_size}, no skipping (wall time and peak RSS of each process): seglab {ours['seconds']:.1f} s / {ours['rss_mb']:.0f} MB, "
              f"MONAI + seglab decoder {t:.1f} s / {rss:.0f} MB: time ratio {t / ours['seconds']:.2f}, "
              f"RSS ratio {rss / ours['rss_mb']:.2f}")
    if "invariance" not in args.skip:
        figures["invariance"] = inv = tiling_invariance()
        print(f"tiling invariance: AJI(256-px blocks, margin 16 vs one block) = {inv['aji']:.4f}, objects "
              f"{inv['objects_tiled']} vs {inv['objects_one_pass']}, largest object {inv['largest_object_px']} px")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
