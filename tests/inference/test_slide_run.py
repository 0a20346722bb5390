"""The block pipeline: same objects as the in-memory path, pyramidal TIFF = GeoJSON, scale, tissue, failures."""

import errno
import json

import numpy as np
import pytest
import tifffile
import torch
from skimage.draw import disk

from seglab.inference import ArraySource, Predictor
from seglab.inference.slide_run import predict_slide, slide_output_paths
from seglab.inference.sliding import tile_starts
from seglab.metrics.instance import aji
from seglab.spec.checkpoint import make_meta


class DarkBlobs(torch.nn.Module):
    """Three-class logits that call dark pixels interior, bright ones background (no boundary)."""

    def forward(self, x):
        dark = -x.mean(1, keepdim=True)
        return torch.cat([-6 * dark, 6 * dark, torch.full_like(dark, -20.0)], 1)


def blob_predictor(**kwargs):
    meta = make_meta(task="instance", model_name="unet", model_kwargs={}, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 3, "fill_holes": False}},
                     patch_size=32)
    return Predictor(DarkBlobs(), meta, **{"tile": 32, "block": 48, "margin": 8, **kwargs})


def blob_image(shape=(150, 190), seed=0):
    """Bright glass, small dark nuclei, two large ones (3-5x the margin) and a ring with a hole."""
    rng = np.random.default_rng(seed)
    img = np.full((*shape, 3), 225, np.uint8)
    for _ in range(40):
        img[disk(rng.integers(0, shape), rng.integers(3, 6), shape=shape)] = 40
    img[disk((60, 70), 20, shape=shape)] = 40
    img[disk((110, 150), 26, shape=shape)] = 40
    img[disk((110, 150), 9, shape=shape)] = 225
    return img


N_TILES = len(tile_starts(150, 32, 0.25)) * len(tile_starts(190, 32, 0.25))


def read_outputs(out, stem="x"):
    paths = slide_output_paths(out, stem)
    with tifffile.TiffFile(paths["instances"]) as tif:
        levels = [level.asarray() for level in tif.series[0].levels]
    return levels, json.loads(paths["geojson"].read_text())


def test_blocks_equal_one_pass_and_files_agree(tmp_path):
    torch.manual_seed(0)
    image = blob_image()
    one_pass = blob_predictor(block=4096).predict(image)["instances"]
    row = predict_slide(blob_predictor(), ArraySource(image), tmp_path, "x", mpp=0.5)
    levels, geo = read_outputs(tmp_path)
    labels = levels[0]
    assert labels.dtype == np.uint32 and labels.shape == image.shape[:2] and len(levels) >= 1
    assert aji(one_pass, labels) >= 0.99 and np.unique(labels).size - 1 == one_pass.max()
    features = {f["properties"]["id"]: f for f in geo["features"]}
    ids, areas = np.unique(labels, return_counts=True)
    assert sorted(features) == ids[1:].tolist()  # one feature per object, the TIFF's ids
    for i, a in zip(ids[1:], areas[1:], strict=True):
        props = features[int(i)]["properties"]
        assert props["area"] == a and props["area_um2"] == pytest.approx(a * 0.25)
        ys, xs = np.nonzero(labels == i)
        assert props["centroid"] == pytest.approx([xs.mean() + 0.5, ys.mean() + 0.5], abs=1e-3)
        assert 0.5 < props["score"] <= 1
    ring = features[int(labels[110, 150 + 15])]["geometry"]  # the ring keeps its hole
    assert ring["type"] == "Polygon" and len(ring["coordinates"]) == 2
    assert row["instances"] == len(features) and row["tiles_skipped"] == 0 and row["tiles_run"] == N_TILES
    assert float(row["mean_area_um2"]) == pytest.approx(areas[1:].mean() * 0.25, rel=1e-3)
    assert [p.name for p in tmp_path.iterdir()] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_coarser_model_resolution_is_upsampled_into_level0(tmp_path):
    image = blob_image()
    predict_slide(blob_predictor(), ArraySource(image), tmp_path, "x", scale=2.0, mpp=0.25)
    levels, geo = read_outputs(tmp_path)
    small = blob_predictor(block=4096).predict(image)["instances"]
    assert levels[0].shape == (300, 380)
    assert aji(np.repeat(np.repeat(small, 2, 0), 2, 1), levels[0]) >= 0.99
    assert np.array_equal(levels[1], levels[0][::2, ::2])  # reduced levels by stride
    f = geo["features"][0]["properties"]
    assert f["area"] == np.count_nonzero(levels[0] == f["id"])


