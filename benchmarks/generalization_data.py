"""Nuclei / cell instance data sets that differ from seglab's built-in generator, for generalization tests.

Independent of ``seglab.data.synthetic`` (nothing is imported from seglab): objects are ellipses
with a perturbed polar radius (harmonics 2..6), placed either isolated (a free margin around
them) or pressed against an existing object so that they touch or overlap; where two objects
overlap, each pixel goes to the object whose normalised radius ``rho = d / r(angle)`` is smaller,
so touching objects get distinct ids, every pixel has one id and no object is cut in two. Each
set then renders its own look (blur, texture, noise, uneven illumination, unlabelled debris).

``make_set(name, out_dir, seed)`` writes ``out_dir/{train,val,test}/{images,labels}``; every image
is drawn from its own generator seeded by (seed, set name, split, index), so a set is
deterministic per seed and ``small=True`` (fewer images) draws the first images of the full set.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

SETS = {
    "fluo16": "gray 16-bit fluorescence TIFF, 256-384 px, background ~100 counts, nuclei 60-800 counts above "
              "it (Poisson + read noise), diameter 12-22 px, out-of-focus blobs and bright specks unlabelled",
    "gray_small": "8-bit gray brightfield PNG, 256 px, dark nuclei on a bright uneven background, "
                  "diameter 6-9 px, dense (~30% cover)",
    "he_large": "RGB H&E-like PNG with non-Ruifrok stain vectors (magenta-purple nuclei, mauve fibrous "
                "stroma, white lumina), 512 px, diameter 30-45 px, half of the nuclei vesicular "
                "(pale centre, dark rim, nucleoli)",
    "dense_clusters": "RGB IHC-like PNG (DAB-brown positive and blue-gray negative nuclei), 256-320 px, "
                      "tight clusters (>50% of nuclei touch), diameter 14-20 px",
    "sparse_cells": "2-channel 8-bit TIFF (cytoplasm, nucleus), 768-1024 px, few large cells of "
                    "diameter 50-80 px labelled whole, unlabelled debris in the nucleus channel",
}


# ---------------------------------------------------------------------------------------- shapes
class _Blob:
    """A star-shaped object: an ellipse whose radius is modulated by random harmonics."""

    def __init__(self, rng: np.random.Generator, radius: float, irregular: float, elong: tuple[float, float]):
        e = rng.uniform(*elong)
        self.a, self.b = radius * np.sqrt(e), radius / np.sqrt(e)
        self.rot = rng.uniform(0, np.pi)
        self.k = np.arange(2, 7)
        self.amp = rng.normal(0, irregular, 5) / np.sqrt(self.k - 1)
        self.phase = rng.uniform(0, 2 * np.pi, 5)
        self.rmax = self.a * (1 + np.abs(self.amp).sum())

    def r(self, phi: np.ndarray) -> np.ndarray:
        psi = phi - self.rot
        ellipse = self.a * self.b / np.hypot(self.b * np.cos(psi), self.a * np.sin(psi))
        wobble = np.cos(np.multiply.outer(phi, self.k) + self.phase) @ self.amp
        return ellipse * np.clip(1 + wobble, 0.6, None)


def _rho(blob: _Blob, cy: float, cx: float, shape: tuple[int, int], reach: float):
    """(window slices, normalised radius rho of every window pixel) around centre (cy, cx)."""
    y0, y1 = max(0, int(cy - reach)), min(shape[0], int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(shape[1], int(cx + reach) + 2)
    if y0 >= y1 or x0 >= x1:
        return None, None
    dy, dx = np.arange(y0, y1)[:, None] - cy, np.arange(x0, x1)[None, :] - cx
    d = np.hypot(dy, dx)
    return (slice(y0, y1), slice(x0, x1)), d / blob.r(np.arctan2(dy, dx))


class _Layout(NamedTuple):
    label: np.ndarray  # H x W int32, ids 1..K
    rho: np.ndarray  # H x W normalised radius inside objects (inf outside)
    objects: list  # (cy, cx, blob) of id i at index i - 1


def _place(rng, shape, *, radius, cover, p_touch, irregular, elong, cluster=False, margin=2.0, min_px=8) -> _Layout:
    """Draw objects until ``cover`` of the area is reached (or attempts run out)."""
    label = np.zeros(shape, np.int32)
    rho = np.full(shape, np.inf, np.float32)
    objects: list = []
    target = cover * shape[0] * shape[1] / (np.pi * np.mean(radius) ** 2)
    for _ in range(int(30 * target) + 50):
        if len(objects) >= target:
            break
        blob = _Blob(rng, rng.uniform(*radius), irregular, elong)
        touch = bool(objects) and rng.random() < p_touch
        if touch:  # press against a host (a recent one in cluster mode): rho of both < 1 overlap
            host_y, host_x, host = objects[-1 - rng.integers(min(len(objects), 6))] if cluster else \
                objects[rng.integers(len(objects))]
            phi = rng.uniform(0, 2 * np.pi)
            dist = host.r(np.array(phi)) + blob.r(np.array(phi + np.pi)) * rng.uniform(0.55, 0.9)
            cy, cx = host_y + dist * np.sin(phi), host_x + dist * np.cos(phi)
        else:
            cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        sl, r = _rho(blob, cy, cx, shape, blob.rmax + margin + 1)
        if sl is None:
            continue
        mine, lab = r < 1, label[sl]
        if mine.sum() < min_px:
            continue
        if touch:
            claim = mine & (r < rho[sl])
            if claim.sum() < 0.75 * mine.sum() or not (mine & (lab > 0)).any():
                continue
        else:
            if ((r < 1 + margin / blob.b) & (lab > 0)).any():
                continue
            claim = mine
        objects.append((cy, cx, blob))
        lab[claim] = len(objects)
        rho[sl][claim] = r[claim]
    return _clean(_Layout(label, rho, objects), min_px)


def _clean(layout: _Layout, min_px: int) -> _Layout:
    """Keep each object's largest 4-connected piece, drop objects under min_px, renumber 1..K."""
    out = np.zeros_like(layout.label)
    kept = []
    for i, sl in enumerate(ndi.find_objects(layout.label), 1):
        if sl is None:
            continue
        mask = layout.label[sl] == i
        comp, n = ndi.label(mask)
        if n > 1:
            mask = comp == np.argmax(np.bincount(comp.ravel())[1:]) + 1
        if mask.sum() >= min_px:
            kept.append(layout.objects[i - 1])
            out[sl][mask] = len(kept)
    rho = np.where(out > 0, layout.rho, np.inf).astype(np.float32)
    return _Layout(out, rho, kept)


