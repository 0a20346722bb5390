"""TTA: channels transform by what they are (scalars, (dy, dx) offsets, free embeddings), every route."""

import numpy as np
import pytest
import torch

from seglab.data.synthetic import synth_tile
from seglab.inference import Predictor
from seglab.inference.tta import dihedral_tta, tta_channels
from seglab.metrics import aji
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta, save_checkpoint
from seglab.spec.recipes import make_recipe

PLAIN = {"in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}
UNIT = 5.0  # coord_unit of the oracle's spatial embeddings


def gradient_field(x):
    """[x, d/dy x, d/dx x] by central differences: an exactly dihedral-equivariant vector field."""
    p = torch.nn.functional.pad(x, (1, 1, 1, 1))
    dy = p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1]
    dx = p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2]
    return torch.cat([x, dy, dx], 1)


def test_vector_channels_turn_with_the_image():
    x = torch.rand(2, 1, 9, 13)  # not square: rotations change the shape
    exact = gradient_field(x)
    assert torch.allclose(dihedral_tta(gradient_field, x, vector_channels=[(1, 2)]), exact, atol=1e-6)
    pixels_only = dihedral_tta(gradient_field, x)  # the old behaviour: offsets cancel
    assert torch.allclose(pixels_only[:, 0], exact[:, 0]) and pixels_only[:, 1:].abs().max() < 1e-5


def test_identity_channels_come_from_the_untransformed_input():
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)  # not equivariant
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        plain, tta = conv(x), dihedral_tta(conv, x, identity_channels=slice(1, None))
        averaged = dihedral_tta(conv, x)
    assert torch.equal(tta[:, 1:], plain[:, 1:]) and torch.allclose(tta[:, 0], averaged[:, 0])
    assert not torch.allclose(tta[:, 0], plain[:, 0], atol=1e-4)


def test_channel_roles_per_route():
    spatial = {"name": "embedding_meanshift", "kwargs": {"coord_unit": 5.0}}
    assert tta_channels("embedding", spatial) == {"vector_channels": ((1, 2),), "identity_channels": slice(3, None)}
    assert tta_channels("seeds", {"kwargs": {"coord_unit": 5.0}})["vector_channels"] == ((2, 3),)  # after seediness
    assert tta_channels("embedding", {"kwargs": {"coord_unit": 0.0}}) == {"identity_channels": slice(1, None)}
    assert tta_channels("recurrent", {"kwargs": {"normalize": True}}) == {"identity_channels": slice(1, None)}
    assert tta_channels("three_class", None) == {} and tta_channels("distance", {"kwargs": {}}) == {}


def five_discs():
    """64 x 64: a 2 x 2 block of touching discs and one alone; disc i is painted grey level 40 i."""
    yy, xx = np.mgrid[:64, :64]
    gt = np.zeros((64, 64), np.int32)
    for i, (cy, cx, r) in enumerate([(16, 16, 8), (16, 32, 8), (32, 16, 8), (32, 32, 8), (50, 50, 7)], 1):
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    return np.repeat((gt * 40).astype(np.uint8)[..., None], 3, axis=-1), gt


class DiscOracle(torch.nn.Module):
    """An ideal network: each grey level is a nucleus; it sees the (possibly turned) image it gets.

    ``mode="offset"``: embedding = the exact offset from each pixel to its disc's centre in coord
    units (spatial embeddings, exactly equivariant). ``mode="centre"``: embedding = the disc's
    centre in this view's coordinates, a valid plain embedding per view that moves under every
    transform (averaged over the 8 views, every disc would land on the image centre).
    """

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        grey = x[:, 0]
        n, h, w = grey.shape
        ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
        emb = torch.zeros(n, 2, h, w)
        for v in torch.unique(grey):
            if v <= 0:
                continue
            m = grey == v
            for b in range(n):
                if m[b].any():
                    cy, cx = ys[m[b]].mean(), xs[m[b]].mean()
                    if self.mode == "offset":
                        emb[b, 0][m[b]], emb[b, 1][m[b]] = (cy - ys[m[b]]) / UNIT, (cx - xs[m[b]]) / UNIT
                    else:
                        emb[b, 0][m[b]], emb[b, 1][m[b]] = cy / UNIT, cx / UNIT
        fg = (grey > 0).to(x.dtype)[:, None]
        return {"logits": torch.cat([-10 * fg + 5, 10 * fg - 5], 1), "embedding": emb}


def oracle_predictor(mode, **kwargs):
    unit = UNIT if mode == "offset" else 0.0
    decoder = {"name": "embedding_meanshift", "kwargs": {"coord_unit": unit, "min_size": 3}}
    meta = make_meta(task="instance", model_name="unet", model_kwargs={}, preprocessing=PLAIN, decoder=decoder,
                     method="embedding")
    return Predictor(DiscOracle(mode), meta, **kwargs)


@pytest.mark.parametrize(("mode", "tile"), [("offset", None), ("offset", 48), ("centre", None)])
def test_equivariant_oracle_keeps_aji_one_under_tta(mode, tile):
    image, gt = five_discs()
    plain = oracle_predictor(mode, tile=tile).predict(image)["instances"]
    turned = oracle_predictor(mode, tile=tile, tta=True).predict(image)["instances"]
    assert aji(gt, plain) > 0.999 and aji(gt, turned) > 0.999
    assert turned.max() == 5


ROUTES = {
    "three_class": ("three_class_watershed", {"min_size": 3}),
    "distance": ("distance_watershed", {"min_size": 3}),
    "embedding": ("embedding_meanshift", {"coord_unit": 5.0, "min_size": 3}),
    "seeds": ("embedding_seeds", {"coord_unit": 5.0, "min_size": 3}),
    "recurrent": ("embedding_meanshift", {"coord_unit": 0.0, "normalize": True, "bandwidth": 0.55, "min_size": 3}),
}


@pytest.mark.parametrize("method", list(ROUTES))
def test_tta_on_every_route_gives_a_valid_map(tmp_path, method):
    recipe = make_recipe("instance", method, embedding_dim=4 if method in ("embedding", "seeds", "recurrent") else None)
    kw = {"in_channels": 3, "num_classes": recipe.num_classes, "depth": 2, "base_channels": 4}
    if recipe.aux_heads:
        kw["aux_heads"] = dict(recipe.aux_heads)
    torch.manual_seed(0)
    name, kwargs = ROUTES[method]
    meta = make_meta(task="instance", model_name="unet", model_kwargs=kw, preprocessing=PLAIN, method=method,
                     decoder={"name": name, "kwargs": kwargs}, patch_size=32)
    save_checkpoint(tmp_path / "m.ckpt", create_model("unet", **kw), meta)
    image = synth_tile(40, seed=1)[0]
    plain = Predictor.from_checkpoint(tmp_path / "m.ckpt").predict(image)
    out = Predictor.from_checkpoint(tmp_path / "m.ckpt", tta=True).predict(image)
    labels, probs = out["instances"], out["probs"]
    assert labels.shape == (40, 40) and labels.dtype == np.int32 and labels.min() >= 0
    ids = np.unique(labels[labels > 0])
    assert np.array_equal(ids, np.arange(1, len(ids) + 1))  # numbered 1..K
    assert np.isfinite(probs).all() and probs.shape == plain["probs"].shape
    roles = tta_channels(method, meta["decoder"])
    free = list(range(probs.shape[0])[roles["identity_channels"]]) if roles else []
    assert np.allclose(probs[free], plain["probs"][free], atol=1e-5)  # free embeddings: the identity view
    assert not np.allclose(probs[0], plain["probs"][0], atol=1e-4)  # the foreground is averaged
