"""The pyramidal OME-TIFF writer: every level equals level 0 taken every 2**k pixels, tiles from a function."""

import numpy as np
import tifffile

from seglab.inference.pyramid_writer import level_shapes, write_pyramid


def test_levels_are_strided_level0_and_metadata(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.integers(1, 9, (300, 530)) * (rng.random((300, 530)) < 0.2)).astype(np.uint32)
    calls = []

    def tile(y0, y1, x0, x1):
        calls.append((y0, y1, x0, x1))
        return labels[y0:y1, x0:x1]

    write_pyramid(tmp_path / "x.ome.tif", labels.shape, np.uint32, tile, tile=64, mpp=0.25, scratch=tmp_path)
    assert max(y1 - y0 for y0, y1, _, _ in calls) <= 64 and max(x1 - x0 for _, _, x0, x1 in calls) <= 64
    with tifffile.TiffFile(tmp_path / "x.ome.tif") as tif:
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == level_shapes((300, 530), 64) and len(levels) == 5
        for k, level in enumerate(levels):
            assert np.array_equal(level.asarray(), labels[:: 2**k, :: 2**k])
        assert tif.pages[0].is_tiled and tif.pages[0].compression == 8  # deflate
        assert 'PhysicalSizeX="0.25"' in tif.ome_metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.ome.tif"]  # scratch levels removed
