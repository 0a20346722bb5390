"""Pair losses of the seeds and recurrent routes against slow per-pair transcriptions of the papers'
formulas (Fathi et al. 2017 eq. 1-2, Kong & Fowlkes 2018 Sec. 3.1), sampling, 0 and 1 instance."""

import math

import numpy as np
import pytest
import torch

from seglab.losses import FathiPairLoss, KongPairLoss, SeedinessLoss
from seglab.losses.embedding import (
    fathi_pair_loss,
    gather_pixels,
    kong_pair_loss,
    near_pairs,
    sample_pixels,
    seed_iou_targets,
)


def _weights(lab):
    """w_i = 1 / (number of sampled pixels of i's instance), 0 for label 0."""
    return [0.0 if a == 0 else 1.0 / sum(1 for b in lab if b == a) for a in lab]


def _fathi_slow(x, labels):
    losses = []
    for xe, lab in zip(x.tolist(), labels.tolist(), strict=True):
        w = _weights(lab)
        sums = {True: [0.0, 0.0], False: [0.0, 0.0]}
        for i in range(len(lab)):
            for j in range(len(lab)):
                if i == j or lab[i] == 0 or lab[j] == 0:
                    continue
                d2 = sum((a - b) ** 2 for a, b in zip(xe[i], xe[j], strict=True))
                sigma = 2.0 / (1.0 + math.exp(d2))
                same = lab[i] == lab[j]
                term = -math.log(sigma) if same else -math.log(1.0 - sigma)
                sums[same][0] += w[i] * w[j] * term
                sums[same][1] += w[i] * w[j]
        parts = [s / n for s, n in sums.values() if n > 0]
        if parts:
            losses.append(sum(parts) / len(parts))
    return sum(losses) / len(losses) if losses else 0.0


def _kong_slow(x, labels, alpha, pairs=None):
    losses = []
    for n, (xe, lab) in enumerate(zip(x.tolist(), labels.tolist(), strict=True)):
        w = _weights(lab)
        sums = {True: [0.0, 0.0], False: [0.0, 0.0]}
        for i in range(len(lab)):
            for j in range(len(lab)):
                if i == j or lab[i] == 0 or lab[j] == 0 or (pairs is not None and not pairs[n][i][j]):
                    continue
                ni = math.sqrt(sum(a * a for a in xe[i]))
                nj = math.sqrt(sum(b * b for b in xe[j]))
                cos = sum(a * b for a, b in zip(xe[i], xe[j], strict=True)) / (ni * nj)
                s = 0.5 * (1.0 + cos)
                same = lab[i] == lab[j]
                term = (1.0 - s) if same else max(0.0, s - alpha)
                sums[same][0] += w[i] * w[j] * term
                sums[same][1] += w[i] * w[j]
        parts = [s / n for s, n in sums.values() if n > 0]
        if parts:
            losses.append(sum(parts) / len(parts))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.fixture
def sampled():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 12, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([
        [1, 1, 1, 1, 1, 2, 2, 3, 0, 0, 7, 7],
        [5, 5, 5, 5, 5, 5, 0, 0, 0, 0, 0, 0],  # one instance: positives only
        [0] * 12,  # no instance: left out of the mean
    ])
    return x, labels


def test_fathi_pair_loss_matches_transcription(sampled):
    x, labels = sampled
    assert fathi_pair_loss(x, labels).item() == pytest.approx(_fathi_slow(x, labels), rel=1e-9)
    assert fathi_pair_loss(x[:1], labels[:1]).item() == pytest.approx(_fathi_slow(x[:1], labels[:1]), rel=1e-9)


@pytest.mark.parametrize("alpha", [0.5, 0.2])
def test_kong_pair_loss_matches_transcription(sampled, alpha):
    x, labels = sampled
    assert kong_pair_loss(x, labels, alpha=alpha).item() == pytest.approx(_kong_slow(x, labels, alpha), rel=1e-9)


def test_kong_pair_loss_on_near_pairs_matches_transcription(sampled):
    x, labels = sampled
    g = torch.Generator().manual_seed(1)
    index = torch.randperm(100, generator=g)[:36].reshape(3, 12)  # pixels of a 10 x 10 map
    pairs = near_pairs(index, 10, 4.0)
    for n in range(3):
        for i in range(12):
            for j in range(12):
                yi, xi, yj, xj = index[n, i] // 10, index[n, i] % 10, index[n, j] // 10, index[n, j] % 10
                assert bool(pairs[n, i, j]) == (math.hypot(yi - yj, xi - xj) <= 4.0)
    value = kong_pair_loss(x, labels, pairs=pairs).item()
    assert value == pytest.approx(_kong_slow(x, labels, 0.5, pairs.tolist()), rel=1e-9)
    assert value != pytest.approx(kong_pair_loss(x, labels).item())


