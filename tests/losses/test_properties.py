"""Properties every loss must have: perfect prediction ~0, ignored pixels inert, finite gradients
with absent classes, class weights scale their term, misuse gives a clear error."""

from __future__ import annotations

import pytest
import torch

from seglab.errors import ConfigError
from seglab.losses import (
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    GeneralizedDiceLoss,
    JaccardLoss,
    LovaszLoss,
    TverskyLoss,
)

torch.manual_seed(0)
ALL = [
    CrossEntropyLoss,
    DiceLoss,
    JaccardLoss,
    GeneralizedDiceLoss,
    FocalLoss,
    TverskyLoss,
    LovaszLoss,
]
REGION = [DiceLoss, JaccardLoss, GeneralizedDiceLoss, TverskyLoss, LovaszLoss]
MODES = ["binary", "multiclass", "multilabel"]


def make(mode: str, n: int = 2, c: int = 3, size: int = 8):
    """Random target of the mode's layout and logits of the mode's layout."""
    if mode == "multiclass":
        target = torch.randint(0, c, (n, size, size))
        return torch.randn(n, c, size, size), target
    channels = 1 if mode == "binary" else c
    target = (torch.rand(n, channels, size, size) > 0.5).float()
    return torch.randn(n, channels, size, size), target


def perfect_logits(mode: str, target: torch.Tensor, c: int = 3) -> torch.Tensor:
    if mode == "multiclass":
        onehot = torch.nn.functional.one_hot(target, c).permute(0, 3, 1, 2).float()
    else:
        onehot = target.float()
    return (onehot * 2 - 1) * 30.0


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("mode", MODES)
def test_perfect_prediction_is_about_zero(cls, mode):
    _, target = make(mode)
    loss = cls(mode=mode)(perfect_logits(mode, target), target)
    assert 0.0 <= loss.item() < 1e-4
    if cls in REGION:  # a wrong prediction is far from zero
        assert cls(mode=mode)(-perfect_logits(mode, target), target).item() > 0.5


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("mode", MODES)
def test_ignored_pixels_change_nothing(cls, mode):
    logits, target = make(mode)
    ignored = torch.zeros_like(target, dtype=torch.bool)
    ignored[0, ..., :3, :] = True
    ignored[1, ..., 5, 2:6] = True
    target = target.masked_fill(ignored, 255)
    loss_fn = cls(mode=mode, ignore_index=255)
    logits = logits.requires_grad_(True)
    loss = loss_fn(logits, target)
    (grad,) = torch.autograd.grad(loss, logits)
    pixel_mask = ignored if mode != "multiclass" else ignored[:, None].expand_as(logits)
    if mode == "binary":
        pixel_mask = pixel_mask.expand_as(logits)
    garbage = (
        logits.detach().masked_fill(pixel_mask, 0) + pixel_mask * torch.randn_like(logits) * 50
    )
    torch.testing.assert_close(loss_fn(garbage, target), loss.detach(), atol=1e-6, rtol=1e-6)
    assert grad[pixel_mask].abs().max().item() == 0.0
    assert grad[~pixel_mask].abs().max().item() > 0.0


@pytest.mark.parametrize("cls", ALL)
def test_absent_class_keeps_gradients_finite(cls):
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    target = torch.randint(0, 2, (2, 8, 8))  # classes 2 and 3 absent from the batch
    cls(mode="multiclass")(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    ml_target = torch.zeros(2, 4, 8, 8)  # every label absent
    logits.grad = None
    loss = cls(mode="multilabel")(logits, ml_target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("cls", [DiceLoss, JaccardLoss, TverskyLoss])
@pytest.mark.parametrize("mode", ["multiclass", "multilabel"])
def test_class_weight_scales_its_term(cls, mode):
    logits, target = make(mode)
    if mode == "multiclass":
        target[:, 0, :3] = torch.arange(3)
    else:
        target[:, :, 0, 0] = 1
    plain = cls(mode=mode)(logits, target)
    terms = [cls(mode=mode, weight=torch.eye(3)[c])(logits, target) for c in range(3)]
    torch.testing.assert_close(sum(terms), plain)
    doubled = cls(mode=mode, weight=torch.tensor([1.0, 2.0, 1.0]))(logits, target)
    torch.testing.assert_close(doubled, plain + terms[1])


@pytest.mark.parametrize("cls", [CrossEntropyLoss, FocalLoss])
def test_multilabel_class_weight_scales_its_term(cls):
    logits, target = make("multilabel")
    plain = cls(mode="multilabel")(logits, target)
    terms = [cls(mode="multilabel", weight=torch.eye(3)[c])(logits, target) for c in range(3)]
    torch.testing.assert_close(sum(terms), plain)


BAD = [
    ("multiclass", (2, 3, 8, 8), (2, 1, 8, 8), torch.long, "N x H x W"),
    ("multiclass", (2, 3, 8, 8), (2, 8, 8), torch.float32, "integer"),
    ("multiclass", (2, 1, 8, 8), (2, 8, 8), torch.long, "binary"),
    ("multiclass", (2, 3, 8, 8), (2, 8, 9), torch.long, "N x H x W"),
    ("multiclass", (2, 3, 8), (2, 8), torch.long, "N x C x H x W"),
    ("binary", (2, 3, 8, 8), (2, 8, 8), torch.float32, "N x 1 x H x W"),
    ("binary", (2, 1, 8, 8), (2, 3, 8, 8), torch.float32, "N x H x W"),
    ("multilabel", (2, 3, 8, 8), (2, 8, 8), torch.float32, "N x C x H x W"),
    ("multilabel", (3, 3, 8, 8), (2, 3, 8, 8), torch.float32, "N x C x H x W"),
]


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize(("mode", "logit_shape", "target_shape", "dtype", "words"), BAD)
def test_wrong_shapes_give_clear_errors(cls, mode, logit_shape, target_shape, dtype, words):
    target = torch.zeros(target_shape, dtype=dtype)
    with pytest.raises(ValueError, match=words) as info:
        cls(mode=mode)(torch.randn(logit_shape), target)
    assert isinstance(info.value, ConfigError)
    assert mode in str(info.value)


@pytest.mark.parametrize("cls", ALL)
def test_wrong_values_give_clear_errors(cls):
    logits = torch.randn(2, 1, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))  # class indices given to a binary loss
    with pytest.raises(ValueError, match="multiclass"):
        cls(mode="binary")(logits, target)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cls(mode="multiclass")(torch.randn(2, 3, 8, 8), target + 1)
    with pytest.raises(ConfigError, match="binary, multiclass, multilabel"):
        cls(mode="softmax")
    with pytest.raises(TypeError):
        cls()  # mode is required and keyword-only


@pytest.mark.parametrize("cls", [CrossEntropyLoss, DiceLoss, JaccardLoss, TverskyLoss, FocalLoss])
def test_weight_length_is_checked(cls):
    loss = cls(mode="multiclass", weight=torch.ones(4))
    with pytest.raises(ValueError, match="4 .*3 classes|3 classes.*4"):
        loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)))


def test_weight_rejected_in_binary_mode():
    with pytest.raises(ConfigError, match="binary"):
        DiceLoss(mode="binary", weight=torch.ones(1))


def test_losses_move_with_module_to():
    loss = DiceLoss(mode="multiclass", weight=torch.ones(3)).to(torch.float64)
    out = loss(torch.randn(1, 3, 4, 4, dtype=torch.float64), torch.randint(0, 3, (1, 4, 4)))
    assert out.dtype == torch.float64
