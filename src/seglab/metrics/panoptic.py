"""Panoptic quality over classes, things and stuff (Kirillov et al. 2019; panopticapi rules).

A panoptic map is a semantic map (class per pixel, ``ignore_index`` = void) plus an instance map.
Segments are built per image:

* a **thing** class gives one segment per instance id > 0; thing pixels with instance 0 are void
  in the ground truth and unassigned in the prediction;
* a **stuff** class gives one segment per image (instance ids ignored);
* ``ignore_index`` pixels are void (ground truth) or unassigned (prediction).

Matching follows panopticapi's ``pq_compute_single_core``: a ground-truth and a predicted segment
of the same class match when IoU > 0.5, where the union leaves out the predicted pixels that lie
on ground-truth void; every unmatched ground-truth segment is a false negative; an unmatched
predicted segment is a false positive unless more than half of it lies on ground-truth void.
Counts are pooled per class over all images; ``PQ`` averages the per-class PQ over the classes
with ``TP + FP + FN > 0`` (``pq_things`` and ``pq_stuff`` over those of each kind). When no class
of a group has any segment the group scores 1.0 (nothing to find, nothing found); a group
without classes scores NaN.

Reference: Kirillov et al. 2019, "Panoptic Segmentation", CVPR; cocodataset/panopticapi.

Nucleus-type aggregates (:class:`NucleusTypeMetrics`), as the pathology communities compute them
over thing classes only, each instance matched within its class at IoU > 0.5 (plain IoU, no void):

* **mPQ+** (CoNIC challenge, ``compute_stats.py``): TP, FP, FN and the IoU sum of every class
  pooled over all images, PQ per class from the pooled counts, then the mean over every thing
  class (a class with no TP scores 0);
* **mPQ** (PanNuke, ``PanNuke-metrics/run.py``): PQ per image and class, classes absent from an
  image's ground truth skipped, the mean over each image's classes, then the mean over images
  (PanNuke then averages over tissue types; seglab has no tissue types, so one group);
* **bPQ** (PanNuke): binary PQ (all nuclei one class) per image, images without ground-truth
  nuclei skipped, then the mean over images.

``dq`` (detection quality, HoVer-Net's name) is panopticapi's ``rq`` (recognition quality); both
keys are given.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection

import numpy as np

from seglab.metrics.overlap import as_label_array, pair_overlaps


def _segment_codes(sem: np.ndarray, inst: np.ndarray, classes: np.ndarray, is_thing: np.ndarray,
                   width: int, ignore_index: int | None, name: str) -> np.ndarray:
    """One int64 code per pixel: ``1 + rank(class) * width + instance`` (0 = void)."""
    lut_size = int(max(sem.max(initial=0), classes.max(initial=0))) + 1
    rank = np.full(lut_size, -1, np.int64)
    rank[classes] = np.arange(len(classes))
    r = rank[sem]
    unknown = (r < 0) if ignore_index is None else (r < 0) & (sem != ignore_index)
    if unknown.any():
        raise ValueError(f"{name} holds class {int(sem[unknown].flat[0])}, neither a thing nor a stuff class")
    thing = np.zeros(lut_size, bool)
    thing[classes] = is_thing
    thing_px = thing[sem] & (r >= 0)
    code = 1 + r * width + np.where(thing_px, inst, 0)
    code[(r < 0) | (thing_px & (inst == 0))] = 0
    return code


def panoptic_counts(gt_semantic: object, gt_instance: object, pred_semantic: object, pred_instance: object,
                    *, things: Collection[int], stuffs: Collection[int], ignore_index: int | None = 255) -> dict:
    """Per-class TP, FP, FN and IoU sum of one image (arrays ordered as ``classes``).

    Args:
        gt_semantic, gt_instance: ground-truth class and instance maps.
        pred_semantic, pred_instance: predicted class and instance maps.
        things: thing class ids; stuffs: stuff class ids (disjoint).
        ignore_index: void class id (``None``: no void).

    Returns:
        ``{"classes", "tp", "fp", "fn", "iou_sum"}``, numpy arrays of length ``len(classes)``.

    Shape:
        all four maps: the same shape (``H x W``).
    """
    maps = [as_label_array(m, n) for m, n in zip(
        (gt_semantic, gt_instance, pred_semantic, pred_instance),
        ("gt_semantic", "gt_instance", "pred_semantic", "pred_instance"), strict=True)]
    if len({m.shape for m in maps}) != 1:
        raise ValueError(f"panoptic maps differ in shape: {[m.shape for m in maps]}")
    things, stuffs = set(things), set(stuffs)
    if things & stuffs:
        raise ValueError(f"classes {sorted(things & stuffs)} are both things and stuff")
    classes = np.array(sorted(things | stuffs), np.int64)
    is_thing = np.isin(classes, list(things))
    width = int(max(maps[1].max(initial=0), maps[3].max(initial=0))) + 1
    gt = _segment_codes(maps[0], maps[1], classes, is_thing, width, ignore_index, "gt_semantic")
    pred = _segment_codes(maps[2], maps[3], classes, is_thing, width, ignore_index, "pred_semantic")
    ov = pair_overlaps(gt, pred)
    g_cls, p_cls = (ov.gt_ids - 1) // width, (ov.pred_ids - 1) // width
    on_void = ov.pred_area - np.bincount(ov.pair_pred, weights=ov.inter, minlength=ov.num_pred)
    same = g_cls[ov.pair_gt] == p_cls[ov.pair_pred]
    union = ov.union - on_void[ov.pair_pred]
    iou = ov.inter / np.maximum(union, 1)
    match = np.flatnonzero(same & (iou > 0.5))  # unique by construction (panopticapi)
    g_hit, p_hit = np.zeros(ov.num_gt, bool), np.zeros(ov.num_pred, bool)
    g_hit[ov.pair_gt[match]], p_hit[ov.pair_pred[match]] = True, True
    fp = ~p_hit & (on_void <= 0.5 * ov.pred_area)
    k = len(classes)
    return {
        "classes": classes,
        "tp": np.bincount(g_cls[ov.pair_gt[match]], minlength=k),
        "fp": np.bincount(p_cls[fp], minlength=k),
        "fn": np.bincount(g_cls[~g_hit], minlength=k),
        "iou_sum": np.bincount(g_cls[ov.pair_gt[match]], weights=iou[match], minlength=k),
    }


def scores_from_counts(counts: dict, things: Collection[int]) -> dict:
    """PQ, SQ, RQ per class and averaged (all, things, stuff) from per-class counts."""
    classes, tp, fp, fn, iou = (counts[k] for k in ("classes", "tp", "fp", "fn", "iou_sum"))
    den = tp + 0.5 * fp + 0.5 * fn
    with np.errstate(invalid="ignore", divide="ignore"):
        rq = np.where(den > 0, tp / den, 0.0)
        sq = np.where(tp > 0, iou / np.maximum(tp, 1), 0.0)
    pq = sq * rq
    is_thing = np.isin(classes, list(things))
    out: dict = {}
    for suffix, group in (("", np.ones(len(classes), bool)), ("_things", is_thing), ("_stuff", ~is_thing)):
        used = group & (den > 0)
        for name, v in (("pq", pq), ("sq", sq), ("rq", rq), ("dq", rq)):
            out[name + suffix] = float(v[used].mean()) if used.any() else (1.0 if group.any() else float("nan"))
    out["per_class"] = {
        int(c): {"pq": float(pq[i]), "sq": float(sq[i]), "rq": float(rq[i]), "dq": float(rq[i]), "tp": int(tp[i]),
                 "fp": int(fp[i]), "fn": int(fn[i]), "iou_sum": float(iou[i])}
        for i, c in enumerate(classes)
    }
    return out


def panoptic_scores(gt_semantic: object, gt_instance: object, pred_semantic: object, pred_instance: object,
                    *, things: Collection[int], stuffs: Collection[int], ignore_index: int | None = 255) -> dict:
    """Panoptic quality of one image: ``pq``, ``sq``, ``rq`` and their ``_things`` / ``_stuff``
    averages, plus ``per_class`` ``{class: {pq, sq, rq, tp, fp, fn, iou_sum}}``.

    See the module docstring for the segment and void rules; arguments as :func:`panoptic_counts`.
    """
    counts = panoptic_counts(gt_semantic, gt_instance, pred_semantic, pred_instance,
                             things=things, stuffs=stuffs, ignore_index=ignore_index)
    return scores_from_counts(counts, things)


class PanopticMetrics:
    """Accumulate panoptic counts per class over a data set (pooled, as panopticapi).

    Args:
        things: thing class ids; stuffs: stuff class ids; ignore_index: void class id.
    """

    def __init__(self, *, things: Collection[int], stuffs: Collection[int], ignore_index: int | None = 255) -> None:
        self.things, self.stuffs, self.ignore_index = set(things), set(stuffs), ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget every image seen so far."""
        k = len(self.things | self.stuffs)
        self.counts = {"classes": np.array(sorted(self.things | self.stuffs), np.int64),
                       "tp": np.zeros(k, np.int64), "fp": np.zeros(k, np.int64),
                       "fn": np.zeros(k, np.int64), "iou_sum": np.zeros(k)}

    def update(self, gt_semantic: object, gt_instance: object, pred_semantic: object, pred_instance: object) -> None:
        """Add one image (see :func:`panoptic_counts`)."""
        c = panoptic_counts(gt_semantic, gt_instance, pred_semantic, pred_instance,
                            things=self.things, stuffs=self.stuffs, ignore_index=self.ignore_index)
        for key in ("tp", "fp", "fn", "iou_sum"):
            self.counts[key] = self.counts[key] + c[key]

    def compute(self) -> dict:
        """Scores from the pooled per-class counts (see :func:`scores_from_counts`)."""
        return scores_from_counts(self.counts, self.things)


