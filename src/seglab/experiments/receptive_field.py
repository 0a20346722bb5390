"""Claim: stacking small convolutions grows the receptive field slowly (linearly with depth),
pooling or dilation grows it fast; and the effective receptive field (Luo et al. 2016) is a
fraction of the theoretical one.

Three families of plain 3x3 ConvBNReLU stacks at each depth: ``allconv`` (stride 1), ``pooling``
(a 2x2 max-pool after every second conv) and ``dilation`` (dilations 1, 2, 4, ... doubling per
layer); theoretical RF traced by ``seglab.analysis.receptive_field``, effective RF from the input
gradient of the centre output pixel at initialisation (eval mode). Then the theoretical RF after
every conv / pool of the library's models, in execution order.
"""

from __future__ import annotations

import math
from pathlib import Path

from torch import nn

from seglab.experiments.report import Outcome, new_figure, save_figure, verdict

FAMILIES = ("allconv", "pooling", "dilation")


def settings(quick: bool) -> dict:
    if quick:
        return {"depths": [1, 2, 4, 6], "width": 8, "size": 96, "samples": 2,
                "models": {"allconv": {"width": 8}, "encdec": {"base_channels": 8}, "unet": {"base_channels": 8},
                           "deeplabv3plus": {"encoder": "resnet18", "channels": 32}}}
    return {"depths": [1, 2, 3, 4, 5, 6, 7, 8], "width": 16, "size": 256, "samples": 8,
            "models": {"allconv": {}, "encdec": {}, "unet": {}, "deeplabv3plus": {}}}


def stack(family: str, depth: int, width: int) -> nn.Module:
    """The family's network of ``depth`` 3x3 convs (see the module docstring)."""
    from seglab.models.blocks import ConvBNReLU

    layers: list[nn.Module] = []
    for i in range(depth):
        dilation = 2**i if family == "dilation" else 1
        layers.append(ConvBNReLU(3 if i == 0 else width, width, 3, dilation=dilation))
        if family == "pooling" and i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def _families(cfg: dict, log) -> dict:
    from seglab.analysis import effective_receptive_field, effective_rf_size, receptive_field

    rows = {}
    for family in FAMILIES:
        theory, effective = [], []
        for depth in cfg["depths"]:
            log(f"{family}: depth {depth}")
            net = stack(family, depth, cfg["width"])
            theory.append(receptive_field(net, size=cfg["size"]).height)
            grad = effective_receptive_field(net, size=cfg["size"], samples=cfg["samples"])
            effective.append(effective_rf_size(grad))
        rows[family] = {"theoretical": theory, "effective": effective, "last_map": grad}
    return rows