# ------------------------------------------------------------------------------------- rendering
def _noise(rng, shape, scale: float) -> np.ndarray:
    """Smooth zero-mean unit-variance noise with features about ``scale`` pixels wide."""
    if scale <= 1:
        return rng.standard_normal(shape).astype(np.float32)
    small = rng.standard_normal((int(shape[0] / scale) + 4, int(shape[1] / scale) + 4)).astype(np.float32)
    big = _smooth_up(shape[0], small.shape[0], scale) @ small @ _smooth_up(shape[1], small.shape[1], scale).T
    return (big - big.mean()) / (big.std() + 1e-6)


def _smooth_up(n_out: int, n_in: int, scale: float) -> np.ndarray:
    """n_out x n_in matrix: Gaussian-weighted up-sampling of a coarse grid by ``scale``."""
    w = np.exp(-0.5 * ((np.arange(n_out)[:, None] / scale + 1.5 - np.arange(n_in)[None, :]) / 0.7) ** 2)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def _per_object(values, layout: _Layout) -> np.ndarray:
    return np.concatenate([[0.0], values]).astype(np.float32)[layout.label]


def _spots(rng, shape, n: int, amplitude, sigma: float, where: np.ndarray | None = None) -> np.ndarray:
    """n Gaussian spots of peak ``amplitude`` (range) at random pixels (inside ``where`` if given)."""
    out = np.zeros(shape, np.float32)
    pool = np.flatnonzero(where) if where is not None else np.arange(shape[0] * shape[1])
    if n and pool.size:
        idx = rng.choice(pool, n)
        np.add.at(out.ravel(), idx, rng.uniform(*amplitude, n) * 2 * np.pi * sigma**2)
    return ndi.gaussian_filter(out, sigma)


def _fluo16(rng, layout: _Layout) -> np.ndarray:
    shape, fg = layout.label.shape, layout.label > 0
    amp = _per_object(np.clip(rng.lognormal(np.log(250), 0.5, len(layout.objects)), 60, 800), layout)
    rim = np.where(fg, layout.rho, 1) ** 2
    signal = amp * (1 - 0.35 * rim) * (1 + 0.18 * _noise(rng, shape, 2.0)) * fg
    signal += _spots(rng, shape, rng.integers(0, 4), (30, 80), rng.uniform(5, 8), ~fg)  # out of focus
    signal += _spots(rng, shape, rng.integers(0, 6), (300, 900), 0.8, ~fg)  # bright specks
    signal = ndi.gaussian_filter(signal, rng.uniform(1.0, 1.6))
    illumination = np.clip(1 + 0.2 * _noise(rng, shape, max(shape) / 2), 0.5, 1.5)
    background = 100 + 6 * _noise(rng, shape, max(shape) / 3)
    counts = rng.poisson(np.clip(background + signal * illumination, 0, None)) + rng.normal(0, 4, shape)
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def _gray_small(rng, layout: _Layout) -> np.ndarray:
    shape, fg = layout.label.shape, layout.label > 0
    light = 210 + 12 * _noise(rng, shape, max(shape) / 2) + 5 * _noise(rng, shape, 3)
    t = _per_object(rng.uniform(0.35, 0.65, len(layout.objects)), layout)
    t = t * (1 + 0.12 * _noise(rng, shape, 1.2)) * np.where(layout.rho > 0.75, 0.9, 1.0)
    transmission = ndi.gaussian_filter(np.where(fg, t, 1.0), 0.6)
    return np.clip(light * transmission + rng.normal(0, 4, shape), 0, 255).astype(np.uint8)


