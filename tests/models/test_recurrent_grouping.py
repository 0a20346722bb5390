"""RecurrentMeanShift against a column-layout numpy transcription of Kong & Fowlkes's update
X <- X K D^{-1} (vMF kernel, renormalised), kernel equivalence on the sphere, masks, gradients."""

import numpy as np
import pytest
import torch

from seglab.errors import ConfigError
from seglab.models.recurrent_grouping import RecurrentMeanShift


def _gbms_reference(points: np.ndarray, delta: float, n_iter: int) -> list[np.ndarray]:
    """The paper's update with X as E x P columns, D = diag(K^T 1), unit columns after each step."""
    x = points.T / np.linalg.norm(points.T, axis=0, keepdims=True)
    out = [x.T.copy()]
    for _ in range(n_iter):
        k = np.exp(delta * x.T @ x)
        d_inv = np.diag(1.0 / k.sum(0))
        x = x @ k @ d_inv
        x = x / np.linalg.norm(x, axis=0, keepdims=True)
        out.append(x.T.copy())
    return out


def test_vmf_matches_reference():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 5))
    ours = RecurrentMeanShift(n_iter=3, bandwidth=0.7)(torch.from_numpy(points))
    ref = _gbms_reference(points, 1 / 0.7**2, 3)
    assert len(ours) == 4
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-10, atol=1e-12)


def test_batched_equals_per_image_and_gaussian_equals_vmf_on_sphere():
    g = torch.Generator().manual_seed(1)
    pts = torch.nn.functional.normalize(torch.randn(3, 25, 4, generator=g, dtype=torch.float64), dim=-1)
    vmf = RecurrentMeanShift(n_iter=2, bandwidth=0.5)
    batched = vmf(pts)[-1]
    for i in range(3):
        torch.testing.assert_close(batched[i], vmf(pts[i])[-1])
    gauss = RecurrentMeanShift(n_iter=1, bandwidth=0.5, kernel="gaussian")
    stepped = torch.nn.functional.normalize(gauss(pts)[-1], dim=-1)
    torch.testing.assert_close(stepped, vmf(pts)[1])


def test_gaussian_kernel_matches_formula_and_eta():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 6, 3, generator=g, dtype=torch.float64)
    m = RecurrentMeanShift(n_iter=1, bandwidth=1.3, kernel="gaussian", eta=0.5)
    k = torch.tensor([[np.exp(-float(((x[0, i] - x[0, j]) ** 2).sum()) / (2 * 1.3**2)) for j in range(6)]
                      for i in range(6)], dtype=torch.float64)
    torch.testing.assert_close(m.kernel_matrix(x)[0], k)
    expected = 0.5 * x[0] + 0.5 * (k @ x[0]) / k.sum(1, keepdim=True)
    torch.testing.assert_close(m(x)[-1][0], expected)


def test_clusters_contract():
    g = torch.Generator().manual_seed(3)
    centres = torch.eye(8)[:2]  # orthogonal: the loss's margin alpha = 0.5 asks exactly this
    pts = torch.cat([centres[0] + 0.15 * torch.randn(30, 8, generator=g),
                     centres[1] + 0.15 * torch.randn(30, 8, generator=g)])
    out = RecurrentMeanShift(n_iter=5, bandwidth=0.5)(pts)
    spread = [float(o[:30].std(0).sum()) for o in out]
    assert all(b < a for a, b in zip(spread, spread[1:], strict=False))
    between = float((out[-1][:30].mean(0) - out[-1][30:].mean(0)).norm())
    assert between > 1.0  # still far apart: orthogonal clusters stay separated


def test_mask_excludes_points():
    g = torch.Generator().manual_seed(4)
    pts = torch.randn(1, 20, 3, generator=g, dtype=torch.float64)
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, :12] = True
    m = RecurrentMeanShift(n_iter=2, bandwidth=0.6)
    torch.testing.assert_close(m(pts, mask)[-1][0, :12], m(pts[:, :12])[-1][0])


def test_differentiable():
    g = torch.Generator().manual_seed(5)
    pts = torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    m = RecurrentMeanShift(n_iter=2, bandwidth=0.8)
    assert torch.autograd.gradcheck(lambda p: m(p)[-1], (pts,))


def test_bad_options():
    with pytest.raises(ConfigError):
        RecurrentMeanShift(kernel="cosine")
    with pytest.raises(ConfigError):
        RecurrentMeanShift(bandwidth=0)
