"""CPU images/s of exported models: torch eager vs TorchScript vs ONNX Runtime fp32 vs ONNX Runtime int8.

Models: the ``nuclei_unet`` recipe's U-Net (depth 4, 16 base channels) and the
``nuclei_deeplabv3plus`` recipe's DeepLabV3+ (ResNet-18 encoder, output stride 16), 3 classes,
``--size`` x ``--size`` tiles in batches of ``--batch``, all four runtimes in the same process
with the same thread count, their repetitions interleaved (round-robin) so that load from other
processes on a shared machine falls on all of them alike. Speed does not depend on the weights.

int8's AJI change needs a model that finds nuclei, and the recipe U-Net trains only a few dozen
steps in two minutes on two CPU cores; so a smaller U-Net (depth 3, 8 base channels) is trained
for ``--train-seconds`` on synthetic nuclei (a plain loop, Adam 1e-2, CE, 96-px tiles, one thread) and exported to fp32
and int8 ONNX (calibrated on 8 training tiles); both are scored on 6 held-out 256 x 256
synthetic images through the whole predictor (128-px tiles, watershed), mean AJI per image.

    python benchmarks/bench_export.py [--size 256] [--batch 4] [--reps 5] [--train-seconds 120]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seglab.data.synthetic import synth_tile
from seglab.data.targets import three_class_targets
from seglab.export import export_model, load_runner, read_sidecar
from seglab.export.quantize import quantize_int8
from seglab.export.sidecar import write_sidecar
from seglab.inference import Predictor
from seglab.metrics import aji
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta

PRE = {"in_channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
MODELS = {"unet (nuclei_unet)": ("unet", {"depth": 4, "base_channels": 16}),
          "deeplabv3plus (nuclei_deeplabv3plus)": ("deeplabv3plus", {"encoder": "resnet18", "output_stride": 16})}


def meta_for(name, kwargs):
    return make_meta(task="instance", method="three_class", model_name=name, model_kwargs={"in_channels": 3, "num_classes": 3, **kwargs},
                     preprocessing=PRE, decoder={"name": "three_class_watershed", "kwargs": {}}, patch_size=128)


def images_per_second(fns, x, reps):
    """Images/s of each function, repetitions interleaved round-robin."""
    seconds = [0.0] * len(fns)
    for fn in fns:
        fn(x)  # warm-up
    for _ in range(reps):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn(x)
            seconds[i] += time.perf_counter() - start
    return [reps * x.shape[0] / s for s in seconds]


def tiles(n, size, seed):
    xs, ys = [], []
    for i in range(n):
        image, inst = synth_tile(size, seed=seed + i)
        xs.append((image.astype(np.float32) / 255 - 0.5) / 0.25)
        ys.append(three_class_targets(inst))
    return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack(ys).astype(np.int64))


def train(model, seconds):
    """A plain loop on one thread (small tensors: a second thread only waits at OpenMP barriers)."""
    x, y = tiles(32, 96, 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    end, step = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        idx = torch.randint(0, len(x), (4,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx], weight=torch.tensor([1.0, 1.0, 3.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    torch.set_num_threads(threads)
    return model.eval(), step


def export_all(model, meta, stem, tile, calib):
    """fp32 ONNX, TorchScript and int8 ONNX (with sidecars) of ``model``."""
    onnx_file = export_model(model, meta, stem.with_suffix(".onnx"), fmt="onnx", tile=tile).model_file
    ts_file = export_model(model, meta, stem.with_suffix(".pt"), fmt="torchscript", tile=tile).model_file
    int8_file = stem.with_suffix(".int8.onnx")
    q = quantize_int8(onnx_file, int8_file, calib)
    write_sidecar(int8_file, {**read_sidecar(onnx_file), "file": int8_file.name, "quantization": q})
    return onnx_file, ts_file, int8_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-seconds", type=float, default=120)
    args = ap.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    x = torch.randn(args.batch, 3, args.size, args.size)
    calib = [t[None].numpy() for t in tiles(8, args.size, 100)[0]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.batch} x {args.size}^2 tiles, {args.reps} reps")
    print(f"{'model':38s} {'eager img/s':>11s} {'TorchScript':>12s} {'ORT fp32':>9s} {'ORT int8':>9s}")
    for label, (name, kwargs) in MODELS.items():
        model = create_model(name, in_channels=3, num_classes=3, **kwargs).eval()
        onnx_file, ts_file, int8_file = export_all(model, meta_for(name, kwargs), work / name, args.size, calib)
        cl = model.to(memory_format=torch.channels_last)
        eager_fn = lambda t: cl(t.contiguous(memory_format=torch.channels_last))  # noqa: B023, E731 - used at once
        with torch.inference_mode():
            eager, *rates = images_per_second([eager_fn, *(load_runner(f) for f in (ts_file, onnx_file, int8_file))], x, args.reps)
        print(f"{label:38s} {eager:11.2f} " + " ".join(f"{r:7.2f} ({r / eager:.2f}x)" for r in rates))
    small = {"depth": 3, "base_channels": 8}
    model, steps = train(create_model("unet", in_channels=3, num_classes=3, **small), args.train_seconds)
    meta = meta_for("unet", small)
    fp32, _, int8 = export_all(model, meta, work / "small", 128, [t[None].numpy() for t in tiles(8, 128, 0)[0]])
    trained = {"model": model, "steps": steps, "meta": meta, "fp32": fp32, "int8": int8}
    scores = {"fp32": [], "int8": []}
    for i in range(6):
        image, inst = synth_tile(256, seed=500 + i)
        for kind in scores:
            p = Predictor(trained["model"], trained["meta"], tile=128, backend="onnxruntime", model_file=trained[kind])
            scores[kind].append(aji(inst, p.predict(image)["instances"]))
    a32, a8 = np.mean(scores["fp32"]), np.mean(scores["int8"])
    print(f"U-Net depth 3 / 8 channels trained {args.train_seconds:g} s ({trained['steps']} steps) on synthetic nuclei; 6 held-out 256^2 images, mean AJI: "
          f"fp32 {a32:.4f}, int8 {a8:.4f} ({a8 - a32:+.4f})")


if __name__ == "__main__":
    main()
