"""Panoptic PQ (things and stuff) against a per-segment transcription of panopticapi and torchmetrics."""

import numpy as np
import pytest
import torch

from seglab.metrics import PanopticMetrics, panoptic_scores

VOID = 255


def _segments(sem, inst, things, stuffs):
    """{(class, instance): mask}; stuff is one segment per class; void and thing id 0 excluded."""
    segs = {}
    for c in things:
        for i in np.unique(inst[(sem == c) & (inst > 0)]):
            segs[(c, int(i))] = (sem == c) & (inst == i)
    for c in stuffs:
        if np.any(sem == c):
            segs[(c, 0)] = sem == c
    return segs


def ref_panoptic_counts(gs, gi, ps, pi, things, stuffs):
    """panopticapi pq_compute_single_core, segment by segment with boolean masks."""
    gt_segs, pred_segs = _segments(gs, gi, things, stuffs), _segments(ps, pi, things, stuffs)
    gt_void = ~np.logical_or.reduce([m for m in gt_segs.values()] + [np.zeros(gs.shape, bool)])
    stats = {c: [0, 0, 0, 0.0] for c in sorted(things | stuffs)}  # tp, fp, fn, iou
    g_matched, p_matched = set(), set()
    for gk, gm in gt_segs.items():
        for pk, pm in pred_segs.items():
            if gk[0] != pk[0]:
                continue
            inter = np.sum(gm & pm)
            union = pm.sum() + gm.sum() - inter - np.sum(pm & gt_void)
            if inter and inter / union > 0.5:
                stats[gk[0]][0] += 1
                stats[gk[0]][3] += inter / union
                g_matched.add(gk)
                p_matched.add(pk)
    for gk in gt_segs:
        if gk not in g_matched:
            stats[gk[0]][2] += 1
    for pk, pm in pred_segs.items():
        if pk not in p_matched and np.sum(pm & gt_void) / pm.sum() <= 0.5:
            stats[pk[0]][1] += 1
    return stats


def ref_average(stats, classes):
    vals = []
    for c in classes:
        tp, fp, fn, iou = stats[c]
        if tp + fp + fn:
            vals.append(iou / (tp + 0.5 * fp + 0.5 * fn))
    return np.mean(vals)


