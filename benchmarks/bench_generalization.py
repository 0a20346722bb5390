"""Generalization: the plain `seglab train` command vs a plain smp U-Net loop on data seglab never saw.

Every set of ``generalization_data.py`` (an independent generator: 16-bit fluorescence with a
few hundred counts of dynamic range, small dense nuclei, large nuclei in another stain, tight
clusters, large sparse 2-channel cells) is written to the work dir and then:

* seglab, exactly as a new user types it (subprocesses):
  ``seglab train --data D/train --val D/val --task instance --model unet --minutes M --out RUN``,
  ``seglab predict --checkpoint RUN/best.ckpt --input D/test/images --output PRED``,
  ``seglab evaluate --pred PRED --gt D/test --task instance --json S.json``; the mean over test
  images of AJI and PQ is read from the JSON (``metrics``). ``--config X`` adds a row with the same
  train command plus ``--config X``.
* peer: ``smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=C, classes=3)`` in a
  plain PyTorch loop: inputs normalised by the training set's per-channel mean / std in raw
  intensity units, random 256-px crops (smaller images padded, padding ignored), flips and rot90,
  AdamW lr 1e-3, batch 8, CE + smp DiceLoss on the 3-class target
  (``seglab.data.targets.three_class_targets``), trained for the same M minutes of wall clock on
  ``--peer-threads`` torch threads; whole test images (padded to a multiple of 32) decoded by
  ``seglab.instances.three_class_watershed`` with its defaults and scored by ``seglab.metrics``
  (mean over images of ``aji`` and ``panoptic_quality(...)["pq"]``).

PQ matches a pair when IoU > 0.5 (strictly). Delta AJI = seglab - peer.

Usage:
    python benchmarks/bench_generalization.py [--minutes 3] [--sets fluo16,he_large] [--work DIR]
        [--config nuclei_unet] [--skip-peer] [--skip-seglab] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
_NOTE_PREFIXES = ("recipe:", "seglab: warning")


def load_data_module():
    spec = importlib.util.spec_from_file_location("generalization_data", HERE / "generalization_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------ seglab
def seglab_executable() -> list[str]:
    exe = Path(sys.executable).with_name("seglab")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "seglab"]


def resolve_config(name: str) -> str:
    """A path as given, else ``configs/<name>.yaml`` of this repository when it exists."""
    if Path(name).is_file():
        return name
    for candidate in (HERE.parent / "configs" / name, HERE.parent / "configs" / f"{name}.yaml"):
        if candidate.is_file():
            return str(candidate)
    return name


def _run(cmd: list[str], log: Path) -> tuple[float, int]:
    """Run cmd with stdout / stderr in log.stdout / log.stderr; (seconds, exit status)."""
    t0 = time.perf_counter()
    with open(f"{log}.stdout", "w") as out, open(f"{log}.stderr", "w") as err:
        status = subprocess.run(cmd, stdout=out, stderr=err).returncode
    return time.perf_counter() - t0, status


def _tail(log: Path, n: int = 5) -> str:
    lines = Path(f"{log}.stderr").read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in lines[-n:])


def run_seglab(data: Path, work: Path, minutes: float, config: str | None = None) -> dict:
    """train, predict, evaluate through the CLI; AJI / PQ (mean over images), steps, train time."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    exe = seglab_executable()
    train = [*exe, "train", "--data", str(data / "train"), "--val", str(data / "val"), "--task", "instance",
             "--model", "unet", "--minutes", f"{minutes:g}", "--out", str(work / "run")]
    train += ["--config", config] if config else []
    predict = [*exe, "predict", "--checkpoint", str(work / "run" / "best.ckpt"), "--input",
               str(data / "test" / "images"), "--output", str(work / "pred")]
    evaluate = [*exe, "evaluate", "--pred", str(work / "pred"), "--gt", str(data / "test"), "--task", "instance",
                "--json", str(work / "scores.json")]
    result: dict = {"commands": [shlex.join(c) for c in (train, predict, evaluate)], "aji": None, "pq": None}
    seconds, status = _run(train, work / "train")
    text = Path(f"{work / 'train'}.stdout").read_text(errors="replace")
    text += Path(f"{work / 'train'}.stderr").read_text(errors="replace")
    result["train_seconds"] = seconds
    result["train_log"] = str(work / "train.stdout")
    result["notes"] = [line.strip() for line in text.splitlines() if line.strip().startswith(_NOTE_PREFIXES)]
    steps = re.findall(r"\bsteps (\d+)", text)
    result["steps"] = int(steps[-1]) if steps else None
    for name, cmd, log in (("train", None, work / "train"), ("predict", predict, work / "predict"),
                           ("evaluate", evaluate, work / "evaluate")):
        if cmd is not None:
            seconds, status = _run(cmd, log)
            result[f"{name}_seconds"] = seconds
        if status != 0:
            result["error"] = f"seglab {name} exited with {status}"
            print(f"  {result['error']}; last lines of {log}.stderr:\n{_tail(log)}")
            return result
    metrics = json.loads((work / "scores.json").read_text())["metrics"]
    result["aji"], result["pq"] = metrics["aji"], metrics["pq"]
    return result


