"""Where the memory of a training step goes, and how many FLOPs a forward pass costs.

``memory_profile`` runs one forward + backward on the ``meta`` device (shapes only, so a model
that would not fit in RAM can still be profiled) and records, with
``torch.autograd.graph.saved_tensors_hooks``, every tensor autograd keeps for the backward
pass. Those saved activations, not the parameters, are what a full-resolution network runs
out of: they grow with ``batch x H x W x depth x width``, the parameters do not grow at all.

``measured_peak_bytes`` runs the same step for real on the CPU under ``torch.profiler`` with
``profile_memory=True`` and replays the allocator's records (bytes allocated minus bytes freed by
each operator, in the order the operators start): the peak of that running sum is the most the
step held at once, parameters and input excluded. Buffers an operator allocates and frees
within itself (a convolution's workspace) net to zero and are not seen.

``budget_side`` fits bytes = a + b * pixels to such measurements and solves for the square
input side at which a memory budget runs out: an extrapolation, valid as long as memory stays
linear in the pixel count (it does for fully convolutional networks at a fixed batch).

``count_flops`` uses ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add = 2 FLOPs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class MemoryReport:
    """Bytes of one training step (float32 unless the model says otherwise).

    Attributes:
        parameter_bytes: the weights (gradients take as much again; Adam's state twice that).
        buffer_bytes: BN running statistics and other buffers.
        activation_bytes: tensors saved for backward (unique storages, parameters and input excluded).
        input_bytes: the input batch.
    """

    parameter_bytes: int
    buffer_bytes: int
    activation_bytes: int
    input_bytes: int

    @property
    def gradient_bytes(self) -> int:
        return self.parameter_bytes

    @property
    def activation_to_parameter_ratio(self) -> float:
        return self.activation_bytes / max(self.parameter_bytes, 1)


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _sum_outputs(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.sum()
    parts = out.values() if isinstance(out, dict) else out
    return sum(_sum_outputs(p) for p in parts)


def _meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).to("meta")


def memory_profile(
    model: torch.nn.Module, input_size: int | tuple[int, int], batch: int = 1, *, in_channels: int | None = None
) -> MemoryReport:
    """Parameter vs activation memory of one training step of ``model``.

    Args:
        model: any module taking ``N x C x H x W`` (left untouched: a meta-device copy is run).
        input_size: ``H`` or ``(H, W)``.
        batch: batch size ``N``.
        in_channels: ``C``; read from the first conv when not given.
    Returns:
        A ``MemoryReport``.
    """
    meta = _meta_copy(model).train()
    c = in_channels or next(m.in_channels for m in meta.modules() if isinstance(m, torch.nn.Conv2d))
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    x = torch.zeros(batch, c, h, w, device="meta", requires_grad=False)
    excluded = {_storage_key(t) for t in [*meta.parameters(), *meta.buffers(), x]}
    saved: dict[int, int] = {}
    keep: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in excluded:
            saved[key] = t.untyped_storage().nbytes()
            keep.append(t)  # keep alive: storage keys stay unique until the step ends
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = _sum_outputs(meta(x))
    loss.backward()
    return MemoryReport(
        parameter_bytes=sum(p.numel() * p.element_size() for p in meta.parameters()),
        buffer_bytes=sum(b.numel() * b.element_size() for b in meta.buffers()),
        activation_bytes=sum(saved.values()),
        input_bytes=x.numel() * x.element_size(),
    )


def count_flops(model: torch.nn.Module, input_size: int | tuple[int, int], batch: int = 1, *, in_channels: int | None = None) -> int:
    """FLOPs of one eval-mode forward pass (``FlopCounterMode``; MACs = FLOPs / 2).

    Args:
        model: any module taking ``N x C x H x W`` (a meta-device copy is run).
        input_size: ``H`` or ``(H, W)``.
        batch: batch size ``N``.
        in_channels: ``C``; read from the first conv when not given.
    """
    meta = _meta_copy(model).eval()
    c = in_channels or next(m.in_channels for m in meta.modules() if isinstance(m, torch.nn.Conv2d))
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta(torch.zeros(batch, c, h, w, device="meta"))
    return int(counter.get_total_flops())


def measured_peak_bytes(
    model: torch.nn.Module, input_size: int | tuple[int, int], batch: int = 1, *, in_channels: int | None = None
) -> int:
    """Peak bytes the CPU allocator held during one real forward + backward of ``model``.

    Measured with ``torch.profiler`` (``profile_memory=True``): each operator's own allocations
    minus its frees, summed in the order the operators start; the maximum of the running sum.
    Parameters, buffers and the input exist before the step and are not counted; gradients of
    the parameters are (they are allocated during the backward).

    Args:
        model: module taking ``N x C x H x W`` (run in training mode on a copy, on the CPU).
        input_size: ``H`` or ``(H, W)``.
        batch: batch size ``N``.
        in_channels: ``C``; read from the first conv when not given.
    """
    from torch.profiler import ProfilerActivity, profile

    net = copy.deepcopy(model).cpu().train()
    c = in_channels or next(m.in_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    x = torch.rand(batch, c, h, w)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _sum_outputs(net(x)).backward()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return int(peak)


def budget_side(sides: list[int], nbytes: list[float], budget: float) -> float:
    """Square input side at which ``budget`` bytes run out, from a least-squares line in pixels.

    Fits ``nbytes = a + b * side**2`` to the measurements and solves ``a + b * side**2 = budget``.
    Returns ``inf`` when the fitted slope is not positive.
    """
    import numpy as np

    pixels = np.asarray(sides, dtype=float) ** 2
    slope, intercept = np.polyfit(pixels, np.asarray(nbytes, dtype=float), 1)
    if slope <= 0:
        return float("inf")
    return float(np.sqrt(max(budget - intercept, 0.0) / slope))


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
