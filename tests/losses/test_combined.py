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


def test_per_term_options_reach_their_term_only():
    logits, target = batch()
    w = torch.tensor([0.5, 1.0, 4.0])
    loss = create_loss("ce+dice", mode="multiclass", ignore_index=255, ce={"weight": w.tolist()}, dice={"smooth": 1.0})
    value = loss(logits, target)
    ce = torch.nn.functional.cross_entropy(logits, target, weight=w, ignore_index=255)
    dice = DiceLoss(mode="multiclass", ignore_index=255, smooth=1.0)(logits, target)
    torch.testing.assert_close(loss.losses[0](logits, target), ce)
    torch.testing.assert_close(value, ce + dice)
    assert loss.losses[1].weight is None  # nested: not given to dice
    flat = create_loss("ce+dice", mode="multiclass", ignore_index=255, weight=w.tolist())
    torch.testing.assert_close(flat.losses[1].weight, w)  # flat: every term that takes it
    both = create_loss("dice+0.5*dice", mode="multiclass", smooth=2.0, dice_2={"smooth": 0.0})
    assert (both.losses[0].smooth, both.losses[1].smooth) == (2.0, 0.0)  # per-term wins over flat


def test_check_loss_kwargs_lists_the_valid_keys_in_one_line():
    from seglab.losses import check_loss_kwargs

    with pytest.raises(ConfigError) as err:
        check_loss_kwargs("ce+dice", {"gama": 2, "ce": {"smooth": 1}})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("loss_kwargs gama, ce.smooth not accepted by 'ce+dice'")
    assert msg.endswith("term names ce, dice; options average, eps, log_loss, per_image, pos_weight, smooth, weight")
    assert "ignore_index" not in msg.split("valid:")[1]  # training sets it
    with pytest.raises(ConfigError, match="ignore_index"):
        check_loss_kwargs("ce", {"ignore_index": 0})
    with pytest.raises(ConfigError, match="focal must map"):
        check_loss_kwargs("focal", {"focal": 3})
    assert check_loss_kwargs("focal", {"gamma": 3}) == {"gamma": 3}
