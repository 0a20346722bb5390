"""CPU images/s of exported models: torch eager vs TorchScript vs ONNX Runtime fp32 vs ONNX Runtime int8.

Models: the ``nuclei_unet`` recipe's U-Net (depth 4, 16 base channels) and the
``nuclei_deeplabv3plus`` recipe's DeepLabV3+ (ResNet-18 encoder, output stride 16), 3 classes,
``--size`` x ``--size`` tiles in batches of ``--batch``, all four runtimes in the same process
with the same thread count. The U-Net is first trained for ``--train-seconds`` on synthetic
nuclei (a plain loop, CE), so that int8's AJI change is measured on a model that finds nuclei:
fp32 ONNX vs int8 ONNX, calibrated on 8 training tiles, scored on 6 held-out synthetic images
through the whole predictor (tiles, watershed), mean AJI per image.

    python benchmarks/bench_export.py [--size 256] [--batch 4] [--reps 5] [--train-seconds 90]
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


def images_per_second(fn, x, reps):
    fn(x)  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        fn(x)
    return reps * x.shape[0] / (time.perf_counter() - start)


def tiles(n, size, seed):
    xs, ys = [], []
    for i in range(n):
        image, inst = synth_tile(size, seed=seed + i)
        xs.append((image.astype(np.float32) / 255 - 0.5) / 0.25)
        ys.append(three_class_targets(inst))
    return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack(ys).astype(np.int64))


def train(model, seconds):
    x, y = tiles(32, 128, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    end, step = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        idx = torch.randint(0, len(x), (8,))
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx], weight=torch.tensor([1.0, 1.0, 3.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    return model.eval(), step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-seconds", type=float, default=90)
    args = ap.parse_args()
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    x = torch.randn(args.batch, 3, args.size, args.size)
    calib = [t[None].numpy() for t in tiles(8, args.size, 100)[0]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.batch} x {args.size}^2 tiles, {args.reps} reps")
    print(f"{'model':38s} {'eager img/s':>11s} {'TorchScript':>12s} {'ORT fp32':>9s} {'ORT int8':>9s}")
    trained = {}
    for label, (name, kwargs) in MODELS.items():
        model = create_model(name, in_channels=3, num_classes=3, **kwargs).eval()
        if name == "unet":
            model, steps = train(model, args.train_seconds)
            trained = {"model": model, "steps": steps}
        meta = meta_for(name, kwargs)
        onnx_file = export_model(model, meta, work / f"{name}.onnx", fmt="onnx", tile=args.size).model_file
        ts_file = export_model(model, meta, work / f"{name}.pt", fmt="torchscript", tile=args.size).model_file
        int8_file = work / f"{name}.int8.onnx"
        q = quantize_int8(onnx_file, int8_file, calib)
        write_sidecar(int8_file, {**read_sidecar(onnx_file), "file": int8_file.name, "quantization": q})
        cl = model.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            eager = images_per_second(lambda t: cl(t.contiguous(memory_format=torch.channels_last)), x, args.reps)
            rates = [images_per_second(load_runner(f), x, args.reps) for f in (ts_file, onnx_file, int8_file)]
        print(f"{label:38s} {eager:11.2f} " + " ".join(f"{r:7.2f} ({r / eager:.2f}x)" for r in rates))
        if name == "unet":
            trained.update(meta=meta, onnx=onnx_file, int8=int8_file)
    scores = {"fp32": [], "int8": []}
    for i in range(6):
        image, inst = synth_tile(256, seed=500 + i)
        for kind in scores:
            p = Predictor(trained["model"], trained["meta"], tile=128, backend="onnxruntime", model_file=trained[kind])
            scores[kind].append(aji(inst, p.predict(image)["instances"]))
    a32, a8 = np.mean(scores["fp32"]), np.mean(scores["int8"])
    print(f"U-Net trained {args.train_seconds:g} s ({trained['steps']} steps) on synthetic nuclei; 6 held-out 256^2 images, mean AJI: "
          f"fp32 {a32:.4f}, int8 {a8:.4f} ({a8 - a32:+.4f})")


if __name__ == "__main__":
    main()
