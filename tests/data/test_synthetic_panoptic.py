"""Synthetic panoptic H&E: types tied to regions, looks that follow the type, the folder format."""

import numpy as np

from seglab.cli import main
from seglab.data.panoptic_check import check_panoptic
from seglab.data.synthetic_panoptic import (
    EPITHELIAL,
    EPITHELIUM,
    GLASS,
    LYMPHOCYTE,
    STROMA,
    STROMAL,
    TUMOUR,
    synth_panoptic_tile,
)


def _stats(seeds=range(8)):
    area, elong, dark, where = {}, {}, {}, {}
    for s in seeds:
        image, inst, cls = synth_panoptic_tile(128, seed=s)
        od = -np.log(np.clip(image.astype(float), 1, 255) / 255).sum(-1)
        background = np.where(inst > 0, 0, cls)
        near = {c: np.zeros(inst.max() + 1) for c in (GLASS, STROMA, EPITHELIUM)}
        from scipy import ndimage

        ring = ndimage.grey_dilation(inst, size=5)  # each nucleus' surroundings: which region
        for c in near:
            near[c] = np.bincount(ring[(inst == 0) & (background == c)], minlength=inst.max() + 1)
        for i in range(1, inst.max() + 1):
            m = inst == i
            t = int(cls[m][0])
            ys, xs = np.nonzero(m)
            ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]))) if m.sum() > 3 else np.array([1, 1])
            area.setdefault(t, []).append(m.sum())
            elong.setdefault(t, []).append(np.sqrt(ev[-1] / max(ev[0], 1e-6)))
            dark.setdefault(t, []).append(od[m].mean())
            where.setdefault(t, []).append(max(near, key=lambda c: near[c][i]))
    return ({t: np.median(v) for t, v in area.items()}, {t: np.median(v) for t, v in elong.items()},
            {t: np.median(v) for t, v in dark.items()}, where)


def test_types_follow_regions_and_looks():
    area, elong, dark, where = _stats()
    assert area[TUMOUR] > area[EPITHELIAL] > area[LYMPHOCYTE]
    assert elong[STROMAL] > 2.0 > elong[EPITHELIAL] and elong[LYMPHOCYTE] < 1.3
    assert dark[LYMPHOCYTE] > dark[EPITHELIAL] and dark[TUMOUR] > dark[EPITHELIAL]
    for t, region in ((TUMOUR, EPITHELIUM), (EPITHELIAL, EPITHELIUM), (LYMPHOCYTE, STROMA), (STROMAL, STROMA)):
        assert np.mean(np.array(where[t]) == region) > 0.8, t
    assert all((np.array(w) == GLASS).mean() < 0.05 for w in where.values())


def test_deterministic_and_cli(tmp_path, capsys):
    a, b = synth_panoptic_tile(64, seed=3), synth_panoptic_tile(64, seed=3)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert main(["data", "synth", "--panoptic", "--out", str(tmp_path), "--n", "2", "--size", "96"]) == 0
    assert "classes.yaml" in capsys.readouterr().out
    report, lines = check_panoptic(tmp_path)
    assert report.n_pairs == 2 and not [p for p in report.problems if "has no instance" not in p]
