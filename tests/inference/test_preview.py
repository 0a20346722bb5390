"""The slide preview: streamed from the pyramid level closest in size, checked against an obvious
whole-level computation (block mean, then nearest neighbour), in bounded reads."""

import numpy as np

from seglab.inference.preview import Preview


class FakeSlide:
    """Levels held as arrays; records the largest region read."""

    def __init__(self, levels: list[np.ndarray]) -> None:
        self.arrays = levels
        self.levels = [a.shape[:2] for a in levels]
        self.channels, self.dtype = levels[0].shape[2], levels[0].dtype
        self.largest = 0

    def read_region(self, level, y0, x0, h, w):
        self.largest = max(self.largest, h * w)
        return self.arrays[level][y0 : y0 + h, x0 : x0 + w]


def pyramid(rng, shape, dtype=np.uint8, channels=3, top=255):
    base = rng.integers(0, top, (*shape, channels)).astype(dtype)
    return [base, base[::2, ::2].copy(), base[::4, ::4].copy()]


def reference(level: np.ndarray, k: int, out_shape: tuple[int, int]) -> np.ndarray:
    """Mean over k x k blocks (partial blocks at the edges average what they hold), then nearest."""
    h, w = level.shape[:2]
    rh, rw = -(-h // k), -(-w // k)
    small = np.array([[level[i * k : (i + 1) * k, j * k : (j + 1) * k].reshape(-1, level.shape[2]).mean(0)
                       for j in range(rw)] for i in range(rh)])
    ry = np.minimum((np.arange(out_shape[0]) * rh / out_shape[0]).astype(int), rh - 1)
    rx = np.minimum((np.arange(out_shape[1]) * rw / out_shape[1]).astype(int), rw - 1)
    return small[ry][:, rx]


def test_a_level_of_the_previews_size_is_copied():
    slide = FakeSlide(pyramid(np.random.default_rng(0), (1000, 800)))
    preview = Preview(slide.levels[0], max_side=300)  # 1 px per 4 level-0 px: 250 x 200, level 2's size
    preview.paint_slide(slide, chunk=64)
    assert preview.shape == (250, 200)
    assert np.array_equal(preview.image, slide.arrays[2])
    assert slide.largest <= 64 * 64


def test_a_larger_level_is_block_averaged_then_resampled():
    slide = FakeSlide(pyramid(np.random.default_rng(1), (1002, 806)))
    preview = Preview(slide.levels[0], max_side=100)  # 101 x 81; level 2 (251 x 202) is closest, k = 2
    preview.paint_slide(slide, chunk=50)
    expected = np.rint(reference(slide.arrays[2], 2, preview.shape)).astype(np.uint8)
    assert np.abs(preview.image.astype(int) - expected).max() <= 1  # float32 sums vs float64 means
    assert (preview.image != expected).mean() < 0.01


def test_a_16_bit_gray_slide_is_stretched_to_8_bit_rgb():
    rng = np.random.default_rng(2)
    slide = FakeSlide(pyramid(rng, (512, 512), np.uint16, channels=1, top=4000))
    preview = Preview(slide.levels[0], max_side=128)  # level 2 exactly
    preview.paint_slide(slide)
    img = preview.image
    assert img.dtype == np.uint8 and img.shape == (128, 128, 3)
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    src = slide.arrays[2][..., 0].astype(float)
    assert np.corrcoef(src.ravel(), img[..., 0].ravel())[0, 1] > 0.99  # a monotone stretch
    assert img.min() == 0 and img.max() == 255
