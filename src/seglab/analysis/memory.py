"""Where the memory of a training step goes, and how many FLOPs a forward pass costs.

``memory_profile`` runs one forward + backward on the ``meta`` device (shapes only, so a model
that would not fit in RAM can still be profiled) and records, with
``torch.autograd.graph.saved_tensors_hooks``, every tensor autograd keeps for the backward
pass. Those saved activations, not the parameters, are what a full-resolution network runs
out of: they grow with ``batch x H x W x depth x width``, the parameters do not grow at all.

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


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
