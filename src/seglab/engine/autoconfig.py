"""The automatic recipe: a training plan from the data's fingerprint, the budget and the device.

nnU-Net's lesson, on a budget: every choice the user did not pin (in ``--config`` or a flag) is
made here by an explicit rule from the fingerprint (:mod:`seglab.data.fingerprint`), and each
rule says what it chose and why in one line. The rules:

- **normalisation** (:mod:`seglab.data.normalize`): brightfield images are clipped per channel
  to the data set's 0.5-99.5th percentiles (stain differences carry meaning); fluorescence
  images each to their own 1-99.8th percentiles (exposure and gain vary between images and
  between training and use); both scaled to [0, 1], then z-scored with the fingerprint's
  statistics. 8-bit H&E, 16-bit fluorescence spanning a few hundred counts and 1-4 channels all
  reach the network alike.
- **modality**: objects brighter than the background are fluorescence-like (intensity, gain and
  gamma jitter); darker ones brightfield (RGB: colour and H&E stain jitter).
- **input scale**: objects wider than :data:`MAX_DIAMETER` px (cells at high magnification)
  reach the network halved (or quartered) until their median diameter fits: the same compute
  then sees 4x the area. Every rule below reasons in the network's pixels.
- **patch**: about 8 median object diameters (several objects per patch) and at least 3 of the
  largest (95th percentile) objects, a multiple of 32 in [96, 256] (512 on a GPU), no larger
  than the images.
- **batch**: about 8 x 128^2 pixels per step.
- **U-Net depth** (the classic U-Net): the shallowest of 3-5 levels whose receptive field spans
  5 large objects, so an object is seen with its neighbourhood.
- **U-Net width** from the budget: with ``--minutes``, the widest base width whose timed step on
  this device still leaves :data:`MIN_STEPS` optimizer steps; otherwise the widest whose
  training step fits the memory of the device.
- **patches per image**: an epoch (one validation) every ~1/8 of the expected steps.
- **decoder**: ``min_size`` a tenth of the median object area.

A budget too small for a model the user pinned gets a warning with what would fit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from seglab.config import TrainConfig
from seglab.data.fingerprint import Fingerprint
from seglab.models import MODELS

MIN_STEPS = 500  # optimizer steps a time-budgeted run should reach
WIDTHS = (8, 12, 16, 24, 32, 48, 64)  # candidate base widths of the classic U-Net (64 = the paper's)
USABLE_SHARE = 0.85  # share of a time budget spent in training steps (the rest: validation, saving)
PIXELS_PER_STEP = 8 * 128 * 128
RF_OBJECTS = 5  # the receptive field should span this many large objects
CPU_MEMORY_BYTES = 4 * 2**30  # activation budget of a CPU training step without a time budget
MAX_DIAMETER = 40.0  # median object diameter (px) above which the network sees the image downscaled


@dataclass
class Plan:
    """The resolved config and one line per automatic choice (and warnings)."""

    config: TrainConfig
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds_per_step: float | None = None  # the chosen model's timed step (when the plan sized it)


def expected_steps(minutes: float, seconds_per_step: float) -> float:
    """Optimizer steps a ``minutes`` budget holds at ``seconds_per_step`` (validation set aside)."""
    return USABLE_SHARE * 60.0 * minutes / seconds_per_step


def minutes_for_enough_steps(seconds_per_step: float) -> int:
    """The whole minutes a budget needs for :data:`MIN_STEPS` steps at ``seconds_per_step``."""
    return math.ceil(MIN_STEPS * seconds_per_step / USABLE_SHARE / 60.0)


def _round32(x: float) -> int:
    return int(32 * math.ceil(x / 32))


def choose_scale(fp: Fingerprint) -> float:
    """The largest power of 1/2 bringing the median object diameter to at most :data:`MAX_DIAMETER`."""
    scale = 1.0
    while fp.diameters["median"] * scale > MAX_DIAMETER and scale > 0.125:
        scale /= 2
    return scale


def scaled(fp: Fingerprint, scale: float) -> Fingerprint:
    """The fingerprint as the network sees the data at ``input_scale``: sizes in its pixels."""
    if scale == 1.0:
        return fp
    return replace(
        fp, heights=[max(1, round(h * scale)) for h in fp.heights], widths=[max(1, round(w * scale)) for w in fp.widths],
        diameters={k: v * scale for k, v in fp.diameters.items()}, areas={k: v * scale**2 for k, v in fp.areas.items()},
    )


def choose_patch(fp: Fingerprint, *, gpu: bool) -> tuple[int, str]:
    d_med, d95 = fp.diameters["median"], fp.diameters["p95"]
    cap = 512 if gpu else 256
    biggest = _round32(max(max(fp.heights), max(fp.widths)))
    want = _round32(max(8 * d_med, 3 * d95, 96))
    patch = max(32, min(want, cap, biggest))
    why = f"about 8 median diameters ({d_med:.1f} px) and 3 large ones (p95 {d95:.1f} px)"
    if patch < want:
        why += f"; capped at {'the image size' if patch == biggest else f'{cap} on this device'}"
    return patch, why


def choose_batch(patch: int) -> int:
    return int(min(16, max(2, round(PIXELS_PER_STEP / patch**2))))


def unet_receptive_field(depth: int) -> int:
    """Receptive field (px) of the classic U-Net with ``depth`` down-samplings (two 3x3 convs per level)."""
    # each encoder level adds 2 convs at stride 2^l, the bottleneck 2 at 2^depth, the decoder 2 per level
    rf = 1
    for level in range(depth):
        rf += 4 * 2**level  # two encoder convs
        rf += 2**level  # the 2x2 pooling
    rf += 4 * 2**depth  # bottleneck convs
    for level in range(depth):
        rf += 4 * 2**level  # two decoder convs at that level
    return rf


def choose_depth(fp: Fingerprint, patch: int) -> tuple[int, str]:
    need = RF_OBJECTS * fp.diameters["p95"]
    depth = next((d for d in (3, 4, 5) if unet_receptive_field(d) >= need), 5)
    depth = max(2, min(depth, int(math.log2(max(patch // 8, 4)))))  # the deepest map keeps >= 8 px
    return depth, (f"receptive field {unet_receptive_field(depth)} px >= {RF_OBJECTS} x the 95th-percentile "
                   f"object diameter ({need:.0f} px)")


def _train_step_seconds(model: torch.nn.Module, channels: int, classes: int, patch: int, batch: int,
                        device: torch.device, steps: int = 2) -> float:
    """Median wall time of an optimizer step on random data (after one warm-up step)."""
    model = model.to(device).train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, channels, patch, patch, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch, patch, patch), device=device)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        out = model(x)
        logits = out["logits"] if isinstance(out, dict) else out
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _unet(channels: int, classes: int, depth: int, width: int, aux: dict[str, int]) -> torch.nn.Module:
    from seglab.models import create_model

    return create_model("unet", in_channels=channels, num_classes=classes, depth=depth, base_channels=width,
                        **({"aux_heads": dict(aux)} if aux else {}))


def choose_width(config: TrainConfig, fp: Fingerprint, depth: int, classes: int, aux: dict[str, int],
                 device: torch.device, patch: int) -> tuple[int, str, float | None]:
    """The base width from the budget at the network's ``patch``; ``(width, why, s/step or None)``."""
    batch = config.batch_size
    if config.minutes is None:
        limit = 0.5 * torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else CPU_MEMORY_BYTES
        from seglab.analysis.memory import memory_profile

        def fits(w: int) -> bool:
            model = _unet(fp.channels, classes, depth, w, aux)
            return memory_profile(model, patch, batch, in_channels=fp.channels).activation_bytes <= limit

        width = next((w for w in reversed(WIDTHS) if fits(w)), WIDTHS[0])  # memory grows with width
        return width, f"no time budget: the widest whose training step fits {limit / 2**30:.1f} GiB", None
    timed: dict[int, float] = {}

    def steps(w: int) -> float:
        if w not in timed:
            torch.manual_seed(0)
            timed[w] = _train_step_seconds(_unet(fp.channels, classes, depth, w, aux), fp.channels, classes,
                                           patch, batch, device)
        return expected_steps(config.minutes, timed[w])

    i = WIDTHS.index(16)
    if steps(WIDTHS[i]) >= MIN_STEPS:
        while i + 1 < len(WIDTHS) and steps(WIDTHS[i + 1]) >= MIN_STEPS:
            i += 1
    else:
        while i > 0 and steps(WIDTHS[i]) < MIN_STEPS:
            i -= 1
    width = WIDTHS[i]
    enough = steps(width) >= MIN_STEPS
    why = (f"the {'widest' if enough else 'narrowest; none'} with >= {MIN_STEPS} steps in {config.minutes:g} min "
           f"on this device ({timed[width]:.2f} s/step -> ~{int(steps(width))} steps)")
    return width, why, timed[width]


