"""ChunkedArray (the block pipeline's on-disk scratch map) against a numpy array given the same writes."""

import numpy as np
import pytest

from seglab.inference.scratch import ChunkedArray


def test_regions_written_and_read_match_a_numpy_array(tmp_path):
    rng = np.random.default_rng(0)
    shape = (300, 410)  # not a multiple of the chunk: partial chunks on the right and bottom
    ref = np.zeros(shape, np.uint32)
    arr = ChunkedArray(tmp_path / "a", shape, np.uint32, chunk=64)
    for _ in range(60):
        y0, x0 = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        y1, x1 = min(y0 + rng.integers(1, 150), shape[0]), min(x0 + rng.integers(1, 150), shape[1])
        value = rng.integers(0, 5, (y1 - y0, x1 - x0)).astype(np.uint32) * rng.integers(0, 2)  # some all-zero writes
        ref[y0:y1, x0:x1] = value
        arr[y0:y1, x0:x1] = value
        a, b = sorted(rng.integers(0, shape[0], 2))
        c, d = sorted(rng.integers(0, shape[1], 2))
        assert np.array_equal(arr[a:b, c:d], ref[a:b, c:d])
    assert np.array_equal(arr[:, :], ref) and np.array_equal(arr[10:200], ref[10:200])
    assert arr[5:5, 0:3].shape == (0, 3)
    # a file per chunk holding a nonzero pixel, none for the others
    nonzero = {(cy, cx) for cy in range(5) for cx in range(7) if ref[cy * 64 : (cy + 1) * 64, cx * 64 : (cx + 1) * 64].any()}
    assert arr.stored == nonzero
    assert {p.name for p in (tmp_path / "a").iterdir()} == {f"{cy}.{cx}" for cy, cx in nonzero}


def test_zeroing_a_chunk_removes_its_file_and_steps_are_refused(tmp_path):
    arr = ChunkedArray(tmp_path / "b", (128, 128), np.uint8, chunk=64)
    arr[0:64, 0:64] = 7
    assert arr.stored == {(0, 0)} and arr[0:1, 0:1][0, 0] == 7
    arr[0:64, 0:64] = 0
    assert arr.stored == set() and not any((tmp_path / "b").iterdir()) and not arr[:, :].any()
    with pytest.raises(ValueError, match="step 1"):
        arr[::2, :]
