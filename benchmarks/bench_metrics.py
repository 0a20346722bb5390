"""Time seglab's instance PQ (and AJI) against torchmetrics and MONAI on one realistic map.

One run: a 1000 x 1000 ground-truth map with about 500 nuclei, and a prediction perturbed the way
real models err (shifted, eroded, dilated, merged, split, dropped nuclei, false positives). Each
tool computes PQ at IoU > 0.5 (all three match strictly above 0.5); the script checks that the
values agree, then prints the median wall time over repeats and seglab's speed-up.

    .venv/bin/python benchmarks/bench_metrics.py [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage

from seglab.metrics import aji, panoptic_quality


def make_ground_truth(rng: np.random.Generator, size: int = 1000, n: int = 520) -> np.ndarray:
    """Elliptical nuclei of radius 5-12 px at random positions; later nuclei cover earlier ones."""
    gt = np.zeros((size, size), np.int32)
    for k in range(1, n + 1):
        ry, rx = rng.uniform(5, 12, 2)
        cy, cx = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        y0, y1 = int(max(cy - 13, 0)), int(min(cy + 14, size))
        x0, x1 = int(max(cx - 13, 0)), int(min(cx + 14, size))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        gt[y0:y1, x0:x1][(u / ry) ** 2 + (v / rx) ** 2 <= 1] = k
    _, gt = np.unique(gt, return_inverse=True)  # drop fully covered ids: 1..N contiguous
    return gt.reshape(size, size).astype(np.int32)


def perturb(rng: np.random.Generator, gt: np.ndarray) -> np.ndarray:
    """A prediction with the errors of a real model, nucleus by nucleus (setup only, not timed)."""
    pred = np.zeros_like(gt)
    next_id = int(gt.max()) + 1
    boxes = ndimage.find_objects(gt)
    ids = np.arange(1, len(boxes) + 1)
    for k, box in zip(ids, boxes, strict=True):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in box)
        mask = gt[box] == k
        kind = rng.choice(["keep", "shift", "erode", "dilate", "split", "drop", "merge"],
                          p=[0.35, 0.15, 0.15, 0.15, 0.07, 0.06, 0.07])
        if kind == "drop":
            continue
        if kind == "shift":
            mask = np.roll(mask, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
        elif kind == "erode":
            mask = ndimage.binary_erosion(mask, iterations=int(rng.integers(1, 3)))
        elif kind == "dilate":
            mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 3)))
        target = pred[box]
        if kind == "split":
            cols = np.nonzero(mask.any(0))[0]
            left = mask & (np.arange(mask.shape[1])[None, :] < cols.mean())
            target[left & (target == 0)] = next_id
            mask = mask & ~left
            next_id += 1
        label = k
        if kind == "merge":  # join the nearest already-predicted neighbour
            neighbours = target[ndimage.binary_dilation(mask, iterations=3) & (target > 0)]
            label = int(neighbours[0]) if len(neighbours) else k
        target[mask & (target == 0)] = label
    # false positives: small blobs in the background
    for _ in range(40):
        cy, cx = rng.integers(5, gt.shape[0] - 5, 2)
        patch = pred[cy - 4 : cy + 4, cx - 4 : cx + 4]
        patch[patch == 0] = next_id
        next_id += 1
    return pred


def reference_aji(gt: np.ndarray, pred: np.ndarray) -> float:
    """Straightforward AJI: one boolean mask per nucleus, as the MoNuSeg/HoVer-Net code does."""
    c = u = 0
    used: set[int] = set()
    pred_ids = [int(i) for i in np.unique(pred) if i]
    pred_areas = {p: int((pred == p).sum()) for p in pred_ids}
    for g in (int(i) for i in np.unique(gt) if i):
        g_mask = gt == g
        best, best_iou, best_iu = None, 0.0, (0, 0)
        for p in (int(i) for i in np.unique(pred[g_mask]) if i):
            p_mask = pred == p
            inter, union = int((g_mask & p_mask).sum()), int((g_mask | p_mask).sum())
            if inter / union > best_iou:
                best, best_iou, best_iu = p, inter / union, (inter, union)
        if best is None:
            u += int(g_mask.sum())
        else:
            c, u = c + best_iu[0], u + best_iu[1]
            used.add(best)
    u += sum(a for p, a in pred_areas.items() if p not in used)
    return c / u


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="seglab repeats (peers: fewer)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the peers")
    args = parser.parse_args()

    import torch
    from monai.metrics import compute_panoptic_quality
    from torchmetrics.detection import PanopticQuality

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    gt = make_ground_truth(rng)
    pred = perturb(rng, gt)
    gt_t, pred_t = torch.from_numpy(gt.astype(np.int64)), torch.from_numpy(pred.astype(np.int64))
    print(f"map {gt.shape[0]} x {gt.shape[1]}: {len(np.unique(gt)) - 1} GT nuclei, "
          f"{len(np.unique(pred)) - 1} predicted; torch threads {args.threads}")

    def torchmetrics_pq():
        metric = PanopticQuality(things={1}, stuffs={0}, return_sq_and_rq=True, return_per_class=True)
        as_panoptic = lambda m: torch.stack([(m > 0).long(), m], -1)[None]  # noqa: E731
        metric.update(as_panoptic(pred_t), as_panoptic(gt_t))
        return metric.compute()[0].tolist()  # class 1 (things): pq, sq, rq

    def monai_pq():
        return compute_panoptic_quality(pred_t, gt_t, output_confusion_matrix=True).tolist()

    t_seg, ours = timed(lambda: panoptic_quality(gt, pred), args.repeats)
    t_tm, tm = timed(torchmetrics_pq, max(args.repeats // 4, 2))
    t_mo, mo = timed(monai_pq, 2)
    t_aji, aji_ours = timed(lambda: aji(gt, pred), args.repeats)
    t_aji_ref, aji_ref = timed(lambda: reference_aji(gt, pred), 1)

    assert abs(ours["pq"] - tm[0]) < 1e-6 and abs(ours["sq"] - tm[1]) < 1e-6 and abs(ours["dq"] - tm[2]) < 1e-6
    assert (ours["tp"], ours["fp"], ours["fn"]) == tuple(int(x) for x in mo[:3])
    assert abs(ours["sq"] * ours["tp"] - mo[3]) < 1e-4 * max(mo[3], 1)
    assert abs(aji_ours - aji_ref) < 1e-12
    print(f"PQ {ours['pq']:.6f} (SQ {ours['sq']:.6f}, DQ {ours['dq']:.6f}; TP {ours['tp']} FP {ours['fp']} "
          f"FN {ours['fn']}): seglab, torchmetrics and MONAI agree; AJI {aji_ours:.6f} equals the reference")
    rows = [
        ("PQ", "seglab panoptic_quality", t_seg, None),
        ("PQ", "torchmetrics PanopticQuality", t_tm, t_tm / t_seg),
        ("PQ", "MONAI compute_panoptic_quality", t_mo, t_mo / t_seg),
        ("AJI", "seglab aji", t_aji, None),
        ("AJI", "per-nucleus mask loop (reference)", t_aji_ref, t_aji_ref / t_aji),
    ]
    print(f"{'metric':<6} {'implementation':<34} {'median s':>10} {'seglab speed-up':>16}")
    for metric, name, t, ratio in rows:
        print(f"{metric:<6} {name:<34} {t:>10.4f} {'' if ratio is None else f'{ratio:,.0f}x':>16}")


if __name__ == "__main__":
    main()