def plan_config(config: TrainConfig, fp: Fingerprint, *, classes: int, aux: dict[str, int],
                device: torch.device) -> Plan:
    """Fill every choice the user did not pin (``config.model_fields_set``) from the data and budget.

    Args:
        config: the resolved config; keys in ``model_fields_set`` came from YAML or flags.
        fp: the training data's fingerprint.
        classes: output classes of the task's recipe (3 for the 3-class route).
        aux: the recipe's extra heads (name -> channels), so the timed model is the real one.
        device: where training runs (step times are measured there).
    """
    pinned = set(config.model_fields_set)
    values: dict[str, Any] = {}
    plan = Plan(config)
    gpu = device.type == "cuda"

    def choose(key: str, value: Any, why: str) -> None:
        if key not in pinned:
            values[key] = value
            plan.reasons.append(f"{key} {value}: {why}")

    modality = "fluorescence" if fp.objects_brighter else "brightfield"
    look = {True: "objects brighter than the background", False: "objects darker than the background",
            None: "no objects to compare"}[fp.objects_brighter]
    choose("modality", modality, look)
    if fp.mpp is not None:
        choose("mpp", fp.mpp, f"µm per pixel: the median of the {fp.mpp_images} of {fp.n_images} images whose metadata states it")
        if fp.mpp_disagree and "mpp" not in pinned:
            plan.warnings.append(f"the training images state resolutions up to {fp.mpp_spread:.2f}x apart; the median "
                                 f"{fp.mpp:.4g} µm/px is recorded (set mpp to choose)")
    if config.normalize == "auto":
        look_like = config.modality if "modality" in pinned else modality
        values["normalize"] = "image" if look_like == "fluorescence" else "dataset"
        if values["normalize"] == "image":
            spread = max(fp.range_spread)
            why = (f"fluorescence: each image clipped to its own p1-p99.8 and scaled to [0, 1] (exposure "
                   f"varies: the images' ranges differ up to {spread:.1f}x here), then z-scored")
        else:
            ranges = ", ".join(f"{lo:.4g}-{hi:.4g}" for lo, hi in zip(fp.clip_low, fp.clip_high, strict=True))
            why = (f"brightfield: each channel clipped to the data set's p0.5-p99.5 ({ranges} in {fp.dtype} "
                   f"units; stain differences kept) and scaled to [0, 1], then z-scored")
        plan.reasons.append(f"normalize {values['normalize']}: {why}")
    scale = 1.0 if "model_kwargs" in pinned or config.model not in MODELS else choose_scale(fp)
    net = scaled(fp, scale)  # sizes as the network sees them
    at = "" if scale == 1.0 else f" (in the network's pixels at input_scale {scale:g})"
    if fp.diameters["median"] > 0:
        patch, why = choose_patch(net, gpu=gpu)
        choose("patch", round(patch / scale), why + at)
    patch = round(values.get("patch", config.patch) * scale)  # the network's patch
    choose("batch_size", choose_batch(patch), f"about {PIXELS_PER_STEP // 1024}k pixels per step at patch {patch}{at}")
    config = config.model_copy(update=values)
    values = {}
    seconds_per_step = None
    sizable = config.model == "unet" and config.encoder is None and "model_kwargs" not in pinned
    rescale = {} if scale == 1.0 else {"input_scale": scale}
    why_scale = "" if scale == 1.0 else (f"input_scale {scale:g}: objects of median diameter "
                                         f"{fp.diameters['median']:.0f} px reach the network at {net.diameters['median']:.0f} px; ")
    if sizable and fp.diameters["median"] > 0:
        depth, why_depth = choose_depth(net, patch)
        width, why_width, seconds_per_step = choose_width(config, net, depth, classes, aux, device, patch)
        choose("model_kwargs", {"depth": depth, "base_channels": width, **rescale},
               f"{why_scale}depth: {why_depth}; width: {why_width}")
    elif rescale:
        choose("model_kwargs", {**config.model_kwargs, **rescale}, why_scale.rstrip("; "))
    plan.seconds_per_step = seconds_per_step
    if seconds_per_step and expected_steps(config.minutes, seconds_per_step) < MIN_STEPS:
        plan.warnings.append(f"even the narrowest U-Net gets only ~{expected_steps(config.minutes, seconds_per_step):.0f} "
                             f"steps in {config.minutes:g} min ({MIN_STEPS} wanted): "
                             f"--minutes {minutes_for_enough_steps(seconds_per_step)} would fit them")
    if config.minutes is not None and "patches_per_image" not in pinned and seconds_per_step:
        expected = expected_steps(config.minutes, seconds_per_step)
        per_epoch = max(8.0, expected / 8)
        ppi = int(max(1, math.ceil(per_epoch * config.batch_size / fp.n_images)))
        choose("patches_per_image", ppi, f"one validation per ~{per_epoch:.0f} steps (~1/8 of the run)")
    if config.task in ("instance", "panoptic") and fp.areas["median"] > 0 and "min_size" not in config.decoder_kwargs:
        min_size = max(3, round(0.1 * fp.areas["median"]))
        values["decoder_kwargs"] = {**config.decoder_kwargs, "min_size": min_size}
        plan.reasons.append(f"decoder min_size {min_size}: a tenth of the median object area ({fp.areas['median']:.0f} px)")
    plan.config = config.model_copy(update=values)
    return plan


def budget_warning(config: TrainConfig, model_factory: Any, channels: int, classes: int,
                   device: torch.device) -> str | None:
    """A warning when ``--minutes`` leaves a pinned model fewer than :data:`MIN_STEPS` steps."""
    if config.minutes is None:
        return None
    seconds = _train_step_seconds(model_factory(), channels, classes, config.patch, config.batch_size, device)
    steps = expected_steps(config.minutes, seconds)
    if steps >= MIN_STEPS:
        return None
    return (f"about {steps:.0f} optimizer steps fit in {config.minutes:g} min with this model "
            f"({seconds:.2f} s/step at batch {config.batch_size} x {config.patch} px); {MIN_STEPS} need "
            f"--minutes {minutes_for_enough_steps(seconds)}, or leave the model's size to seglab (no model_kwargs)")
