"""Decoders recover known instances from probability maps derived from them; the 3-class watershed's
h-maxima markers split touching nuclei through a soft contact; fill_label_holes fills per label."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.segmentation import find_boundaries

from seglab.errors import ConfigError
from seglab.instances import DECODERS, decode

MAP_DECODERS = ["connected_components", "distance_watershed", "three_class_watershed"]


def touching_discs(shape=(64, 64), centres=((20, 20), (20, 34), (44, 40), (45, 12)), radius=8):
    """Instance map of discs; the first two overlap (touch), painted in order."""
    labels = np.zeros(shape, np.int32)
    for i, c in enumerate(centres, 1):
        labels[disk(c, radius, shape=shape)] = i
    return labels


def three_class_probs(labels):
    """Background / interior / boundary one-hot probabilities from an instance map."""
    boundary = find_boundaries(labels, mode="inner") & (labels > 0)
    interior = (labels > 0) & ~boundary
    return np.stack([labels == 0, interior, boundary]).astype(np.float32)


def soft_three_class_probs(labels, sigma=2.0):
    """3-class probabilities as a network predicts them: exact foreground, but the interior share
    blurred across the thin boundary, so a contact between touching discs still reads 0.6 interior."""
    onehot = three_class_probs(labels)
    fg = (labels > 0).astype(np.float32)
    share = ndi.gaussian_filter(onehot[1], sigma) / np.maximum(ndi.gaussian_filter(fg, sigma), 1e-6)
    return np.stack([1 - fg, fg * share, fg * (1 - share)]).astype(np.float32)


def distance_probs(labels):
    """[foreground, per-instance normalised distance] from an instance map."""
    inside = (labels > 0) & ~find_boundaries(labels, mode="inner")
    dist = ndi.distance_transform_edt(inside) + (labels > 0)
    top = ndi.maximum(dist, labels, index=np.arange(labels.max() + 1))
    top[0] = 1.0
    return np.stack([labels > 0, dist / top[labels]]).astype(np.float32)


def best_ious(gt, pred):
    """For each ground-truth instance, the IoU of its best-overlapping prediction (slow, obvious)."""
    out = []
    for g in range(1, gt.max() + 1):
        g_mask = gt == g
        ids = np.unique(pred[g_mask])
        ids = ids[ids > 0]
        ious = [(g_mask & (pred == p)).sum() / (g_mask | (pred == p)).sum() for p in ids]
        out.append(max(ious, default=0.0))
    return np.array(out)


@pytest.mark.parametrize("markers", ["hmaxima", "threshold"])
def test_three_class_recovers_touching_discs(markers):
    gt = touching_discs()
    pred = decode("three_class_watershed", three_class_probs(gt), markers=markers, min_size=5)
    assert pred.dtype == np.int32 and pred.max() == gt.max()
    assert best_ious(gt, pred).min() > 0.97
    assert best_ious(pred, gt).min() > 0.97  # nothing extra


def test_soft_contacts_are_split_by_the_default_markers():
    gt = touching_discs()
    probs = soft_three_class_probs(gt)
    contact = probs[:, 17:24, 26:28]  # the two touching discs' shared border
    assert 0.55 < contact[1].max() < 0.7 and contact[2].min() < 0.5  # the interior leaks across
    pred = decode("three_class_watershed", probs, min_size=5)  # h-maxima, interior_threshold 0.5
    assert pred.max() == gt.max() and best_ious(gt, pred).min() > 0.97 and best_ious(pred, gt).min() > 0.97
    # a marker rule that thresholds the interior at 0.5 joins the two discs through the contact
    merged = decode("three_class_watershed", probs, markers="threshold", interior_threshold=0.5, min_size=5)
    assert merged.max() == gt.max() - 1 and best_ious(gt, merged)[:2].max() < 0.6
    # it needs a threshold above the contact's interior probability
    high = decode("three_class_watershed", probs, markers="threshold", interior_threshold=0.9, min_size=5)
    assert np.array_equal(high, pred)


def test_h_maxima_markers_merge_shallow_saddles_only():
    labels = np.zeros((24, 44), np.int32)
    labels[6:18, 4:40] = 1  # one bar, its saturated interior cut by a two-column dip
    inner = ndi.binary_erosion(labels > 0).astype(np.float32)

    def bar(dip):
        probs = np.stack([labels == 0, inner, (labels > 0) - inner]).astype(np.float32)
        probs[1][:, 21:23] *= dip
        probs[2][:, 21:23] += inner[:, 21:23] * (1 - dip)
        return probs

    # log-odds dip about 1 (< h = 1.5): one marker, though the two halves' tops are exactly equal
    # (clipped), which skimage's h_maxima would return as two separate tops
    assert decode("three_class_watershed", bar(0.997), min_size=5).max() == 1
    assert decode("three_class_watershed", bar(0.997), h=0.5, min_size=5).max() == 2
    # saturation is not evidence: a dip from 0.99999 to 0.9995 is clipped away, even at h = 0.5
    assert decode("three_class_watershed", bar(0.9995), h=0.5, min_size=5).max() == 1
    assert decode("three_class_watershed", bar(0.9), min_size=5).max() == 2  # dip about 4.5


def test_unknown_markers_are_refused():
    with pytest.raises(ValueError, match="hmaxima"):
        decode("three_class_watershed", three_class_probs(touching_discs()), markers="magic")


def test_distance_watershed_recovers_touching_discs():
    gt = touching_discs()
    pred = decode("distance_watershed", distance_probs(gt), min_size=5)
    assert pred.max() == gt.max()
    assert best_ious(gt, pred).min() > 0.9
    assert best_ious(pred, gt).min() > 0.9


def test_connected_components_merges_touching_but_separates_apart():
    gt = touching_discs()
    pred = decode("connected_components", three_class_probs(gt), min_size=5)
    assert pred.max() == 3  # the two touching discs merge
    assert np.array_equal(pred > 0, gt > 0)
    one_channel = decode("connected_components", (gt > 0)[None].astype(np.float32), min_size=5)
    assert np.array_equal(one_channel, pred)


@pytest.mark.parametrize("name", MAP_DECODERS)
def test_zero_and_one_instance(name):
    empty = np.zeros((32, 40), np.int32)
    one = touching_discs((32, 40), centres=((15, 18),), radius=6)
    make = distance_probs if name == "distance_watershed" else three_class_probs
    assert decode(name, make(empty)).max() == 0
    pred = decode(name, make(one))
    assert pred.max() == 1 and np.array_equal(pred > 0, one > 0)


@pytest.mark.parametrize("name", MAP_DECODERS)
def test_min_size_removes_specks(name):
    gt = touching_discs((48, 48), centres=((24, 24),), radius=7)
    gt[2:4, 2:4] = 2  # a 4-pixel speck
    make = distance_probs if name == "distance_watershed" else three_class_probs
    assert decode(name, make(gt), min_size=1).max() == 2
    pred = decode(name, make(gt), min_size=10)
    assert pred.max() == 1 and pred[2:4, 2:4].max() == 0


def test_holes_are_filled():
    gt = touching_discs((40, 40), centres=((20, 20),), radius=10)
    probs = three_class_probs(gt)
    probs[:, 19:22, 19:22] = np.array([1.0, 0.0, 0.0])[:, None, None]  # background hole
    filled = decode("three_class_watershed", probs, min_size=5)
    assert filled[19:22, 19:22].min() == 1
    kept = decode("three_class_watershed", probs, min_size=5, fill_holes=False)
    assert kept[19:22, 19:22].max() == 0


def test_unknown_decoder_lists_choices():
    with pytest.raises(ConfigError, match="three_class_watershed"):
        decode("magic", np.zeros((3, 8, 8), np.float32))


def test_embedding_decoders_are_registered():
    from seglab.instances.embedding import embedding_meanshift

    assert set(MAP_DECODERS) < set(DECODERS) and {"embedding_meanshift", "embedding_seeds"} < set(DECODERS)
    gt = touching_discs()
    emb = np.zeros((2, *gt.shape), np.float32)
    emb[0] = gt * 3.0  # each disc its own point in embedding space
    stack = np.concatenate([(gt > 0)[None].astype(np.float32), emb])
    assert np.array_equal(decode("embedding_meanshift", stack, bandwidth=1.0), embedding_meanshift(stack, bandwidth=1.0))


def fill_label_holes_reference(labels):
    """Slow, obvious: each label's whole-image ``binary_fill_holes``; background pixels only, and
    where holes nest, the instance with the smaller filled area (the inner one) wins."""
    out = labels.copy()
    filled = {i: ndi.binary_fill_holes(labels == i) for i in np.unique(labels[labels > 0])}
    for i in sorted(filled, key=lambda i: -filled[i].sum()):
        out[filled[i] & (labels == 0)] = i
    return out


def test_fill_label_holes_matches_per_label_reference():
    from seglab.instances import fill_label_holes

    rng = np.random.default_rng(0)
    for trial in range(30):
        labels = np.zeros((50, 60), np.int32)
        for k in range(1, 8):
            r, c, h = rng.integers(0, 50), rng.integers(0, 60), rng.integers(3, 12)
            labels[max(r - h, 0) : r + h, max(c - h, 0) : c + h] = k * 3  # ids need not be contiguous
        if trial % 3 == 0:  # a ring with another instance inside its hole
            labels[10:30, 10:30], labels[13:27, 13:27], labels[16:24, 16:24] = 40, 0, 41
            labels[18:22, 18:22] = 0
        labels[rng.random(labels.shape) < 0.1] = 0  # pepper with holes
        out = fill_label_holes(labels)
        assert np.array_equal(out, fill_label_holes_reference(labels))
        assert np.array_equal(out[labels > 0], labels[labels > 0])
        assert out.dtype == labels.dtype
    empty = np.zeros((8, 8), np.int32)
    assert fill_label_holes(empty).max() == 0


def test_background_enclosed_by_several_nuclei_stays_background():
    from seglab.instances import fill_label_holes

    labels = np.zeros((40, 40), np.int32)
    for i, angle in enumerate(np.deg2rad([90, 210, 330]), 1):  # three touching discs round a pocket
        labels[disk((20 + 9 * np.sin(angle), 20 + 9 * np.cos(angle)), 8.0, shape=labels.shape)] = i
    regions, n = ndi.label(labels == 0)
    pocket = regions == regions[20, 20]
    assert n == 2 and 5 <= pocket.sum() <= 20  # outside + the pocket the three enclose jointly
    labels[30:32, 19:21] = 0  # and a real hole in nucleus 1
    out = fill_label_holes(labels)
    assert out[pocket].max() == 0  # nobody's hole: stays background
    assert np.all(out[30:32, 19:21] == 1)
    assert np.array_equal(out, fill_label_holes_reference(labels))


@pytest.mark.parametrize("seed", range(4))
def test_h_maxima_per_component_equals_the_whole_image_reconstruction(seed, monkeypatch):
    """The per-component h-maxima (decoders._h_domes) against scikit-image's whole-image call,
    on soft maps of touching nuclei clusters (components touching the border included) and at
    several h; then the whole decoder against the decoder with the whole-image call."""
    from skimage.morphology import reconstruction

    from seglab.data.synthetic import synth_tile
    from seglab.instances import decoders

    labels = synth_tile(160, seed=seed)[1]
    probs = ndi.gaussian_filter(three_class_probs(labels), (0, 1.2, 1.2))
    probs += np.random.default_rng(seed).uniform(0, 0.15, probs.shape).astype(np.float32)
    probs /= probs.sum(0, keepdims=True)
    confident = (probs[1] > 0.5) & (probs[2] < 0.5)
    relief = decoders._interior_log_odds(probs[1])
    relief[~confident] = relief.min() - 1.0
    assert ndi.label(confident)[1] > 5 and confident[0].any() | confident[-1].any() | confident[:, 0].any()
    for h in (0.25, 1.5, 4.0):
        whole = reconstruction(relief - np.float32(h), relief, method="dilation")
        parts = decoders._h_domes(relief, confident, np.float32(h))
        assert np.array_equal(whole[confident], parts[confident])
        assert (parts[~confident] == min(relief.min(), relief.max() - h)).all()
    fast = decoders.three_class_watershed(probs)
    monkeypatch.setattr(decoders, "_h_domes", lambda r, c, h: reconstruction(r - h, r, method="dilation"))
    assert np.array_equal(fast, decoders.three_class_watershed(probs))


def test_h_maxima_of_a_speckled_mask_equals_the_whole_image_call():
    from skimage.morphology import reconstruction

    from seglab.instances import decoders

    rng = np.random.default_rng(0)
    relief = rng.normal(size=(64, 64)).astype(np.float32)
    confident = rng.random((64, 64)) < 0.2  # hundreds of one-pixel components
    relief[~confident] = relief.min() - 1.0
    h = np.float32(1.5)
    assert np.array_equal(decoders._h_domes(relief, confident, h), reconstruction(relief - h, relief, method="dilation"))


@pytest.mark.parametrize("side", [8, 24, 512])
def test_h_maxima_packed_into_small_canvases_equals_the_whole_image_call(side, monkeypatch):
    """Canvases smaller than some boxes (each such box alone), many canvases, components on the
    image border (their boxes have no frame there: the one-pixel gap keeps them apart)."""
    from skimage.morphology import reconstruction

    from seglab.data.synthetic import synth_tile
    from seglab.instances import decoders

    monkeypatch.setattr(decoders, "_MOSAIC", side)
    labels = synth_tile(128, seed=5)[1]
    probs = ndi.gaussian_filter(three_class_probs(labels), (0, 1.2, 1.2))
    probs += np.random.default_rng(5).uniform(0, 0.2, probs.shape).astype(np.float32)
    probs /= probs.sum(0, keepdims=True)
    confident = (probs[1] > 0.5) & (probs[2] < 0.5)
    confident[:, :3] = confident[:, -3:] = True  # two long components along the borders
    relief = decoders._interior_log_odds(probs[1])
    relief[~confident] = relief.min() - 1.0
    boxes = [(k, s[0].start, s[0].stop, s[1].start, s[1].stop) for k, s in
             enumerate(ndi.find_objects(ndi.label(confident, structure=np.ones((3, 3)))[0]), 1)]
    assert side > 100 or len(decoders._pack(boxes)) > 1
    for h in (0.5, 2.0):
        whole = reconstruction(relief - np.float32(h), relief, method="dilation")
        assert np.array_equal(decoders._h_domes(relief, confident, np.float32(h)), whole)
