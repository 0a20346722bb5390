"""DetectionPredictor streams the image: it reads one band of tile rows at a time (never the
whole image) and the merged instance map equals the ground truth a perfect detector sees."""

import numpy as np
import pytest
import torch

from seglab.data.detection import instances_to_target
from seglab.data.synthetic import synth_tile
from seglab.inference.detection import DetectionPredictor
from seglab.inference.source import ArraySource
from seglab.metrics import aji


class _PerfectDetector(torch.nn.Module):
    """Returns the ground truth of each crop; the image's channels 0 and 1 hold row and column."""

    def __init__(self, inst: np.ndarray) -> None:
        super().__init__()
        self.inst, self.rng = inst, np.random.default_rng(0)

    def forward(self, crops):
        out = []
        for crop in crops:
            r, c = int(crop[0, 0, 0]), int(crop[1, 0, 0])
            target = instances_to_target(self.inst[r:r + crop.shape[1], c:c + crop.shape[2]])
            k = len(target["boxes"])
            out.append({"boxes": target["boxes"], "scores": torch.from_numpy(self.rng.uniform(0.6, 1, k)),
                        "masks": target["masks"][:, None].float(), "labels": target["labels"]})
        return out


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
