"""CombinedLoss and the create_loss factory: sums equal their parts, names resolve, errors list choices."""

from __future__ import annotations

import pytest
import torch

from seglab.errors import ConfigError
from seglab.losses import (
    LOSSES,
    CombinedLoss,
    CrossEntropyLoss,
    DiceLoss,
    JaccardLoss,
    create_loss,
)

torch.manual_seed(0)


def batch():
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, :2] = 255
    return logits, target


def test_combined_is_weighted_sum_and_logs_components():
    logits, target = batch()
    ce = CrossEntropyLoss(mode="multiclass", ignore_index=255)
    jac = JaccardLoss(mode="multiclass", ignore_index=255)
    combined = CombinedLoss({"ce": ce, "jaccard": jac}, weights=[1.0, 0.5])
    total = combined(logits, target)
    expected = ce(logits, target) + 0.5 * jac(logits, target)
    torch.testing.assert_close(total, expected)
    assert set(combined.last_components) == {"ce", "jaccard"}
    assert combined.last_components["jaccard"] == pytest.approx(jac(logits, target).item())
    assert all(isinstance(v, float) for v in combined.last_components.values())


def test_combined_list_names_and_default_weights():
    logits, target = batch()
    parts = [
        DiceLoss(mode="multiclass", ignore_index=255),
        DiceLoss(mode="multiclass", ignore_index=255, smooth=1.0),
    ]
    combined = CombinedLoss(parts)
    torch.testing.assert_close(
        combined(logits, target), parts[0](logits, target) + parts[1](logits, target)
    )
    assert list(combined.last_components) == ["dice", "dice_2"]


def test_combined_rejects_mismatches():
    ce = CrossEntropyLoss(mode="multiclass")
    with pytest.raises(ConfigError, match="weights"):
        CombinedLoss([ce, DiceLoss(mode="multiclass")], weights=[1.0])
    with pytest.raises(ConfigError, match="mode"):
        CombinedLoss([ce, DiceLoss(mode="binary")])
    with pytest.raises(ConfigError, match="at least one"):
        CombinedLoss([])


def test_create_loss_from_spec():
    logits, target = batch()
    loss = create_loss("ce+dice", mode="multiclass", ignore_index=255)
    assert isinstance(loss, CombinedLoss)
    expected = CrossEntropyLoss(mode="multiclass", ignore_index=255)(logits, target) + DiceLoss(
        mode="multiclass", ignore_index=255
    )(logits, target)
    torch.testing.assert_close(loss(logits, target), expected)

    loss = create_loss("ce + 0.5*jaccard", mode="multiclass", ignore_index=255)
    expected = CrossEntropyLoss(mode="multiclass", ignore_index=255)(
        logits, target
    ) + 0.5 * JaccardLoss(mode="multiclass", ignore_index=255)(logits, target)
    torch.testing.assert_close(loss(logits, target), expected)
    assert loss.weights == [1.0, 0.5]

    single = create_loss("dice", mode="multiclass", smooth=1.0)
    assert isinstance(single, DiceLoss) and single.smooth == 1.0


def test_create_loss_every_name_and_kwarg_routing():
    assert set(LOSSES) == {
        "ce",
        "dice",
        "jaccard",
        "generalized_dice",
        "focal",
        "tversky",
        "lovasz",
    }
    logits, target = batch()
    spec = "+".join(LOSSES)
    # gamma only exists on focal, weight not on generalized_dice/lovasz: each goes where it fits
    loss = create_loss(spec, mode="multiclass", ignore_index=255, gamma=1.0, weight=torch.ones(3))
    value = loss(logits, target)
    assert torch.isfinite(value)
    assert list(loss.last_components) == list(LOSSES)
    assert loss.losses[list(LOSSES).index("focal")].gamma == 1.0


def test_create_loss_errors():
    with pytest.raises(ConfigError, match="unknown loss 'bce'; valid choices: ce, dice"):
        create_loss("ce+bce", mode="multiclass")
    with pytest.raises(ConfigError, match="option"):
        create_loss("ce+dice", mode="multiclass", smoth=1.0)
    with pytest.raises(ConfigError, match="weight"):
        create_loss("ce+abc*dice", mode="multiclass")
    with pytest.raises(ConfigError):
        create_loss("ce+", mode="multiclass")
