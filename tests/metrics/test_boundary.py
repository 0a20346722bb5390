"""Boundary F1 against a slow, obvious transcription (loops over pixels)."""

import numpy as np
import pytest

from seglab.metrics import boundary_f1


def slow_boundary_f1(gt, pred, tol):
    def edges(lab, c):
        h, w = lab.shape
        pts = []
        for y in range(h):
            for x in range(w):
                if lab[y, x] != c:
                    continue
                for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and lab[yy, xx] != c:
                        pts.append((y, x))
                        break
        return pts

    def near(a, b):
        return sum(any((y - v) ** 2 + (x - u) ** 2 <= tol**2 for v, u in b) for y, x in a)

    scores = []
    for c in sorted(set(np.unique(gt)) | set(np.unique(pred))):
        g, p = edges(gt, c), edges(pred, c)
        if not g and not p:
            scores.append(1.0)
            continue
        prec = near(p, g) / len(p) if p else 0.0
        rec = near(g, p) / len(g) if g else 0.0
        scores.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return float(np.mean(scores))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_slow_transcription(seed):
    rng = np.random.default_rng(seed)
    gt = np.zeros((20, 20), dtype=int)
    gt[4:12, 5:15] = 1
    gt[14:18, 2:6] = 2
    pred = np.roll(gt, rng.integers(-2, 3), axis=int(rng.integers(2)))
    pred[rng.random((20, 20)) < 0.05] = 1
    for tol in (0, 1, 2.5):
        assert boundary_f1(gt, pred, tolerance=tol) == pytest.approx(slow_boundary_f1(gt, pred, tol))


def test_identical_empty_and_ignored():
    gt = np.zeros((8, 8), dtype=int)
    gt[2:5, 2:5] = 1
    assert boundary_f1(gt, gt) == 1.0
    assert boundary_f1(np.zeros((8, 8), int), np.zeros((8, 8), int)) == 1.0
    assert boundary_f1(gt, np.zeros((8, 8), int)) == 0.0  # no predicted boundary of either class
    ignored = gt.copy()
    ignored[0, 0] = 255
    assert boundary_f1(ignored, gt) == 1.0
