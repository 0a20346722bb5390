"""Polyphase ripple and checkerboard energy against hand values and a slow DFT transcription."""

import numpy as np
import pytest
import torch

from seglab.analysis import checkerboard_energy, polyphase_ripple, power_spectrum


def slow_share(x: np.ndarray, s: int) -> float:
    """Power at (k N/s, l M/s), DC excluded, by explicit DFT sums; total by Parseval."""
    n, m = x.shape
    x = x - x.mean()
    ys, xs = np.mgrid[0:n, 0:m]
    grid = 0.0
    for k in range(s):
        for j in range(s):
            if k == j == 0:
                continue
            fy, fx = k * n // s, j * m // s
            coef = (x * np.exp(-2j * np.pi * (fy * ys / n + fx * xs / m))).sum()
            grid += abs(coef) ** 2
    return grid / (n * m * (x**2).sum())


def test_ripple_by_hand():
    y, x = np.mgrid[0:8, 0:8]
    checker = 1.0 + (-1.0) ** (y + x)  # phases (0,0),(1,1) = 2, others 0: std 1, mean |x| 1
    assert polyphase_ripple(checker, 2) == pytest.approx(1.0)
    assert polyphase_ripple(np.full((8, 8), 3.0), 2) == 0.0
    assert polyphase_ripple(np.zeros((4, 4)), 2) == 0.0
    assert polyphase_ripple(torch.from_numpy(checker)[None, None], 2) == pytest.approx(1.0)


def test_energy_against_slow_dft():
    rng = np.random.default_rng(0)
    for shape, s in (((16, 16), 2), ((16, 24), 4), ((12, 12), 3)):
        x = rng.standard_normal(shape) + 0.3 * np.cos(np.pi * np.arange(shape[1]))[None]
        assert checkerboard_energy(x, s) == pytest.approx(slow_share(x, s), rel=1e-9)


def test_pure_checkerboard_puts_everything_on_the_grid():
    y, x = np.mgrid[0:16, 0:16]
    assert checkerboard_energy((-1.0) ** (y + x), 2) == pytest.approx(1.0)
    assert checkerboard_energy(np.cos(np.pi * y / 2), 4) == pytest.approx(1.0)
    assert checkerboard_energy(np.cos(np.pi * y / 2), 2) == pytest.approx(0.0, abs=1e-12)


def test_spectrum_has_no_dc_and_bad_sizes_are_refused():
    assert power_spectrum(np.ones((4, 4)) * 5)[0, 0] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        checkerboard_energy(np.ones((6, 6)), 4)
