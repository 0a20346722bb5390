"""CoNIC mPQ+ and PanNuke mPQ / bPQ against slow transcriptions of their reference scripts, and
the per-class figures against torchmetrics' PanopticQuality."""

import numpy as np
import pytest
import torch

from seglab.metrics.panoptic import NucleusTypeMetrics, PanopticMetrics

TYPES = (1, 2, 3)


def slow_pq_stats(true, pred):
    """CoNIC's get_pq (match_iou 0.5): every gt id against every overlapping pred id, masks."""
    t_ids = [i for i in np.unique(true) if i]
    p_ids = [i for i in np.unique(pred) if i]
    paired_t, paired_p, ious = set(), set(), []
    for t in t_ids:
        tm = true == t
        for p in np.unique(pred[tm]):
            if p == 0:
                continue
            pm = pred == p
            iou = (tm & pm).sum() / (tm | pm).sum()
            if iou > 0.5:
                paired_t.add(t)
                paired_p.add(p)
                ious.append(iou)
    tp = len(paired_t)
    return tp, len(p_ids) - len(paired_p), len(t_ids) - tp, float(sum(ious))


def slow_conic(images):
    """compute_stats.py, seg_class mode: per class stats pooled over images, then the mean."""
    totals = np.zeros((len(TYPES), 4))
    for gi, gc, pi, pc in images:
        for j, c in enumerate(TYPES):
            totals[j] += slow_pq_stats(gi * (gc == c), pi * (pc == c))
    pqs = []
    for tp, fp, fn, iou in totals:
        dq = tp / (tp + 0.5 * fp + 0.5 * fn + 1e-6)
        sq = iou / (tp + 1e-6)
        pqs.append(dq * sq)
    return float(np.mean(pqs)), pqs


def slow_pq(true, pred):
    tp, fp, fn, iou = slow_pq_stats(true, pred)
    return (tp / (tp + 0.5 * fp + 0.5 * fn + 1e-6)) * (iou / (tp + 1e-6))


def slow_pannuke(images):
    """PanNuke-metrics run.py: per image and class, skip classes absent from the image's ground
    truth, nanmean over the image's classes, then over images; bPQ on the binarised maps."""
    m_all, b_all = [], []
    for gi, gc, pi, pc in images:
        b_all.append(np.nan if not gi.any() else slow_pq(gi, pi))
        row = []
        for c in TYPES:
            t, p = gi * (gc == c), pi * (pc == c)
            row.append(np.nan if not t.any() else slow_pq(t, p))
        m_all.append(row)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning) if np.isnan(m_all).all(1).any() else _nothing():
        per_image = [np.nanmean(r) for r in m_all]
    return float(np.nanmean(per_image)), float(np.nanmean(b_all)), np.nanmean(np.array(m_all, float), 0)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def random_nuclei(rng, size=48, n=14, mixed=True):
    """Instance map of discs with a type each (class map 0 outside); a prediction perturbed."""
    yy, xx = np.mgrid[:size, :size]
    gi, gc = np.zeros((size, size), int), np.zeros((size, size), int)
    for k in range(1, n + 1):
        cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(2, 6))]
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        gi[m], gc[m] = k, rng.choice(TYPES)
    shift = tuple(rng.integers(-2, 3, 2))
    pi, pc = np.roll(gi, shift, (0, 1)), np.roll(gc, shift, (0, 1))
    relabel = rng.random(n + 1) < 0.2  # some instances take a wrong type (mixed: pixel by pixel)
    wrong = rng.choice(TYPES, size=pc.shape) if mixed else rng.choice(TYPES, size=n + 1)[pi]
    pc = np.where((pi > 0) & relabel[pi], wrong, pc)
    drop = rng.random(n + 1) < 0.1
    dropped = drop[pi]
    pi[dropped], pc[dropped] = 0, 0
    return gi, gc, pi, pc


@pytest.mark.parametrize("seed", range(6))
def test_against_conic_and_pannuke_transcriptions(seed):
    rng = np.random.default_rng(seed)
    images = [random_nuclei(rng) for _ in range(4)]
    if seed == 0:  # an image without ground truth nuclei
        gi, gc, pi, pc = images[0]
        images[0] = (np.zeros_like(gi), np.zeros_like(gc), pi, pc)
    acc = NucleusTypeMetrics(classes=TYPES)
    for im in images:
        acc.update(*im)
    got = acc.compute()
    mpq_plus, per_class = slow_conic(images)
    assert got["mpq_plus"] == pytest.approx(mpq_plus, abs=1e-5)
    assert list(got["pq_plus_per_class"].values()) == pytest.approx(per_class, abs=1e-5)
    mpq, bpq, class_pq = slow_pannuke(images)
    assert got["mpq"] == pytest.approx(mpq, abs=1e-5)
    assert got["bpq"] == pytest.approx(bpq, abs=1e-5)
    assert list(got["pq_per_class"].values()) == pytest.approx(list(class_pq), abs=1e-5, nan_ok=True)


def test_per_class_pooled_equals_torchmetrics():
    """Without void, CoNIC's pooled per-class PQ is panopticapi's per-class PQ over the things."""
    from torchmetrics.detection import PanopticQuality

    rng = np.random.default_rng(7)
    things, stuffs = set(TYPES), {0}
    tm = PanopticQuality(things=things, stuffs=stuffs, return_per_class=True)
    ours, pan = NucleusTypeMetrics(classes=TYPES), PanopticMetrics(things=things, stuffs=stuffs)
    for _ in range(3):
        gi, gc, pi, pc = random_nuclei(rng, mixed=False)
        ours.update(gi, gc, pi, pc)
        pan.update(gc, gi, pc, pi)
        to_t = lambda c, i: torch.from_numpy(np.stack([c, i], -1)[None])  # noqa: E731
        tm.update(to_t(pc, pi), to_t(gc, gi))
    expected = tm.compute().numpy()[0][: len(TYPES)]
    assert list(ours.compute()["pq_plus_per_class"].values()) == pytest.approx(expected.tolist(), abs=1e-6)
    pooled = pan.compute()
    assert [pooled["per_class"][c]["pq"] for c in TYPES] == pytest.approx(expected.tolist(), abs=1e-6)
    assert pooled["dq"] == pooled["rq"]


def test_empty():
    z = np.zeros((8, 8), int)
    acc = NucleusTypeMetrics(classes=TYPES)
    acc.update(z, z, z, z)
    r = acc.compute()
    assert r["mpq_plus"] == 0.0  # CoNIC: a class with no TP scores 0
    assert np.isnan(r["mpq"]) and np.isnan(r["bpq"])  # PanNuke: nothing to average
