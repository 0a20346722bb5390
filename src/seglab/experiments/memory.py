"""Claim: an all-convolution network runs out of memory although it has few parameters: the
feature maps of a training step, not the weights, take the memory.

For each model and input side: the parameter bytes, the bytes autograd saves for the backward
(``seglab.analysis.memory_profile``, on the meta device, exact and free at any size) and the
allocator's peak of a real CPU step (``measured_peak_bytes``, torch's profiler) at the sides that
fit the machine. The side at which a budget runs out is extrapolated from a line fitted to the
measured peaks against the pixel count.
"""

from __future__ import annotations

from pathlib import Path

from seglab.experiments.report import Outcome, new_figure, save_figure, verdict

BUDGET = 8 * 2**30
MiB = 2**20


def settings(quick: bool) -> dict:
    if quick:
        return {
            "models": {
                "allconv": {"depth": 8, "width": 16},
                "encdec": {"depth": 3, "base_channels": 8},
                "unet": {"depth": 3, "base_channels": 8},
                "deeplabv3plus": {"encoder": "resnet18", "channels": 32},
            },
            "sides": [64, 128, 256, 512], "measured_sides": [64, 96, 128],
        }
    return {
        "models": {
            "allconv": {"depth": 8, "width": 32},
            "encdec": {"depth": 4, "base_channels": 32},
            "unet": {"depth": 4, "base_channels": 64},
            "deeplabv3plus": {"encoder": "resnet50"},
        },
        "sides": [128, 256, 512, 768, 1024], "measured_sides": [128, 192, 256],
    }


def _profile_model(name: str, kwargs: dict, cfg: dict, log) -> dict:
    from seglab.analysis import budget_side, measured_peak_bytes, memory_profile
    from seglab.models import create_model

    model = create_model(name, num_classes=2, **kwargs)
    saved = [memory_profile(model, side, 1) for side in cfg["sides"]]
    peaks = []
    for side in cfg["measured_sides"]:
        log(f"{name}: real CPU step at {side} px")
        peaks.append(measured_peak_bytes(model, side, 1))
    return {
        "kwargs": kwargs,
        "parameter_bytes": saved[0].parameter_bytes,
        "saved_bytes": [r.activation_bytes for r in saved],
        "peak_bytes": peaks,
        "budget_side": budget_side(cfg["measured_sides"], peaks, BUDGET),
        "budget_side_from_saved": budget_side(cfg["sides"], [r.activation_bytes for r in saved], BUDGET),
    }


def _figure(data: dict, cfg: dict, out: Path) -> str:
    fig = new_figure(9, 3.6)
    ax1, ax2 = fig.subplots(1, 2)
    for i, (name, row) in enumerate(data["models"].items()):
        color = f"C{i}"
        ax1.plot(cfg["sides"], [b / MiB for b in row["saved_bytes"]], "o-", color=color, label=f"{name} activations")
        ax1.plot(cfg["measured_sides"], [b / MiB for b in row["peak_bytes"]], "x--", color=color)
        ax1.axhline(row["parameter_bytes"] / MiB, color=color, lw=0.8, ls=":")
        ratio = [b / row["parameter_bytes"] for b in row["saved_bytes"]]
        ax2.plot(cfg["sides"], ratio, "o-", color=color, label=name)
    ax1.set(xscale="log", yscale="log", xlabel="input side (px), batch 1", ylabel="MiB",
            title="saved for backward (o), measured peak (x), params (:)")
    ax1.legend(fontsize=7)
    ax2.axhline(10, color="grey", lw=0.8, ls="--")
    ax2.set(xscale="log", yscale="log", xlabel="input side (px)", ylabel="activations / parameters",
            title="activation to parameter memory")
    ax2.legend(fontsize=7)
    return save_figure(fig, out / "memory.png")


def _paragraph(data: dict, cfg: dict, holds: bool) -> str:
    side = 512 if 512 in cfg["sides"] else cfg["sides"][-1]
    i = cfg["sides"].index(side)
    parts = []
    for name, row in data["models"].items():
        parts.append(
            f"{name}: {row['parameter_bytes'] / MiB:.2f} MiB of parameters, {row['saved_bytes'][i] / MiB:.0f} MiB "
            f"saved for backward at {side} px ({row['saved_bytes'][i] / row['parameter_bytes']:.0f}x), "
            f"an {BUDGET / 2**30:.0f} GiB budget runs out near {row['budget_side']:.0f} px "
            f"(extrapolated from the measured peaks; {row['budget_side_from_saved']:.0f} px from the saved tensors alone)"
        )
    allconv = data["models"]["allconv"]
    peaks = ", ".join(f"{n} {r['peak_bytes'][-1] / MiB:.0f} MiB" for n, r in data["models"].items())
    return (
        f"The claim {verdict(holds)}: for allconv the tensors saved for backward at {side} px are "
        f"{allconv['saved_bytes'][i] / allconv['parameter_bytes']:.0f}x its parameter memory "
        f"(the test is > 10x). " + "; ".join(parts) + ". The measured peaks of real CPU steps were "
        f"{peaks} at "
        f"{cfg['measured_sides'][-1]} px."
    )


def run(*, out: Path, quick: bool, log) -> Outcome:
    cfg = settings(quick)
    data = {"sides": cfg["sides"], "measured_sides": cfg["measured_sides"], "budget_bytes": BUDGET, "models": {}}
    for name, kwargs in cfg["models"].items():
        data["models"][name] = _profile_model(name, kwargs, cfg, log)
    allconv = data["models"]["allconv"]
    side = 512 if 512 in cfg["sides"] else cfg["sides"][-1]
    holds = allconv["saved_bytes"][cfg["sides"].index(side)] > 10 * allconv["parameter_bytes"]
    setup = (
        "Models (random init, 3 input channels, 2 classes, batch 1, float32, training mode): "
        + "; ".join(f"{n} {k}" for n, k in cfg["models"].items())
        + f". Saved-for-backward bytes (torch.autograd.graph.saved_tensors_hooks, unique storages, parameters and "
        f"input excluded) on the meta device at {cfg['sides']} px; the allocator's peak of a real CPU forward + "
        f"backward measured with torch.profiler (profile_memory=True: each operator's allocations minus frees in "
        f"start order; buffers freed inside one operator are not seen) at {cfg['measured_sides']} px, which the "
        f"shared 2-core machine runs in seconds. The {BUDGET / 2**30:.0f} GiB sides are extrapolated from a line "
        "fitted to bytes against pixels, not measured."
    )
    figure = _figure(data, cfg, out)
    return Outcome(
        name="memory", title="Memory: feature maps, not weights",
        claim="An all-convolution network runs out of memory although it has few parameters: the activations "
              "of a training step take more than 10x the parameter memory at 512 px.",
        setup=setup, result=_paragraph(data, cfg, holds), holds=bool(holds), data=data, figures=[figure],
    )
