"""What is exported: a model's forward as a tuple of named tensors, on inputs padded to its stride.

seglab models pad their input to ``required_divisor`` and crop the outputs back inside
``forward`` (:mod:`seglab.models.base`); that shape arithmetic is Python control flow, which a
traced graph would freeze at the example's size. The exported graph therefore takes inputs whose
height and width are already multiples of the stride (``pad_to`` in the sidecar, where the pad is
a no-op) and the runtime pads and crops, exactly as ``forward`` does
(:func:`seglab.models.base.pad_to_multiple`). Batch, height and width stay dynamic.
"""

from __future__ import annotations

import torch
from torch import nn

from seglab.errors import SeglabError


class ExportError(SeglabError):
    """A model that cannot be exported to the asked format (one line: which and why)."""


class NamedOutputs(nn.Module):
    """``model(x)`` as a tuple in ``names`` order (a plain tensor is ``("logits",)``)."""

    def __init__(self, model: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            return (out,)
        return tuple(out[name] for name in self.names)


def output_channels(model: nn.Module, in_channels: int) -> dict[str, int]:
    """A segmentation model's eval-mode outputs, name -> channels: ``{"logits": K, **aux_heads}``."""
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, in_channels, stride(model), stride(model)))
    out = {"logits": out} if isinstance(out, torch.Tensor) else out
    return {name: int(t.shape[1]) for name, t in out.items()}


def stride(model: nn.Module) -> int:
    """The multiple an exported graph's height and width must be (the model's ``required_divisor``)."""
    return int(getattr(model, "required_divisor", 1) or 1)


def example_input(model: nn.Module, in_channels: int, size: int = 64) -> torch.Tensor:
    """A trace example: ``1 x C x S x S`` with ``S`` the smallest multiple of the stride >= ``size``."""
    s = stride(model)
    side = -(-size // s) * s
    return torch.rand(1, in_channels, side, side, generator=torch.Generator().manual_seed(0))


def check_exportable(model: nn.Module, name: str) -> None:
    """Refuse, in one line, what no exported graph can reproduce."""
    if float(getattr(model, "input_scale", 1.0)) != 1.0:
        raise ExportError(
            f"model {name!r} runs at input_scale {model.input_scale}: the resize to a size rounded in Python "
            "is not traceable with dynamic height and width; export a model trained with input_scale 1"
        )