def _figure(data: dict, rows: dict, out: Path) -> str:
    fig = new_figure(12, 3.4)
    ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    for i, family in enumerate(FAMILIES):
        row = data["families"][family]
        ax1.plot(data["depths"], row["theoretical"], "o-", color=f"C{i}", label=f"{family} theoretical")
        ax1.plot(data["depths"], row["effective"], "x--", color=f"C{i}", label=f"{family} effective (95%)")
    ax1.axhline(data["size"], color="grey", lw=0.8, ls=":")
    ax1.set(yscale="log", xlabel="conv layers", ylabel="receptive field (px)", title="RF over depth (: = input side)")
    ax1.legend(fontsize=6)
    for i, (name, layers) in enumerate(data["models"].items()):
        values = [v if math.isfinite(v) else float("nan") for v in layers]
        ax2.plot(range(1, len(values) + 1), values, ".-", color=f"C{i}", label=name)
    ax2.set(yscale="log", xlabel="conv / pool op (execution order)", ylabel="theoretical RF (px)",
            title="library models (dips: parallel branches; gap: global pooling)")
    ax2.legend(fontsize=7)
    last = rows["allconv"]["last_map"]
    half = min(last.shape[0] // 2, int(data["families"]["allconv"]["theoretical"][-1]))  # +-1 theoretical RF
    c = last.shape[0] // 2
    ax3.imshow(last[c - half:c + half + 1, c - half:c + half + 1], cmap="magma")
    ax3.set(title=f"allconv depth {data['depths'][-1]}: |d centre / d input|\n(window of 2x its theoretical RF)",
            xticks=[], yticks=[])
    return save_figure(fig, out / "receptive-field.png")


def run(*, out: Path, quick: bool, log) -> Outcome:
    from seglab.analysis import receptive_field_per_layer

    cfg = settings(quick)
    rows = _families(cfg, log)
    data = {"depths": cfg["depths"], "width": cfg["width"], "size": cfg["size"], "samples": cfg["samples"],
            "families": {f: {k: v for k, v in r.items() if k != "last_map"} for f, r in rows.items()}, "models": {}}
    for name, kwargs in cfg["models"].items():
        layers = receptive_field_per_layer(name, size=512, **kwargs)
        data["models"][name] = [v if math.isfinite(v) else float("inf") for _, v in layers]
    fam = data["families"]
    t = {f: fam[f]["theoretical"][-1] for f in FAMILIES}
    e = {f: fam[f]["effective"][-1] for f in FAMILIES}
    holds = t["pooling"] > 2 * t["allconv"] and t["dilation"] > 2 * t["allconv"] and e["pooling"] > e["allconv"] \
        and e["dilation"] > e["allconv"]
    ratio_first = fam["allconv"]["effective"][1] / fam["allconv"]["theoretical"][1]
    ratio_last = e["allconv"] / t["allconv"]
    depth = cfg["depths"][-1]
    capped = [f for f in FAMILIES if t[f] > cfg["size"]]
    model_rf = ", ".join(
        f"{n} {'global' if math.isinf(v[-1]) else f'{v[-1]:.0f} px'} after {len(v)} ops" for n, v in data["models"].items()
    )
    result = (
        f"The claim {verdict(holds)}. At {depth} conv layers the theoretical receptive field is {t['allconv']:.0f} px "
        f"for the all-conv stack, {t['pooling']:.0f} px with pooling and {t['dilation']:.0f} px with doubling "
        f"dilations; the effective one (95% of the gradient mass) is {e['allconv']} px, {e['pooling']} px and "
        f"{e['dilation']} px. The all-conv stack's effective/theoretical ratio goes from {ratio_first:.2f} at depth "
        f"{cfg['depths'][1]} to {ratio_last:.2f} at depth {depth} "
        f"({'shrinking' if ratio_last < ratio_first else 'not shrinking'} with depth, as Luo et al. report it should)."
        + (f" The effective sizes of {', '.join(capped)} are capped by the {cfg['size']} px input." if capped else "")
        + f" Library models: {model_rf}."
    )
    setup = (
        f"Stacks of 3x3 ConvBNReLU layers, width {cfg['width']}, depths {cfg['depths']}: allconv (stride 1), pooling "
        f"(2x2 max-pool after every second conv), dilation (dilation 2^i at layer i). Theoretical RF traced from the "
        f"operator graph; effective RF: mean |gradient| of the centre output pixel (all channels) w.r.t. a "
        f"{cfg['size']} px input, {cfg['samples']} uniform random inputs, random init, eval mode; summarised as the "
        f"side of the smallest centred square holding 95% of it. Library models (2 classes): "
        + "; ".join(f"{n} {k or 'defaults'}" for n, k in cfg["models"].items()) + ", traced at 512 px."
    )
    figure = _figure(data, rows, out)
    return Outcome(
        name="receptive-field", title="Receptive field: depth, pooling, dilation",
        claim="Stacking 3x3 convolutions grows the receptive field linearly; pooling or dilation grows it "
              "exponentially (here: more than 2x the all-conv field at the same depth, theoretically and effectively).",
        setup=setup, result=result, holds=bool(holds), data=data, figures=[figure],
    )