def _type_codes(inst: np.ndarray, cls: np.ndarray, classes: np.ndarray, width: int) -> np.ndarray:
    """``1 + rank(class) * width + instance`` for instance pixels of a listed class, else 0."""
    lut = np.full(int(max(cls.max(initial=0), classes.max(initial=0))) + 1, -1, np.int64)
    lut[classes] = np.arange(len(classes))
    r = lut[cls]
    return np.where((inst > 0) & (r >= 0), 1 + r * width + inst, 0)


def nucleus_type_counts(gt_instance: object, gt_class: object, pred_instance: object, pred_class: object,
                        *, classes: Collection[int]) -> dict:
    """Per-class TP, FP, FN, IoU sum of one image, each instance matched within its class.

    Every class's instances are those pixels of the instance map whose class map holds that
    class (CoNIC's ``inst * (class == c)``); a pair matches at IoU > 0.5 (plain IoU).

    Returns:
        ``{"classes", "tp", "fp", "fn", "iou_sum"}`` (arrays ordered as ``classes``), plus the
        binary (class-agnostic) counts ``"binary": (tp, fp, fn, iou_sum)``.

    Shape:
        all four maps ``H x W``.
    """
    gi, gc, pi, pc = (as_label_array(m, n) for m, n in zip(
        (gt_instance, gt_class, pred_instance, pred_class),
        ("gt_instance", "gt_class", "pred_instance", "pred_class"), strict=True))
    if len({gi.shape, gc.shape, pi.shape, pc.shape}) != 1:
        raise ValueError(f"maps differ in shape: {[m.shape for m in (gi, gc, pi, pc)]}")
    cls = np.array(sorted(set(classes)), np.int64)
    k = len(cls)
    width = int(max(gi.max(initial=0), pi.max(initial=0))) + 1
    out = _match(_type_codes(gi, gc, cls, width), _type_codes(pi, pc, cls, width), width, k)
    out["classes"] = cls
    b = _match(gi, pi, int(1 << 62), 1)
    out["binary"] = (int(b["tp"][0]), int(b["fp"][0]), int(b["fn"][0]), float(b["iou_sum"][0]))
    return out


