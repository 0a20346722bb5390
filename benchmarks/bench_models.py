"""seglab models vs segmentation_models_pytorch: training and inference speed on CPU, one run.

Models: seglab ``unet(encoder="resnet34")`` vs ``smp.Unet("resnet34")`` and seglab
``deeplabv3plus(encoder="resnet34")`` vs ``smp.DeepLabV3Plus("resnet34")``, random weights,
2 classes. Each pair runs in both memory formats (NCHW, channels_last); runs of the two
libraries are interleaved so that a shared machine's load hits both alike.

Timing is process CPU time with ``--threads 1`` by default (images per CPU-second): on a CPU
shared with other jobs wall-clock time mostly measures the neighbours; wall-clock figures are
printed too. Each figure is the fastest of ``--repeats`` runs after one warm-up.

Achieved GFLOP/s = FLOPs of the step (``FlopCounterMode``, forward + backward for training) /
time, shown as a fraction of a 2048 x 2048 float32 matmul's GFLOP/s measured in the same run.

    python benchmarks/bench_models.py                 # 8 x 3 x 256 x 256
    python benchmarks/bench_models.py --batch 2 --size 128 --repeats 2
    python benchmarks/bench_models.py --breakdown --models deeplabv3plus   # where a step's time goes

``--breakdown`` profiles one training step per library and format instead (``torch.profiler``)
and prints each op's self time summed by model part, forward and backward apart (a backward
op is charged to the part whose forward op has its autograd sequence number).
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from seglab.models import create_model

PAIRS = {
    "unet": ("Unet", {}),
    "deeplabv3plus": ("DeepLabV3Plus", {}),
}

# --breakdown: part label -> submodule path, per (library, model); smp's head includes its 4x resize.
PARTS = {
    ("seglab", "deeplabv3plus"): {"encoder": "encoder", "ASPP": "decoder.aspp", "low-level 1x1": "decoder.low",
                                  "decoder convs": "decoder.fuse", "head": "heads"},
    ("smp", "deeplabv3plus"): {"encoder": "encoder", "ASPP": "decoder.aspp", "low-level 1x1": "decoder.block1",
                               "decoder convs": "decoder.block2", "head": "segmentation_head"},
    ("seglab", "unet"): {"encoder": "encoder", "decoder": "decoder", "head": "heads"},
    ("smp", "unet"): {"encoder": "encoder", "decoder": "decoder", "head": "segmentation_head"},
}
OTHER = "other (resizes, concat, loss, optimizer)"


def build(lib: str, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if lib == "seglab":
        return create_model(name, num_classes=2, encoder="resnet34")
    import segmentation_models_pytorch as smp

    cls_name, kwargs = PAIRS[name]
    return getattr(smp, cls_name)("resnet34", encoder_weights=None, classes=2, **kwargs)


def step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool):
    if train:
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    else:

        def step() -> None:
            with torch.inference_mode():
                model(x)

    return step


def step_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool) -> int:
    meta = copy.deepcopy(model).to("meta").train(train)
    xm, ym = x.to("meta"), y.to("meta")
    with FlopCounterMode(display=False) as counter:
        if train:
            F.cross_entropy(meta(xm), ym).backward()
        else:
            with torch.no_grad():
                meta(xm)
    return int(counter.get_total_flops())


class Matmul:
    """A 2048^3 float32 matmul, timed between the model runs; ``gflops`` is the best seen."""

    def __init__(self, n: int = 2048) -> None:
        self.n, self.a, self.b, self.best, self.calls = n, torch.rand(n, n), torch.rand(n, n), float("inf"), 0
        self.a @ self.b

    def __call__(self) -> None:
        self.best = min(self.best, _timed(lambda: self.a @ self.b)[0])
        self.calls += 1

    @property
    def gflops(self) -> float:
        return 2 * self.n**3 / self.best / 1e9


def _timed(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def measure(name: str, train: bool, x: torch.Tensor, y: torch.Tensor, repeats: int, matmul: Matmul) -> dict:
    """(library, format) -> (step, FLOPs, CPU times, wall times); runs interleaved, warm-up dropped."""
    runs = {}
    for fmt in ("NCHW", "channels_last"):
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        xx = x.contiguous(memory_format=mf)
        for lib in ("seglab", "smp"):
            model = build(lib, name).to(memory_format=mf).train(train)
            runs[lib, fmt] = (step_fn(model, xx, y, train), step_flops(model, xx, y, train), [], [])
    for rep in range(repeats + 1):
        for fn, _, cpu, wall in runs.values():
            c, w = _timed(fn)
            matmul()
            if rep > 0:
                cpu.append(c)
                wall.append(w)
    return runs


def part_times(lib: str, name: str, mf: torch.memory_format, x: torch.Tensor, y: torch.Tensor) -> dict:
    """{part: [forward ms, backward ms]} of one profiled training step (after two warm-up steps)."""
    from torch.profiler import profile, record_function

    model = build(lib, name).to(memory_format=mf).train()
    step = step_fn(model, x.contiguous(memory_format=mf), y, True)
    step()
    step()
    for label, path in PARTS[lib, name].items():
        scope: list = []
        module = model.get_submodule(path)
        module.register_forward_pre_hook(lambda m, i, label=label, scope=scope: scope.append(record_function("PART:" + label).__enter__()))
        module.register_forward_hook(lambda m, i, o, scope=scope: scope.pop().__exit__(None, None, None))
    with profile() as prof:
        step()
    events = prof.events()
    seq_part, times = {}, {label: [0.0, 0.0] for label in [*PARTS[lib, name], OTHER]}

    def ancestor(e, prefix: str):
        while e is not None and not e.name.startswith(prefix):
            e = e.cpu_parent
        return e

    for e in events:
        part = ancestor(e, "PART:")
        if part is not None and e.sequence_nr >= 0:
            seq_part.setdefault(e.sequence_nr, part.name[5:])
    for e in events:
        part, node = ancestor(e, "PART:"), ancestor(e, "autograd::engine::evaluate_function")
        if part is not None:
            times[part.name[5:]][0] += e.self_cpu_time_total / 1e3
        elif node is not None:
            times[seq_part.get(node.sequence_nr, OTHER)][1] += e.self_cpu_time_total / 1e3
        elif not e.name.startswith("PART:"):
            times[OTHER][0] += e.self_cpu_time_total / 1e3
    return times


def breakdown(names: list[str], x: torch.Tensor, y: torch.Tensor) -> None:
    """Print the per-part forward / backward time of one training step, seglab next to smp."""
    for name in names:
        for fmt, mf in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
            t = {lib: part_times(lib, name, mf, x, y) for lib in ("seglab", "smp")}
            print(f"\n{name} train step, {fmt}, ms (profiler self time)   seglab fwd    bwd  total |  smp fwd    bwd  total")
            for label in t["seglab"]:
                (a, b), (c, d) = t["seglab"][label], t["smp"][label]
                print(f"  {label:44s}{a:9.1f}{b:7.1f}{a + b:7.1f} | {c:8.1f}{d:7.1f}{c + d:7.1f}")
            tot = {lib: sum(sum(v) for v in t[lib].values()) for lib in t}
            print(f"  {'step':44s}{'':16s}{tot['seglab']:7.1f} | {'':15s}{tot['smp']:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="unet,deeplabv3plus")
    parser.add_argument("--breakdown", action="store_true", help="profile one training step by model part instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.breakdown:
        x = torch.rand(args.batch, 3, args.size, args.size)
        breakdown(args.models.split(","), x, torch.randint(0, 2, (args.batch, args.size, args.size)))
        return
    print(f"CPU, {args.threads} thread(s), batch {args.batch} x 3 x {args.size} x {args.size}, "
          f"best of {args.repeats}; load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    matmul = Matmul()
    results = []
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 2, (args.batch, args.size, args.size))
    for name in args.models.split(","):
        for train in (True, False):
            results.append((name, train, measure(name, train, x, y, args.repeats, matmul)))
    peak = matmul.gflops
    print(f"matmul 2048^3 float32 (best of {matmul.calls} runs between the model runs): {peak:.1f} GFLOP/s\n")
    header = f"{'model':<15}{'step':<7}{'library':<8}{'format':<15}{'img/CPU-s':>10}{'img/wall-s':>11}{'GFLOP':>8}{'GFLOP/s':>9}{'of matmul':>10}{'seglab/smp':>11}"
    print(header)
    print("-" * len(header))
    for name, train, runs in results:
        for fmt in ("NCHW", "channels_last"):
            for lib in ("seglab", "smp"):
                _, flops, cpu, wall = runs[lib, fmt]
                best = min(cpu)
                ratio = min(runs["smp", fmt][2]) / best if lib == "seglab" else float("nan")
                ratio_s = f"{ratio:.2f}x" if lib == "seglab" else ""
                gflops = flops / best / 1e9
                print(f"{name:<15}{'train' if train else 'infer':<7}{lib:<8}{fmt:<15}{args.batch / best:>10.2f}"
                      f"{args.batch / min(wall):>11.2f}{flops / 1e9:>8.1f}{gflops:>9.1f}{gflops / peak:>10.0%}{ratio_s:>11}")
        best_seglab = min(min(runs["seglab", f][2]) for f in ("NCHW", "channels_last"))
        best_smp = min(min(runs["smp", f][2]) for f in ("NCHW", "channels_last"))
        smp_default = min(runs["smp", "NCHW"][2])
        print(f"{'':<22}best seglab vs best smp: {best_smp / best_seglab:.2f}x; vs smp default (NCHW): {smp_default / best_seglab:.2f}x")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
