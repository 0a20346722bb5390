"""EmbeddingModule: one training step per route (finite loss, gradients reach the embedding head),
the route's loss equals the loss class applied by hand, validation decodes through DECODERS."""

import numpy as np
import pytest
import torch

from seglab.engine.embedding_module import EmbeddingModule, check_route_kwargs
from seglab.errors import ConfigError
from seglab.losses import CrossEntropyLoss, DiscriminativeLoss
from seglab.models import create_model
from seglab.spec.recipes import make_recipe

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),  # raised inside Lightning
]


def _batch(n=2, size=32):
    from seglab.data.synthetic import synth_tile

    images, insts = zip(*(synth_tile(size, seed=s) for s in range(n)), strict=True)
    inst = torch.from_numpy(np.stack(insts).astype(np.int64))
    fg = (inst > 0).long()
    fg[:, :, -3:] = 255  # a padded strip, as the data set marks it
    inst[:, :, -3:] = 0
    image = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return {"image": image, "instances": inst, "foreground": fg}


def _module(method, **kw):
    torch.manual_seed(0)
    recipe = make_recipe("instance", method, embedding_dim=4)
    model = create_model("unet", in_channels=3, num_classes=2, depth=2, base_channels=4, aux_heads=dict(recipe.aux_heads))
    meta = {"preprocessing": {"mean": [0.5] * 3, "std": [0.25] * 3},
            "decoder": {"name": recipe.decoder, "kwargs": {}}}
    return EmbeddingModule(model=model, recipe=recipe, loss=CrossEntropyLoss(mode="multiclass", ignore_index=255),
                           meta=meta, **kw)


@pytest.mark.parametrize("method", ["embedding", "seeds", "recurrent"])
def test_training_step_reaches_embedding_head(method):
    module = _module(method, pair_pixels=64)
    loss = module.training_step(_batch(), 0)
    assert torch.isfinite(loss)
    loss.backward()
    grad = module.model.heads.convs["embedding"].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    if method == "seeds":
        assert module.model.heads.convs["seediness"].weight.grad.abs().sum() > 0
    # the embedding head gets gradient from the embedding loss alone (not only through shared layers)
    module.zero_grad()
    batch = _batch()
    out = module(batch["image"])
    (module.aux_loss(out, batch)).backward()
    assert module.model.heads.convs["embedding"].weight.grad.abs().sum() > 0


def test_embedding_route_adds_the_discriminative_loss():
    module = _module("embedding", embedding_loss_weight=0.7, delta_v=0.4, delta_d=1.2)
    batch = _batch()
    out = module(batch["image"])
    # spatial embeddings by default: the pixel's (y, x) / 5 added to the first two channels for the
    # pull and push terms; the regulariser keeps the centres of the learned offsets small
    learned = out["embedding"].float()
    emb = learned.clone()
    ys, xs = torch.meshgrid(torch.arange(emb.shape[2]), torch.arange(emb.shape[3]), indexing="ij")
    emb[:, 0] += ys / 5.0
    emb[:, 1] += xs / 5.0
    loss_fn = DiscriminativeLoss(delta_v=0.4, delta_d=1.2)
    spatial = loss_fn(emb, batch["instances"], return_components=True)
    offsets = loss_fn(learned, batch["instances"], return_components=True)
    expected = 0.7 * (spatial["var"] + spatial["dist"] + 0.001 * offsets["reg"])
    torch.testing.assert_close(module.aux_loss(out, batch), expected)
    assert module.meta["decoder"]["kwargs"] == {"delta_v": 0.4, "coord_unit": 5.0}


def test_spatial_embedding_loss_ignores_the_coordinate_origin(monkeypatch):
    """Shifting the image origin (a constant added to every pixel's coordinates) changes nothing."""
    from seglab.engine import embedding_module
    from seglab.instances.embedding import coordinate_channels

    module = _module("embedding")
    batch = _batch()
    out = module(batch["image"])
    before = module.aux_loss(out, batch)
    shift = torch.tensor([7.0, -3.5, 0.0, 0.0]).view(4, 1, 1)
    monkeypatch.setattr(embedding_module, "coordinate_channels", lambda e, u: coordinate_channels(e, u) + shift)
    monkeypatch.setattr(embedding_module, "with_coordinates", lambda e, u: e + coordinate_channels(e, u) + shift)
    torch.testing.assert_close(module.aux_loss(out, batch), before)


def test_plain_embeddings_with_coord_unit_zero():
    module = _module("embedding", coord_unit=0)
    batch = _batch()
    out = module(batch["image"])
    expected = DiscriminativeLoss()(out["embedding"].float(), batch["instances"])
    torch.testing.assert_close(module.aux_loss(out, batch), expected)
    assert module.meta["decoder"]["kwargs"]["coord_unit"] == 0.0
    assert _module("recurrent").coord_unit == 0.0  # embeddings on the sphere: no coordinates
    with pytest.raises(ConfigError, match="coord_unit"):
        _module("seeds", coord_unit=-1)