def _random_panoptic(rng, size=32, void=True):
    """Semantic classes 0 (stuff), 1 (stuff), 2 and 3 (things) with blobs; optional void."""
    sem = np.where(np.arange(size)[None, :] < size // 3, 1, 0).repeat(size, 0)
    inst = np.zeros((size, size), int)
    yy, xx = np.mgrid[:size, :size]
    for k in range(8):
        cy, cx, r = rng.integers(0, size), rng.integers(0, size), rng.integers(2, 6)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        sem[m], inst[m] = 2 + k % 2, 10 + 3 * k
    if void:
        sem[rng.random(sem.shape) < 0.05] = VOID
    return sem, inst


def _perturb(rng, sem, inst):
    ps, pi = np.roll(sem, rng.integers(-2, 3), 0), np.roll(inst, rng.integers(-2, 3), 1)
    ps[ps == VOID] = 0
    flip = rng.random(ps.shape) < 0.05
    ps[flip] = rng.integers(0, 4, flip.sum())
    pi = np.where(np.isin(ps, [2, 3]), np.where(pi > 0, pi, 999), 0)  # thing pixels always have an id
    return ps, pi


THINGS, STUFFS = {2, 3}, {0, 1}


@pytest.mark.parametrize("seed", range(12))
def test_random_against_panopticapi_transcription(seed):
    rng = np.random.default_rng(seed)
    gs, gi = _random_panoptic(rng)
    ps, pi = _perturb(rng, gs, gi)
    if seed % 3 == 0:  # unassigned prediction pixels and a big mostly-void false positive
        ps[:3] = VOID
        gs[-8:, -8:] = VOID
        ps[-7:, -7:], pi[-7:, -7:] = 2, 4242
    got = panoptic_scores(gs, gi, ps, pi, things=THINGS, stuffs=STUFFS)
    stats = ref_panoptic_counts(gs, gi, ps, pi, THINGS, STUFFS)
    for c, (tp, fp, fn, iou) in stats.items():
        pc = got["per_class"][c]
        assert (pc["tp"], pc["fp"], pc["fn"]) == (tp, fp, fn), c
        assert pc["iou_sum"] == pytest.approx(iou)
    assert got["pq"] == pytest.approx(ref_average(stats, sorted(THINGS | STUFFS)))
    assert got["pq_things"] == pytest.approx(ref_average(stats, sorted(THINGS)))
    assert got["pq_stuff"] == pytest.approx(ref_average(stats, sorted(STUFFS)))


def test_hand_example():
    # stuff 0 everywhere but a thing (class 1) of 4 pixels and a void pixel
    gs = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, VOID]])
    gi = np.array([[0, 0, 0, 0], [0, 5, 5, 0], [0, 5, 5, 0]])
    ps = np.array([[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 1, 1]])
    pi = np.array([[0, 0, 0, 0], [0, 8, 8, 8], [0, 0, 8, 8]])
    r = panoptic_scores(gs, gi, ps, pi, things={1}, stuffs={0})
    # thing: inter 3, pred area 5 of which 1 on void, gt area 4 -> IoU 3 / (5 + 4 - 3 - 1) = 0.6
    assert r["per_class"][1] == pytest.approx({"pq": 0.6, "sq": 0.6, "rq": 1.0, "dq": 1.0, "tp": 1, "fp": 0, "fn": 0, "iou_sum": 0.6})
    # stuff: gt 7 pixels, pred 7 pixels, inter 6 -> IoU 6 / 8
    assert r["per_class"][0]["pq"] == pytest.approx(0.75)
    assert r["pq"] == pytest.approx((0.6 + 0.75) / 2)
    assert (r["pq_things"], r["pq_stuff"]) == pytest.approx((0.6, 0.75))


@pytest.mark.parametrize("seed", range(4))
def test_against_torchmetrics(seed):
    """torchmetrics handles void like panopticapi when the prediction has no void pixels."""
    from torchmetrics.detection import PanopticQuality

    rng = np.random.default_rng(50 + seed)
    tm = PanopticQuality(things=THINGS, stuffs=STUFFS, return_sq_and_rq=True, return_per_class=True)
    acc = PanopticMetrics(things=THINGS, stuffs=STUFFS)
    for _ in range(3):
        gs, gi = _random_panoptic(rng)
        ps, pi = _perturb(rng, gs, gi)
        gi = np.where(np.isin(gs, [2, 3]), np.where(gi > 0, gi, 777), 0)  # no thing pixel without id
        acc.update(gs, gi, torch.from_numpy(ps), pi)
        to_t = lambda s, i: torch.from_numpy(np.stack([s, i], -1)[None])  # noqa: E731
        tm.update(to_t(ps, pi), to_t(gs, gi))
    per_class = tm.compute().numpy()  # (classes, 3): things sorted then stuff sorted
    got = acc.compute()
    for row, c in zip(per_class, sorted(THINGS) + sorted(STUFFS), strict=True):
        assert (got["per_class"][c]["pq"], got["per_class"][c]["sq"], got["per_class"][c]["rq"]) == pytest.approx(tuple(row), abs=1e-6)


def test_empty_and_errors():
    z = np.zeros((4, 4), int)
    void = np.full((4, 4), VOID)
    r = panoptic_scores(void, z, void, z, things={1}, stuffs={0})
    assert r["pq"] == r["pq_things"] == r["pq_stuff"] == 1.0
    assert np.isnan(panoptic_scores(void, z, void, z, things={1}, stuffs=set())["pq_stuff"])
    with pytest.raises(ValueError, match="class 7"):
        panoptic_scores(z + 7, z, z, z, things={1}, stuffs={0})
    with pytest.raises(ValueError, match="shape"):
        panoptic_scores(z, z, z[:2], z[:2], things={1}, stuffs={0})
