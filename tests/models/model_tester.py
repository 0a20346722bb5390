"""The one model tester every architecture's test file subclasses.

A subclass sets ``name`` (a key of ``seglab.models.MODELS``) and ``kwargs`` (a tiny config) and
inherits every check: output size on 64 x 64 and odd 70 x 90 inputs, gradients reaching every
parameter, 1 / 3 / 4 input channels, state_dict round trip, ``torch.export`` agreeing with
eager, and auxiliary heads.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from seglab.models import create_model


def total(out: torch.Tensor | dict) -> torch.Tensor:
    """Sum of every output (nested lists included), so backward touches every head."""
    if isinstance(out, torch.Tensor):
        return out.float().square().mean()
    parts = out.values() if isinstance(out, dict) else out
    return sum(total(p) for p in parts)


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so that copying them is actually tested."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def copy_in_order(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Copy every parameter and buffer of ``src`` into ``dst``, pairing them in registration order.

    Fails unless both hold the same number of tensors with pairwise equal shapes.
    """
    src_state, dst_state = src.state_dict(), dst.state_dict()
    assert len(src_state) == len(dst_state), (len(src_state), len(dst_state))
    for (ks, vs), (kd, vd) in zip(src_state.items(), dst_state.items(), strict=True):
        assert vs.shape == vd.shape, (ks, kd)
    dst.load_state_dict(dict(zip(dst_state, (v.clone() for v in src_state.values()), strict=True)))


class ModelTester:
    name: ClassVar[str]
    kwargs: ClassVar[dict[str, Any]] = {}
    num_classes: ClassVar[int] = 3

    def build(self, **overrides: Any) -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(self.name, num_classes=self.num_classes, **{**self.kwargs, **overrides})

    @pytest.mark.parametrize("size", [(64, 64), (70, 90)])
    def test_output_keeps_input_size(self, size: tuple[int, int]) -> None:
        model = self.build().eval()
        with torch.no_grad():
            out = model(torch.rand(2, 3, *size))
        assert out.shape == (2, self.num_classes, *size)
        assert torch.isfinite(out).all()

    def test_backward_reaches_every_parameter(self) -> None:
        model = self.build().train()
        total(model(torch.rand(2, 3, 70, 90))).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"no finite gradient for {missing}"
        assert any(p.grad.abs().sum() > 0 for p in model.parameters())

    @pytest.mark.parametrize("in_channels", [1, 4])
    def test_input_channels(self, in_channels: int) -> None:
        model = self.build(in_channels=in_channels).eval()
        with torch.no_grad():
            out = model(torch.rand(1, in_channels, 64, 64))
        assert out.shape == (1, self.num_classes, 64, 64)

    def test_state_dict_round_trip(self, tmp_path) -> None:
        model = self.build().eval()
        randomize_batchnorm(model)  # non-trivial BN statistics must travel too
        torch.save(model.state_dict(), tmp_path / "w.pt")
        torch.manual_seed(123)
        other = create_model(self.name, num_classes=self.num_classes, **self.kwargs).eval()
        other.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(model(x), other(x))

    def test_export_matches_eager(self) -> None:
        model = self.build().eval()
        x = torch.rand(1, 3, 70, 90)
        exported = torch.export.export(model, (x,)).module()
        with torch.no_grad():
            torch.testing.assert_close(exported(x), model(x))

    def test_aux_heads(self) -> None:
        model = self.build(aux_heads={"embedding": 4, "seediness": 1}).eval()
        with torch.no_grad():
            out = model(torch.rand(2, 3, 70, 90))
        assert set(out) == {"logits", "embedding", "seediness"}
        assert out["logits"].shape == (2, self.num_classes, 70, 90)
        assert out["embedding"].shape == (2, 4, 70, 90)
        assert out["seediness"].shape == (2, 1, 70, 90)