# -------------------------------------------------------------------------------------------- peer
def _read_split(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import tifffile
    from PIL import Image

    images, labels = [], []
    for path in sorted((folder / "images").iterdir()):
        if path.suffix.lower() in (".tif", ".tiff"):
            image = tifffile.imread(path)
        else:
            with Image.open(path) as im:
                image = np.asarray(im)
        images.append((image[..., None] if image.ndim == 2 else image).astype(np.float32))
        labels.append(tifffile.imread(folder / "labels" / f"{path.stem}.tif").astype(np.int64))
    return images, labels


def _crop(rng, x: np.ndarray, y: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random size x size crop of C x H x W / H x W (padded with 0 / ignore 255), flips, rot90."""
    ph, pw = max(0, size - x.shape[1]), max(0, size - x.shape[2])
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
        y = np.pad(y, ((0, ph), (0, pw)), constant_values=255)
    i, j = rng.integers(0, x.shape[1] - size + 1), rng.integers(0, x.shape[2] - size + 1)
    x, y = x[:, i:i + size, j:j + size], y[i:i + size, j:j + size]
    if rng.random() < 0.5:
        x, y = x[:, :, ::-1], y[:, ::-1]
    if rng.random() < 0.5:
        x, y = x[:, ::-1], y[::-1]
    k = int(rng.integers(4))
    return np.ascontiguousarray(np.rot90(x, k, (1, 2))), np.ascontiguousarray(np.rot90(y, k))


def _pad32(x):
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % 32, 0, -h % 32), mode="reflect")


def run_peer(data: Path, minutes: float, *, seed: int, threads: int, patch: int = 256, batch: int = 8) -> dict:
    import segmentation_models_pytorch as smp
    import torch

    from seglab.data.targets import three_class_targets
    from seglab.instances import three_class_watershed
    from seglab.metrics import aji, panoptic_quality

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images, labels = _read_split(data / "train")
    channels = images[0].shape[-1]
    pixels = np.concatenate([im.reshape(-1, channels) for im in images]).astype(np.float64)
    mean, std = pixels.mean(0), pixels.std(0) + 1e-6
    xs = [((im - mean) / std).astype(np.float32).transpose(2, 0, 1) for im in images]
    ys = [np.asarray(three_class_targets(lab), np.int64) for lab in labels]
    model = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=channels, classes=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    dice = smp.losses.DiceLoss(mode="multiclass", ignore_index=255)
    t0 = time.monotonic()
    steps, deadline = 0, t0 + 60 * minutes
    model.train()
    while time.monotonic() < deadline:
        pairs = [_crop(rng, xs[k], ys[k], patch) for k in rng.integers(len(xs), size=batch)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs]))
        y = torch.from_numpy(np.stack([p[1] for p in pairs]))
        logits = model(x)
        loss = ce(logits, y) + dice(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    train_seconds = time.monotonic() - t0
    model.eval()
    test_images, test_labels = _read_split(data / "test")
    scores = []
    t0 = time.monotonic()
    with torch.inference_mode():
        for image, gt in zip(test_images, test_labels, strict=True):
            x = torch.from_numpy(((image - mean) / std).astype(np.float32).transpose(2, 0, 1))[None]
            probs = model(_pad32(x))[0, :, : x.shape[2], : x.shape[3]].softmax(0).numpy()
            pred = three_class_watershed(probs)
            scores.append((aji(gt, pred), panoptic_quality(gt, pred)["pq"]))
    aji_mean, pq_mean = np.mean(scores, 0)
    return {"aji": float(aji_mean), "pq": float(pq_mean), "steps": steps, "train_seconds": train_seconds,
            "predict_seconds": time.monotonic() - t0, "channels": channels,
            "mean": mean.tolist(), "std": std.tolist()}


# -------------------------------------------------------------------------------------------- main
def _fmt(value, spec: str = ".4f", width: int = 7) -> str:
    return ("-" if value is None else format(value, spec)).rjust(width)


def print_table(results: dict) -> None:
    has_config = any("seglab_config" in r for r in results.values())
    head = f"{'set':16s} {'seglab AJI':>10s} {'PQ':>7s} {'steps':>6s}"
    head += f" {'+cfg AJI':>9s} {'PQ':>7s} {'steps':>6s}" if has_config else ""
    head += f" {'peer AJI':>9s} {'PQ':>7s} {'steps':>6s} {'dAJI':>8s}"
    print("\n" + head + "\n" + "-" * len(head))
    for name, r in results.items():
        s, c, p = r.get("seglab", {}), r.get("seglab_config", {}), r.get("peer", {})
        line = f"{name:16s} {_fmt(s.get('aji'), width=10)} {_fmt(s.get('pq'))} {_fmt(s.get('steps'), 'd', 6)}"
        if has_config:
            line += f" {_fmt(c.get('aji'), width=9)} {_fmt(c.get('pq'))} {_fmt(c.get('steps'), 'd', 6)}"
        line += f" {_fmt(p.get('aji'), width=9)} {_fmt(p.get('pq'))} {_fmt(p.get('steps'), 'd', 6)}"
        print(line + f" {_fmt(r.get('delta_aji'), '+.4f', 8)}")
    for key, label in (("delta_aji", "seglab - peer"), ("delta_aji_config", "seglab + config - peer")):
        deltas = [r[key] for r in results.values() if r.get(key) is not None]
        if deltas:
            print(f"mean delta AJI ({label}) over {len(deltas)} sets: {np.mean(deltas):+.4f}")
    print("AJI / PQ: mean over test images; PQ matches at IoU > 0.5; steps: optimiser steps in the budget")


def main() -> None:
    data_module = load_data_module()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget of each run")
    parser.add_argument("--sets", default=",".join(data_module.SETS), help="comma-separated set names")
    parser.add_argument("--work", type=Path, default=None, help="work dir (default: a new temp dir)")
    parser.add_argument("--seed", type=int, default=0, help="data and peer seed")
    parser.add_argument("--config", help="also run `seglab train ... --config CONFIG` (a path or configs/ name)")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-seglab", action="store_true")
    parser.add_argument("--peer-threads", type=int, default=2, help="torch threads of the peer loop")
    parser.add_argument("--peer-patch", type=int, default=256, help="crop size of the peer loop")
    parser.add_argument("--peer-batch", type=int, default=8, help="batch size of the peer loop")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    a = parser.parse_args()
    sets = [s.strip() for s in a.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in data_module.SETS]
    if unknown:
        parser.error(f"unknown set(s) {', '.join(unknown)}; known: {', '.join(data_module.SETS)}")
    work = a.work or Path(tempfile.mkdtemp(prefix="bench_generalization_"))
    config = resolve_config(a.config) if a.config else None
    command = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command}\nwork dir: {work}\n{a.minutes:g} min of training per run")
    report: dict = {"command": command, "minutes": a.minutes, "work": str(work), "config": config, "sets": {}}
    results = report["sets"]
    for name in sets:
        t0 = time.perf_counter()
        data = data_module.make_set(name, work / name / "data", seed=a.seed)
        print(f"\n[{name}] {data_module.SETS[name]}\n  data: {data} ({time.perf_counter() - t0:.1f} s)")
        r = results[name] = {"description": data_module.SETS[name], "data": str(data)}
        runs = [] if a.skip_seglab else [("seglab", None)] + ([("seglab_config", config)] if config else [])
        for key, cfg in runs:
            r[key] = run_seglab(data, work / name / key, a.minutes, cfg)
            for note in r[key]["notes"]:
                print(f"  {key} | {note}")
            print(f"  {key}: AJI {_fmt(r[key]['aji'])}  PQ {_fmt(r[key]['pq'])}  steps {r[key]['steps']}  "
                  f"train {r[key]['train_seconds']:.0f} s  (stdout: {r[key]['train_log']})")
        if not a.skip_peer:
            r["peer"] = run_peer(data, a.minutes, seed=a.seed, threads=a.peer_threads, patch=a.peer_patch,
                                 batch=a.peer_batch)
            print(f"  peer: AJI {r['peer']['aji']:.4f}  PQ {r['peer']['pq']:.4f}  steps {r['peer']['steps']}")
        for key, run in (("delta_aji", "seglab"), ("delta_aji_config", "seglab_config")):
            if r.get(run, {}).get("aji") is not None and "peer" in r:
                r[key] = r[run]["aji"] - r["peer"]["aji"]
        if a.json:
            a.json.write_text(json.dumps(report, indent=2))
    print_table(results)
    if a.json:
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