def _match(g: np.ndarray, p: np.ndarray, width: int, k: int) -> dict:
    ov = pair_overlaps(g, p)
    g_cls, p_cls = (ov.gt_ids - 1) // width, (ov.pred_ids - 1) // width
    match = np.flatnonzero((g_cls[ov.pair_gt] == p_cls[ov.pair_pred]) & (ov.iou > 0.5))
    tp = np.bincount(g_cls[ov.pair_gt[match]], minlength=k)
    return {"tp": tp, "fp": np.bincount(p_cls, minlength=k) - tp, "fn": np.bincount(g_cls, minlength=k) - tp,
            "iou_sum": np.bincount(g_cls[ov.pair_gt[match]], weights=ov.iou[match], minlength=k)}


def pq_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """PQ = SQ x DQ; 0 where there is no TP (as CoNIC and PanNuke compute it)."""
    den = tp + 0.5 * fp + 0.5 * fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tp > 0, iou / np.maximum(den, 1e-12), 0.0)


class NucleusTypeMetrics:
    """CoNIC's mPQ+ and PanNuke's mPQ and bPQ over images (module docstring).

    Args:
        classes: the thing (nucleus type) class ids.
    """

    def __init__(self, *, classes: Collection[int]) -> None:
        self.classes = np.array(sorted(set(classes)), np.int64)
        self.per_image: list[np.ndarray] = []  # K x 4 (tp, fp, fn, iou_sum)
        self.binary: list[tuple] = []

    def update(self, gt_instance: object, gt_class: object, pred_instance: object, pred_class: object) -> None:
        """Add one image (see :func:`nucleus_type_counts`)."""
        c = nucleus_type_counts(gt_instance, gt_class, pred_instance, pred_class, classes=self.classes)
        self.per_image.append(np.stack([c["tp"], c["fp"], c["fn"], c["iou_sum"]], 1).astype(float))
        self.binary.append(c["binary"])

    def compute(self) -> dict:
        """``mpq_plus``, ``pq_plus_per_class`` (CoNIC); ``mpq``, ``pq_per_class``, ``bpq`` (PanNuke)."""
        k = len(self.classes)
        stats = np.stack(self.per_image) if self.per_image else np.zeros((0, k, 4))
        pooled = stats.sum(0)
        pq_plus = pq_from_counts(*pooled.T)
        per_image = pq_from_counts(*np.moveaxis(stats, 2, 0))  # images x classes
        present = stats[..., 0] + stats[..., 2] > 0  # ground truth holds the class
        per_image = np.where(present, per_image, np.nan)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows and columns stay NaN
            image_mpq = np.nanmean(per_image, 1)
            class_pq = np.nanmean(per_image, 0)
            mpq = float(np.nanmean(image_mpq)) if np.isfinite(image_mpq).any() else float("nan")
            b = np.array(self.binary, float).reshape(-1, 4)
            bpq_img = np.where(b[:, 0] + b[:, 2] > 0, pq_from_counts(*b.T), np.nan)
            bpq = float(np.nanmean(bpq_img)) if np.isfinite(bpq_img).any() else float("nan")
        return {
            "mpq_plus": float(pq_plus.mean()) if k else float("nan"),
            "pq_plus_per_class": {int(c): float(v) for c, v in zip(self.classes, pq_plus, strict=True)},
            "mpq": mpq, "bpq": bpq,
            "pq_per_class": {int(c): float(v) for c, v in zip(self.classes, class_pq, strict=True)},
        }