def test_route_kwargs_are_checked():
    assert check_route_kwargs({"delta_v": 0.3, "coord_unit": 4}) == {"delta_v": 0.3, "coord_unit": 4}
    with pytest.raises(ConfigError, match=r"unknown embedding_kwargs \['delta'\]; valid: .*coord_unit"):
        check_route_kwargs({"delta": 0.3})


@pytest.mark.parametrize("radius", [0.0, 6.0])
def test_recurrent_loss_averages_stages(radius):
    from seglab.losses.embedding import gather_pixels, kong_pair_loss, near_pairs, sample_pixels

    module = _module("recurrent", pair_pixels=32, grouping_iters=2, pair_radius=radius, margin=0.5)
    batch = _batch()
    emb = torch.randn(2, 4, 32, 32)
    torch.manual_seed(7)
    value = module.recurrent_loss(emb, batch["instances"])
    torch.manual_seed(7)
    index, valid = sample_pixels(batch["instances"], 32)
    labels = torch.where(valid, batch["instances"].reshape(2, -1).gather(1, index), 0)
    pairs = near_pairs(index, 32, radius) if radius else None
    stages = module.grouping(gather_pixels(emb, index), valid)
    expected = sum(kong_pair_loss(x, labels, pairs=pairs) for x in stages) / 3
    torch.testing.assert_close(value, expected)
    # the decoder's bandwidth: half the smallest distance of dissimilar unit vectors, sqrt(1 - margin)
    assert module.meta["decoder"]["kwargs"] == {"normalize": True, "bandwidth": 0.7071, "coord_unit": 0.0}
    assert _module("recurrent", margin=0.75).meta["decoder"]["kwargs"]["bandwidth"] == 0.5


def test_empty_batch_is_finite():
    module = _module("seeds", pair_pixels=16)
    batch = _batch()
    batch["instances"].zero_()
    batch["foreground"].zero_()
    loss = module.training_step(batch, 0)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("method", ["embedding", "seeds"])
def test_validation_decodes_instances(method, monkeypatch):
    from seglab.instances import DECODERS
    from seglab.instances.embedding import embedding_meanshift, embedding_seeds

    # until the lead registers them, put the decoders where seglab.instances.decode looks
    monkeypatch.setitem(DECODERS, "embedding_meanshift", embedding_meanshift)
    monkeypatch.setitem(DECODERS, "embedding_seeds", embedding_seeds)
    module = _module(method).eval()
    batch = _batch(n=1)
    module.log = lambda *a, **k: None
    module.on_validation_epoch_start()
    with torch.no_grad():
        module.validation_step(batch, 0)
        probs = module.probabilities(module(batch["image"]))
    assert probs.shape == (1, 5 if method == "embedding" else 6, 32, 32)  # fg, (seediness), 4 embedding
    (record,) = module._val_records
    assert 0.0 <= record["aji"] <= 1.0 and 0.0 <= record["pq"] <= 1.0
    maps = module.decode_instances(probs)
    assert maps[0].shape == (32, 32) and maps[0].dtype == np.int32


def test_rejects_other_methods():
    from seglab.errors import ConfigError

    recipe = make_recipe("instance", "three_class")
    meta = {"preprocessing": {"mean": [0.5], "std": [0.25]}, "decoder": None}
    with pytest.raises(ConfigError):
        EmbeddingModule(model=torch.nn.Conv2d(1, 3, 1), recipe=recipe, loss=torch.nn.CrossEntropyLoss(), meta=meta)


@pytest.mark.parametrize("method", ["embedding", "seeds", "recurrent"])
def test_lightning_fit_with_validation_on_folder_data(method, tmp_path):
    """Two optimiser steps and one validation epoch through Lightning on a written data set;
    validation decodes through seglab.instances.decode (the registered embedding decoders)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from seglab.data.dataset import SegmentationDataset, find_samples
    from seglab.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", n=2, size=40, seed=1)
    samples = find_samples(tmp_path / "data")
    train = SegmentationDataset(samples, targets=("foreground",), patch_size=32, patches_per_image=2)
    val = SegmentationDataset(samples[:1], targets=("foreground",), patch_size=None)
    module = _module(method, pair_pixels=32)
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(train, batch_size=2), DataLoader(val, batch_size=1))
    assert trainer.global_step == 2
    assert 0.0 <= float(trainer.callback_metrics["val/aji"]) <= 1.0


def test_default_embedding_dims_per_method():
    assert make_recipe("instance", "embedding").aux_heads == {"embedding": 8}
    assert make_recipe("instance", "seeds").aux_heads == {"seediness": 1, "embedding": 8}
    assert make_recipe("instance", "recurrent").aux_heads == {"embedding": 32}  # the unit sphere needs room
    assert make_recipe("instance", "recurrent", embedding_dim=6).aux_heads == {"embedding": 6}