def test_pair_losses_zero_instances_and_identical_embeddings():
    x = torch.zeros(2, 6, 3, requires_grad=True)
    for fn in (fathi_pair_loss, kong_pair_loss):
        loss = fn(x, torch.zeros(2, 6, dtype=torch.long))
        loss.backward()
        assert loss.item() == 0.0 and torch.isfinite(x.grad).all()
    # all embeddings equal, two instances: the negative term is large but finite, gradients finite
    x = torch.ones(1, 4, 3, requires_grad=True)
    loss = fathi_pair_loss(x, torch.tensor([[1, 1, 2, 2]]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_sample_pixels_foreground_unique_and_valid():
    inst = torch.zeros(2, 20, 20, dtype=torch.long)
    inst[0, :10] = 1
    inst[0, 15:17, 15:17] = 2  # 4 pixels
    inst[1, 0, :3] = 4  # 3 foreground pixels only
    idx, ok = sample_pixels(inst, 16)
    flat = inst.reshape(2, -1)
    assert idx.shape == (2, 16) and ok[0].all() and ok[1].sum() == 3
    assert (flat.gather(1, idx)[ok] > 0).all()
    assert len(set(idx[0].tolist())) == 16
    # balanced sampling draws the small instance far more often than its 4 / 104 share
    torch.manual_seed(0)
    hits = [(flat[0, sample_pixels(inst[:1], 8)[0][0]] == 2).sum().item() for _ in range(50)]
    assert np.mean(hits) > 2.0
    hits_uniform = [(flat[0, sample_pixels(inst[:1], 8, balanced=False)[0][0]] == 2).sum().item()
                    for _ in range(50)]
    assert np.mean(hits_uniform) < 1.0


def test_seed_iou_targets_match_loops():
    g = torch.Generator().manual_seed(1)
    seed_emb, ref_emb = torch.randn(1, 5, 2, generator=g), torch.randn(1, 30, 2, generator=g)
    seed_ids = torch.tensor([[1, 2, 1, 3, 2]])
    ref_ids = torch.randint(0, 4, (1, 30), generator=g)
    ours = seed_iou_targets(seed_emb, seed_ids, ref_emb, ref_ids)
    for s in range(5):
        inter = union = 0
        for r in range(30):
            if ref_ids[0, r] == 0:
                continue
            d2 = float(((seed_emb[0, s] - ref_emb[0, r]) ** 2).sum())
            m = 2.0 / (1.0 + math.exp(d2)) > 0.5
            t = bool(ref_ids[0, r] == seed_ids[0, s])
            inter += m and t
            union += m or t
        assert ours[0, s].item() == pytest.approx(inter / max(union, 1))


def _maps(n=2, h=24, w=24):
    inst = torch.zeros(n, h, w, dtype=torch.long)
    inst[0, 2:10, 2:10], inst[0, 12:20, 4:18] = 3, 8
    inst[1, 5:15, 5:15] = 1  # one instance
    return inst


@pytest.mark.parametrize("loss", [FathiPairLoss(pixels=32), KongPairLoss(pixels=32)])
def test_modules_sample_and_backpropagate(loss):
    inst = _maps()
    emb = torch.randn(2, 4, 24, 24, requires_grad=True)
    value = loss(emb, inst)
    value.backward()
    assert torch.isfinite(value) and value > 0 and emb.grad.abs().sum() > 0
    # background pixels never receive gradient
    assert emb.grad[0][:, inst[0] == 0].abs().sum() == 0
    empty = loss(emb, torch.zeros_like(inst))
    assert empty.item() == 0.0


def test_seediness_loss_matches_manual_computation():
    inst = _maps()
    seediness = torch.randn(2, 1, 24, 24, requires_grad=True)
    emb = torch.randn(2, 4, 24, 24)
    loss_fn = SeedinessLoss(seeds=16, reference=64)
    torch.manual_seed(3)
    value = loss_fn(seediness, emb, inst)
    torch.manual_seed(3)
    s_idx, s_ok = sample_pixels(inst, 16)
    r_idx, r_ok = sample_pixels(inst, 64, balanced=False)
    flat = inst.reshape(2, -1)
    s_ids, r_ids = torch.where(s_ok, flat.gather(1, s_idx), 0), torch.where(r_ok, flat.gather(1, r_idx), 0)
    target = seed_iou_targets(gather_pixels(emb, s_idx), s_ids, gather_pixels(emb, r_idx), r_ids)
    logits = seediness.detach().reshape(2, -1)
    z, t = logits.gather(1, s_idx)[s_ok], target[s_ok]
    fg = (-(t * torch.log(torch.sigmoid(z)) + (1 - t) * torch.log(1 - torch.sigmoid(z)))).mean()
    zb = logits[flat == 0]
    bg = (-torch.log(1 - torch.sigmoid(zb))).mean()
    assert value.item() == pytest.approx(0.5 * (fg + bg).item(), rel=1e-5)
    value.backward()
    assert torch.isfinite(seediness.grad).all()
    # no foreground at all: background part only; nothing at all valid: zero
    only_bg = loss_fn(seediness, emb, torch.zeros_like(inst))
    assert only_bg.item() == pytest.approx((-torch.log(1 - torch.sigmoid(logits))).mean().item(), rel=1e-5)
    none = loss_fn(seediness, emb, torch.zeros_like(inst), valid=torch.zeros_like(inst, dtype=torch.bool))
    assert none.item() == 0.0
