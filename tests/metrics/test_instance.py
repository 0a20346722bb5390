"""Instance metrics against slow per-instance transcriptions of their definitions and MONAI."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from seglab.metrics import InstanceMetrics, aji, aji_plus, object_f1, panoptic_quality
from seglab.metrics.overlap import pair_overlaps

_spec = importlib.util.spec_from_file_location("metrics_reference", Path(__file__).with_name("metrics_reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)


def _map(rows: list[str]) -> np.ndarray:
    """Tiny maps written as strings: '.' is background, digits/letters are ids."""
    return np.array([[0 if c == "." else int(c, 36) for c in r] for r in rows], np.int64)


EDGE_CASES = {
    "both_empty": (np.zeros((4, 4), int), np.zeros((4, 4), int)),
    "gt_empty": (np.zeros((4, 4), int), _map(["11..", "11..", "....", "...."])),
    "pred_empty": (_map(["11..", "11..", "....", "...."]), np.zeros((4, 4), int)),
    "identical_noncontiguous": (_map(["z..7", "z..7", "...7", "5..."]), _map(["z..7", "z..7", "...7", "5..."])),
    "relabelled": (_map(["22..", "22.9", "...9"]), _map(["55..", "55.1", "...1"])),
    "one_pred_covers_two": (_map(["11.22", "11.22"]), _map(["77777", "77777"])),
    "two_preds_on_one": (_map(["11111", "11111"]), _map(["33.44", "33.44"])),
    "iou_exactly_half": (_map(["1111", "...."]), _map(["11..", "...."])),
    "iou_just_above_half": (_map(["111.", "...."]), _map(["11..", "...."])),
    "disjoint": (_map(["11..", "...."]), _map(["..22", "...."])),
    "gt_without_overlap": (_map(["11..", "....", "..33"]), _map(["11..", "....", "...."])),
}


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_match_definition(name):
    gt, pred = EDGE_CASES[name]
    assert aji(gt, pred) == pytest.approx(ref.ref_aji(gt, pred), abs=1e-12)
    assert aji_plus(gt, pred) == pytest.approx(ref.ref_aji_plus(gt, pred), abs=1e-12)
    for thr in (0.5, 0.3, 0.75):
        got, want = panoptic_quality(gt, pred, iou_threshold=thr), ref.ref_pq(gt, pred, thr)
        assert got == pytest.approx(want, abs=1e-12), thr


def test_hand_values():
    gt, pred = EDGE_CASES["one_pred_covers_two"]
    # both nuclei take prediction 7 (IoU 4/10 each): C = 4 + 4, U = 10 + 10.
    assert aji(gt, pred) == pytest.approx(8 / 20)
    # one-to-one: one nucleus pairs with 7 (4/10), the other is unpaired: U = 10 + 4.
    assert aji_plus(gt, pred) == pytest.approx(4 / 14)
    # IoU == 0.5 is not a match (strictly greater, Kirillov et al.).
    r = panoptic_quality(*EDGE_CASES["iou_exactly_half"])
    assert (r["tp"], r["fp"], r["fn"], r["pq"]) == (0, 1, 1, 0.0)
    assert panoptic_quality(*EDGE_CASES["iou_just_above_half"])["pq"] == pytest.approx(2 / 3)
    assert object_f1(*EDGE_CASES["iou_just_above_half"], thresholds=(0.5, 0.7)) == pytest.approx(
        {"f1@0.5": 1.0, "precision@0.5": 1.0, "recall@0.5": 1.0, "f1@0.7": 0.0, "precision@0.7": 0.0, "recall@0.7": 0.0}
    )


def test_empty_conventions():
    z = np.zeros((3, 3), int)
    one = z.copy()
    one[1, 1] = 4
    assert aji(z, z) == aji_plus(z, z) == 1.0
    assert panoptic_quality(z, z) == {"pq": 1.0, "sq": 1.0, "dq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    assert object_f1(z, z)["f1@0.5"] == 1.0
    for a, b in ((z, one), (one, z)):
        assert aji(a, b) == aji_plus(a, b) == panoptic_quality(a, b)["pq"] == object_f1(a, b)["f1@0.5"] == 0.0


@pytest.mark.parametrize("seed", range(25))
def test_random_maps_match_definition(seed):
    rng = np.random.default_rng(seed)
    gt, pred = ref.random_instance_pair(rng)
    assert aji(gt, pred) == pytest.approx(ref.ref_aji(gt, pred), abs=1e-12)
    assert aji_plus(gt, pred) == pytest.approx(ref.ref_aji_plus(gt, pred), abs=1e-12)
    for thr in (0.5, 0.25, 0.6):
        assert panoptic_quality(gt, pred, iou_threshold=thr) == pytest.approx(ref.ref_pq(gt, pred, thr), abs=1e-12)
    f1 = object_f1(gt, pred, thresholds=(0.5, 0.75))
    for thr in (0.5, 0.75):
        tp, fp, fn, _ = ref.ref_pq_stats(gt, pred, thr)
        assert f1[f"f1@{thr}"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
        assert f1[f"precision@{thr}"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert f1[f"recall@{thr}"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)


def test_random_dense_partitions():
    """Voronoi-like maps where every pixel is an instance: many overlaps per nucleus."""
    rng = np.random.default_rng(7)
    for _ in range(4):
        gt = rng.integers(0, 4, (6, 6)).repeat(4, 0).repeat(4, 1) * 3 + 2
        pred = np.roll(gt, 2, axis=1) + 100 * rng.integers(0, 2, gt.shape)
        assert aji(gt, pred) == pytest.approx(ref.ref_aji(gt, pred))
        assert aji_plus(gt, pred) == pytest.approx(ref.ref_aji_plus(gt, pred))
        assert panoptic_quality(gt, pred, iou_threshold=0.1) == pytest.approx(ref.ref_pq(gt, pred, 0.1))


def test_dtypes_torch_and_large_ids():
    gt, pred = ref.random_instance_pair(np.random.default_rng(3))
    want = panoptic_quality(gt, pred)
    big = np.where(pred > 0, pred + 2**40, 0)  # forces the sparse (sort-based) pairing path
    assert panoptic_quality(gt, big) == pytest.approx(want)
    assert aji(gt, big) == pytest.approx(aji(gt, pred))
    assert panoptic_quality(torch.from_numpy(gt).to(torch.int32), torch.from_numpy(pred)) == pytest.approx(want)
    assert panoptic_quality(gt.astype(np.uint16), pred.astype(np.uint16)) == pytest.approx(want)
    vol_g, vol_p = np.stack([gt, gt]), np.stack([pred, pred])  # any shape: a 3-D volume
    assert aji(vol_g, vol_p) == pytest.approx(aji(gt, pred))


def test_overlap_table_matches_masks():
    gt, pred = ref.random_instance_pair(np.random.default_rng(11))
    ov = pair_overlaps(gt, pred)
    g_ids, p_ids, inter, union, iou = ref.iou_matrix(gt, pred)
    assert ov.gt_ids.tolist() == g_ids and ov.pred_ids.tolist() == p_ids
    dense = np.zeros_like(inter)
    dense[ov.pair_gt, ov.pair_pred] = ov.inter
    np.testing.assert_array_equal(dense, inter)
    np.testing.assert_allclose(ov.iou, iou[ov.pair_gt, ov.pair_pred])


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        aji(np.zeros((3, 3), int), np.zeros((3, 4), int))


@pytest.mark.parametrize("seed", range(6))
def test_pq_matches_monai(seed):
    """MONAI also matches on IoU strictly above the threshold (and uses Munkres below 0.5)."""
    from monai.metrics import compute_panoptic_quality

    gt, pred = ref.random_instance_pair(np.random.default_rng(100 + seed))
    gt[:2, :2], pred[:2, :2] = 1, 1  # make sure a tiny exact-0.5 pair never hides in the data
    for thr in (0.5, 0.3):
        tp, fp, fn, iou_sum = compute_panoptic_quality(
            torch.from_numpy(pred), torch.from_numpy(gt), match_iou_threshold=thr, output_confusion_matrix=True
        ).tolist()
        got = panoptic_quality(gt, pred, iou_threshold=thr)
        assert (got["tp"], got["fp"], got["fn"]) == (tp, fp, fn)
        assert got["sq"] * got["tp"] == pytest.approx(iou_sum, rel=1e-6)  # MONAI sums float32 IoUs


def test_iou_half_is_not_a_match_in_monai_either():
    from monai.metrics import compute_panoptic_quality

    gt, pred = EDGE_CASES["iou_exactly_half"]
    tp, fp, fn, _ = compute_panoptic_quality(
        torch.from_numpy(pred), torch.from_numpy(gt), output_confusion_matrix=True
    ).tolist()
    assert (tp, fp, fn) == (0, 1, 1)


@pytest.mark.parametrize("seed", range(4))
def test_pq_matches_torchmetrics(seed):
    """torchmetrics PanopticQuality (things={1}, background as stuff 0), class-1 score; strict > 0.5."""
    from torchmetrics.detection import PanopticQuality

    gt, pred = ref.random_instance_pair(np.random.default_rng(200 + seed))
    metric = PanopticQuality(things={1}, stuffs={0}, return_sq_and_rq=True, return_per_class=True)

    def panoptic(m):
        return torch.from_numpy(np.stack([(m > 0).astype(np.int64), m], -1)[None])

    metric.update(panoptic(pred), panoptic(gt))
    pq_tm, sq_tm, rq_tm = metric.compute()[0].tolist()
    got = panoptic_quality(gt, pred)
    assert (got["pq"], got["sq"], got["dq"]) == pytest.approx((pq_tm, sq_tm, rq_tm), abs=1e-6)  # float32 output


def test_instance_metrics_mean_and_pooled():
    rng = np.random.default_rng(5)
    pairs = [ref.random_instance_pair(rng) for _ in range(3)] + [(np.zeros((48, 48), int),) * 2]
    acc = InstanceMetrics()
    for gt, pred in pairs[:2]:
        acc.update(gt, pred)
    acc.update(np.stack([p[0] for p in pairs[2:]]), torch.from_numpy(np.stack([p[1] for p in pairs[2:]])))
    out = acc.compute()
    assert len(acc.per_image) == 4
    # mean: plain average of per-image scores
    assert out["mean"]["aji"] == pytest.approx(np.mean([ref.ref_aji(g, p) for g, p in pairs]))
    assert out["mean"]["pq"] == pytest.approx(np.mean([ref.ref_pq(g, p)["pq"] for g, p in pairs]))
    assert out["mean"]["dice"] == pytest.approx(np.mean([ref.ref_fg_dice(g, p) for g, p in pairs]))
    # pooled: one score from counts summed over all images
    stats = np.array([ref.ref_pq_stats(g, p) for g, p in pairs])
    tp, fp, fn, iou_sum = stats.sum(0)
    assert out["pooled"]["pq"] == pytest.approx(iou_sum / (tp + 0.5 * fp + 0.5 * fn))
    assert out["pooled"]["sq"] == pytest.approx(iou_sum / tp)
    assert out["pooled"]["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    inter = sum(np.logical_and(g > 0, p > 0).sum() for g, p in pairs)
    total = sum((g > 0).sum() + (p > 0).sum() for g, p in pairs)
    assert out["pooled"]["dice"] == pytest.approx(2 * inter / total)
    c_u = [ref.ref_aji_sums(g, p) for g, p in pairs]
    assert out["pooled"]["aji"] == pytest.approx(sum(c for c, _ in c_u) / sum(u for _, u in c_u))
    acc.reset()
    assert acc.per_image == []


@pytest.mark.parametrize("offset,max_dense_bins", [(0, None), (10**5, None), (2**40, None), (0, 10), (10**5, 10)])
def test_every_pairing_path_gives_the_same_table(offset, max_dense_bins):
    """Raw-id bincount, look-up-table relabelling, np.unique relabelling and the sparse table."""
    gt, pred = ref.random_instance_pair(np.random.default_rng(21))
    want = pair_overlaps(gt, pred)
    shifted = np.where(pred > 0, pred + offset, 0)
    got = pair_overlaps(gt, shifted, max_dense_bins=max_dense_bins)
    np.testing.assert_array_equal(got.pred_ids, want.pred_ids + offset)
    for name in ("gt_ids", "gt_area", "pred_area", "pair_gt", "pair_pred", "inter", "union", "iou"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_instance_metrics_without_images_is_nan():
    out = InstanceMetrics(f1_thresholds=(0.5, 0.75)).compute()
    assert set(out["mean"]) == {"aji", "aji_plus", "pq", "sq", "dq", "f1", "dice", "f1@0.5", "precision@0.5",
                                "recall@0.5", "f1@0.75", "precision@0.75", "recall@0.75"}
    assert all(np.isnan(v) for v in out["pooled"].values())
    acc = InstanceMetrics(f1_thresholds=(0.5, 0.75))
    acc.update(np.zeros((4, 4), int), np.zeros((4, 4), int))
    assert set(acc.compute()["mean"]) == set(out["mean"])  # same keys once images are seen
