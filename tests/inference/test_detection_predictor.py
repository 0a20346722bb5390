"""Tiled detection equals the whole-image answer with a perfect stand-in detector, and
DetectionPredictor streams the image: it reads one band of tile rows at a time (never the
whole image) and the merged instance map equals the ground truth a perfect detector sees."""

import numpy as np
import pytest
import torch

from seglab.data.detection import instances_to_target
from seglab.data.synthetic import synth_tile
from seglab.inference.detection import DetectionPredictor, predict_tiled_detections
from seglab.inference.source import ArraySource
from seglab.instances.detections import detections_to_instances
from seglab.metrics import aji


class _PerfectDetector(torch.nn.Module):
    """Returns the ground truth of each crop; the image's channels 0 and 1 hold row and column."""

    def __init__(self, inst: np.ndarray) -> None:
        super().__init__()
        self.inst, self.rng, self.calls = inst, np.random.default_rng(0), []

    def forward(self, crops):
        out = []
        for crop in crops:
            r, c = int(crop[0, 0, 0]), int(crop[1, 0, 0])
            target = instances_to_target(self.inst[r:r + crop.shape[1], c:c + crop.shape[2]])
            k = len(target["boxes"])
            out.append({"boxes": target["boxes"], "scores": torch.from_numpy(self.rng.uniform(0.6, 1, k)),
                        "masks": target["masks"][:, None].float(), "labels": target["labels"]})
            self.calls.append((r, c))
        return out


def _small_objects(shape=(100, 130), n=40, seed=0):
    rng = np.random.default_rng(seed)
    inst = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k in range(1, n + 1):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(2, 4.5)
        inst[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (inst == 0)] = k
    return inst


@pytest.mark.parametrize("overlap", [0.3, 0.5])
def test_tiled_prediction_equals_whole_image(overlap):
    inst = _small_objects()
    image = torch.zeros(2, *inst.shape)
    image[0] = torch.arange(inst.shape[0])[:, None].float()  # channel 0 = row, channel 1 = column
    image[1] = torch.arange(inst.shape[1])[None, :].float()
    detector = _PerfectDetector(inst)
    merged = predict_tiled_detections(detector, image, tile=40, overlap=overlap, batch_size=3)
    assert len(detector.calls) > 9
    whole = detections_to_instances({"masks": instances_to_target(inst)["masks"][:, None].float(),
                                     "scores": torch.ones(int(inst.max()))})
    assert aji(whole, merged) == pytest.approx(1.0)
    assert merged.max() == len(np.unique(inst)) - 1


def test_reads_bands_not_the_whole_image(monkeypatch):
    inst = synth_tile(96, seed=2)[1][:90, :70]
    image = np.zeros((*inst.shape, 3), np.float32)
    image[..., 0] = np.arange(inst.shape[0])[:, None]
    image[..., 1] = np.arange(inst.shape[1])[None, :]
    reads = []
    source = ArraySource(image)
    original = source.read_rows
    monkeypatch.setattr(source, "read_rows", lambda y0, y1: reads.append((y0, y1)) or original(y0, y1))
    monkeypatch.setattr(source, "read_all", lambda: pytest.fail("the whole image was read"))
    meta = {"task": "instance", "method": "maskrcnn",
            "preprocessing": {"in_channels": 3, "mean": [0.0] * 3, "std": [1.0] * 3},
            "decoder": {"name": "maskrcnn", "kwargs": {}}}
    predictor = DetectionPredictor(_PerfectDetector(inst), meta, tile=32, overlap=0.4, batch_size=2)
    labels = predictor.predict_source(source)
    assert reads and all(y1 - y0 == 32 for y0, y1 in reads)
    assert len(set(reads)) == len(reads)  # each band once: tiles of a row share it
    assert aji(inst, labels) == pytest.approx(1.0)
    assert labels.max() == len(np.unique(inst)) - 1