def _beer_lambert(rng, od: np.ndarray, blur: float) -> np.ndarray:
    od = ndi.gaussian_filter(od, (blur, blur, 0))
    rgb = 248 * np.exp(-od) + rng.normal(0, 3, od.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


_H = np.array([0.45, 0.85, 0.28]) * 1.6  # magenta-purple "hematoxylin" (not Ruifrok's)
_E = np.array([0.15, 0.80, 0.58]) * 1.2  # mauve "eosin"
_DAB = np.array([0.30, 0.52, 0.80]) * 1.5  # brown chromogen
_HB = np.array([0.55, 0.68, 0.48]) * 1.5  # blue-gray counterstain


def _he_large(rng, layout: _Layout) -> np.ndarray:
    shape, fg, n = layout.label.shape, layout.label > 0, len(layout.objects)
    vesicular = rng.random(n) < 0.5
    c = _per_object(rng.uniform(0.45, 1.0, n), layout)
    ves = _per_object(vesicular, layout) > 0
    rho = np.where(fg, layout.rho, 1)
    tex = _noise(rng, shape, 2.5)
    ch = np.where(ves, c * (0.3 + 0.7 * rho**6) * (1 + 0.2 * tex), c * (0.8 + 0.2 * rho**2) * (1 + 0.3 * tex))
    nucleoli = np.zeros(shape, np.float32)
    for (cy, cx, blob), v in zip(layout.objects, vesicular, strict=True):
        for _ in range(rng.integers(1, 3) if v else 0):
            y, x = int(cy + rng.normal(0, blob.b / 4)), int(cx + rng.normal(0, blob.b / 4))
            if 0 <= y < shape[0] and 0 <= x < shape[1]:
                nucleoli[y, x] = 0.9 * 2 * np.pi * 2.2**2
    ch = np.where(fg, ch + ndi.gaussian_filter(nucleoli, 2.2), 0)
    turn = rng.random() < 0.5  # fibres run along x or along y
    h, w = shape[::-1] if turn else shape
    coarse = rng.standard_normal((h // 40 + 4, w // 3 + 4)).astype(np.float32)
    fibres = _smooth_up(h, coarse.shape[0], 40) @ coarse @ _smooth_up(w, coarse.shape[1], 3).T
    stroma = 0.35 + 0.12 * _noise(rng, shape, 6) + 0.12 * np.abs(fibres.T if turn else fibres)
    stroma *= np.where(_noise(rng, shape, 70) > 1.1, 0.08, 1.0)  # lumina
    ce = np.where(fg, 0.12, np.clip(stroma, 0, None))
    od = ch[..., None] * _H + ce[..., None] * _E + 0.03
    return _beer_lambert(rng, od, 1.2)


def _dense_clusters(rng, layout: _Layout) -> np.ndarray:
    shape, fg, n = layout.label.shape, layout.label > 0, len(layout.objects)
    positive = rng.random(n) < 0.45
    ch = _per_object(np.where(positive, 0.2, rng.uniform(0.35, 0.7, n)), layout)
    cd = _per_object(np.where(positive, rng.uniform(0.4, 0.9, n), 0.0), layout)
    rho = np.where(fg, layout.rho, 1)
    tex = 1 + 0.25 * _noise(rng, shape, 1.8)
    edge = np.where(rho > 0.8, 1.25, 1.0)
    haze = 0.05 + 0.03 * _noise(rng, shape, 40)
    ch = np.where(fg, ch * tex * edge, np.clip(haze, 0, None))
    cd = np.where(fg, cd * tex * edge, 0.02)
    return _beer_lambert(rng, ch[..., None] * _HB + cd[..., None] * _DAB, 1.0)


def _sparse_cells(rng, layout: _Layout) -> np.ndarray:
    shape, fg, n = layout.label.shape, layout.label > 0, len(layout.objects)
    rho = np.where(fg, layout.rho, 1)
    cyto = _per_object(rng.uniform(50, 130, n), layout) * (0.5 + 0.5 * np.sqrt(1 - np.minimum(rho, 1)))
    cyto *= 1 + 0.25 * _noise(rng, shape, 4)
    nuc = np.zeros(shape, np.float32)
    for i, (cy, cx, cell) in enumerate(layout.objects, 1):
        nucleus = _Blob(rng, rng.uniform(0.3, 0.42) * cell.b, 0.05, (1.0, 1.4))
        oy, ox = rng.normal(0, 0.12 * cell.b, 2)
        sl, r = _rho(nucleus, cy + oy, cx + ox, shape, nucleus.rmax + 1)
        if sl is not None:
            inside = (r < 1) & (layout.label[sl] == i)
            nuc[sl][inside] = rng.uniform(110, 220) * (1 - 0.3 * r[inside] ** 2)
    nuc *= 1 + 0.15 * _noise(rng, shape, 2)
    nuc += _spots(rng, shape, rng.integers(1, 5), (120, 220), rng.uniform(3, 5), ~fg)  # debris
    out = []
    for signal, floor in ((cyto, 12), (nuc, 8)):
        illumination = np.clip(1 + 0.2 * _noise(rng, shape, max(shape) / 2), 0.5, 1.5)
        image = ndi.gaussian_filter(signal, 1.5) * illumination + floor + rng.normal(0, 3, shape)
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(out, -1)


# ------------------------------------------------------------------------------------- the sets
class _Spec(NamedTuple):
    render: Callable
    sizes: tuple[int, ...]  # image side lengths drawn per axis
    radius: tuple[float, float]
    cover: float
    p_touch: float
    splits: tuple[int, int, int]
    suffix: str = ".png"
    irregular: float = 0.06
    elong: tuple[float, float] = (1.0, 1.6)
    cluster: bool = False
    min_px: int = 8


_SPECS = {
    "fluo16": _Spec(_fluo16, (256, 320, 384), (6.0, 11.0), 0.2, 0.15, (20, 4, 6), ".tif"),
    "gray_small": _Spec(_gray_small, (256,), (3.2, 4.5), 0.3, 0.1, (20, 4, 6), min_px=6),
    "he_large": _Spec(_he_large, (512,), (15.5, 22.5), 0.3, 0.1, (16, 4, 6), irregular=0.08),
    "dense_clusters": _Spec(_dense_clusters, (256, 288, 320), (7.3, 10.2), 0.4, 0.6, (20, 4, 6), cluster=True),
    "sparse_cells": _Spec(_sparse_cells, (768, 896, 1024), (26.0, 40.0), 0.07, 0.1, (16, 4, 6), ".tif",
                          irregular=0.12, elong=(1.0, 1.8), min_px=200),
}


def make_image(name: str, seed: int, split: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image H x W [x C], instance label H x W uint16) pair of set ``name``."""
    spec = _SPECS[name]
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), split, index])
    shape = (int(rng.choice(spec.sizes)), int(rng.choice(spec.sizes)))
    layout = _place(rng, shape, radius=spec.radius, cover=spec.cover, p_touch=spec.p_touch,
                    irregular=spec.irregular, elong=spec.elong, cluster=spec.cluster, min_px=spec.min_px)
    return spec.render(rng, layout), layout.label.astype(np.uint16)


def make_set(name: str, out_dir: str | Path, seed: int = 0, *, small: bool = False) -> Path:
    """Write set ``name`` as ``out_dir/{train,val,test}/{images,labels}``; return ``out_dir``.

    ``small=True`` writes 2 train, 1 val and 1 test image (for tests).
    """
    import tifffile
    from PIL import Image

    if name not in _SPECS:
        raise ValueError(f"unknown set {name!r}; known: {', '.join(SETS)}")
    spec, out = _SPECS[name], Path(out_dir)
    counts = (2, 1, 1) if small else spec.splits
    for split, (part, n) in enumerate(zip(("train", "val", "test"), counts, strict=True)):
        (out / part / "images").mkdir(parents=True, exist_ok=True)
        (out / part / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, label = make_image(name, seed, split, i)
            stem = f"{name}_{part}_{i:03d}"
            if spec.suffix == ".tif":
                tifffile.imwrite(out / part / "images" / f"{stem}.tif", image, photometric="minisblack",
                                 planarconfig="contig" if image.ndim == 3 else None)
            else:
                Image.fromarray(image).save(out / part / "images" / f"{stem}.png")
            tifffile.imwrite(out / part / "labels" / f"{stem}.tif", label, compression="zlib")
    return out