def test_tiles_without_tissue_are_skipped(tmp_path):
    image = blob_image()
    covers = lambda y0, y1, x0, x1: x0 < 60  # noqa: E731 - tissue only on the left
    row = predict_slide(blob_predictor(), ArraySource(image), tmp_path, "x", covers=covers, mpp=None)
    labels = read_outputs(tmp_path)[0][0]
    assert row["tiles_skipped"] > 0 and row["tiles_run"] + row["tiles_skipped"] == N_TILES
    assert not labels[:, 100:].any() and labels[:, :40].any()
    assert row["tissue_mm2"] == "" and row["mean_area_um2"] == ""  # µm/px unknown


def test_write_failure_leaves_no_final_or_temporary_file(tmp_path, monkeypatch):
    import seglab.inference.pyramid_writer as pw

    real = pw._tiles

    def failing(*args, **kwargs):
        for i, tile in enumerate(real(*args, **kwargs)):
            if i == 0:  # after the GeoJSON is written (to its temporary name)
                raise OSError(errno.ENOSPC, "No space left on device")
            yield tile

    monkeypatch.setattr(pw, "_tiles", failing)
    with pytest.raises(OSError, match="No space"):
        predict_slide(blob_predictor(), ArraySource(blob_image()), tmp_path, "x")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_on_the_post_processing_thread_stops_the_run_and_leaves_nothing(tmp_path, monkeypatch):
    """The decoder, stitching and writing run on a second thread: an error there (a full disk while
    a block's scratch chunks are written) reaches the caller, and no block after the next one runs."""
    import seglab.inference.scratch as scratch

    real, written, ran = scratch.ChunkedArray.__setitem__, [], []

    def failing(self, key, value):
        written.append(key)
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, key, value)

    monkeypatch.setattr(scratch.ChunkedArray, "__setitem__", failing)
    source = ArraySource(blob_image())
    read = source.read_region

    def counted(*region):  # the network's reads, one per block with tissue
        ran.append(region)
        return read(*region)

    monkeypatch.setattr(source, "read_region", counted)
    with pytest.raises(OSError, match="No space"):
        predict_slide(blob_predictor(), source, tmp_path, "x")
    assert list(tmp_path.iterdir()) == []
    blocks = -(-150 // 48) * -(-190 // 48)
    assert len(written) == 2 and 0 < len(ran) < blocks  # stopped early, not after every block


class CoordinateDetector(torch.nn.Module):
    """Mask R-CNN stand-in: returns the true objects of each crop (channels 0 and 1 hold row and column)."""

    def __init__(self, inst):
        super().__init__()
        self.inst = inst

    def forward(self, crops):
        from seglab.data.detection import instances_to_target

        out = []
        for crop in crops:
            r, c = int(crop[0, 0, 0]), int(crop[1, 0, 0])
            target = instances_to_target(self.inst[r : r + crop.shape[1], c : c + crop.shape[2]])
            k = len(target["boxes"])
            out.append({"boxes": target["boxes"], "scores": torch.linspace(1, 0.6, k), "labels": target["labels"],
                        "masks": target["masks"][:, None].float()})
        return out


def test_mask_rcnn_follows_the_block_path(tmp_path):
    from seglab.inference.detection import DetectionPredictor

    rng = np.random.default_rng(0)
    inst = np.zeros((110, 140), np.int32)
    for k in range(1, 50):
        rr, cc = disk(rng.integers(0, inst.shape), rng.integers(2, 5), shape=inst.shape)
        free = inst[rr, cc] == 0
        inst[rr[free], cc[free]] = k
    image = np.zeros((*inst.shape, 3), np.float32)
    image[..., 0], image[..., 1] = np.arange(110)[:, None], np.arange(140)[None, :]
    meta = {"task": "instance", "method": "maskrcnn", "decoder": {"name": "maskrcnn", "kwargs": {}},
            "preprocessing": {"in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3}}
    predictor = DetectionPredictor(CoordinateDetector(inst), meta, tile=32, overlap=0.4, block=40, margin=12)
    row = predict_slide(predictor, ArraySource(image), tmp_path, "x")
    labels, geo = read_outputs(tmp_path)
    assert aji(inst, labels[0]) == pytest.approx(1.0, abs=1e-3)
    assert row["instances"] == len(geo["features"]) == len(np.unique(inst)) - 1
