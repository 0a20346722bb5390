"""Built-in synthetic H&E tissue with typed nuclei: the panoptic demo's data (``seglab data synth --panoptic``).

A tile has three tissue regions (stuff), drawn from smooth random fields:

* ``background`` (glass): near-white, no nuclei;
* ``stroma``: pink fibrous eosin; holds elongated spindle **stromal** nuclei aligned with the
  fibres and small round dense **lymphocytes**, single or in small aggregates;
* ``epithelium``: sheets of packed cells on a paler purple-pink cytoplasm; each sheet is either
  normal, with regular oval **epithelial** nuclei, or neoplastic, with large pleomorphic dark
  **tumour** nuclei (irregular outline, coarse chromatin, often vesicular with a dark rim).

So types are tied to regions as in real tissue, and each type has its own look: size, shape,
outline, stain concentration and texture. Nuclei are perturbed ellipses rasterised, cleaned
and rendered with the Beer-Lambert stain model of :mod:`seglab.data.synthetic` (shared helpers).
Every tile is deterministic per seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from seglab.data.panoptic import PanopticClass
from seglab.data.synthetic import _clean, _rasterise, _stain_rgb, _texture, tile_seed
from seglab.data.targets import distance_targets
from seglab.errors import SeglabError

CLASSES = (
    PanopticClass("background", False, (235, 235, 235)),
    PanopticClass("stroma", False, (240, 170, 200)),
    PanopticClass("epithelium", False, (170, 120, 200)),
    PanopticClass("tumour", True, (228, 26, 28)),
    PanopticClass("lymphocyte", True, (55, 126, 184)),
    PanopticClass("stromal", True, (77, 175, 74)),
    PanopticClass("epithelial", True, (255, 127, 0)),
)
GLASS, STROMA, EPITHELIUM, TUMOUR, LYMPHOCYTE, STROMAL, EPITHELIAL = range(7)

# type -> (radius median, elongation range, outline harmonics amplitude, hematoxylin range,
#          vesicular share, chromatin texture amplitude)
LOOKS = {
    TUMOUR: (9.5, (1.1, 1.7), 0.16, (1.5, 2.1), 0.5, 0.35),
    LYMPHOCYTE: (4.0, (1.0, 1.12), 0.02, (2.0, 2.5), 0.0, 0.06),
    STROMAL: (5.5, (3.0, 4.5), 0.04, (1.0, 1.35), 0.0, 0.12),
    EPITHELIAL: (6.3, (1.25, 1.5), 0.03, (0.85, 1.1), 0.15, 0.18),
}


def _regions(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Region map (GLASS / STROMA / EPITHELIUM) and a label per epithelial sheet."""
    glass_field, epi_field = _texture(rng, (size, size), 18), _texture(rng, (size, size), 14)
    glass = glass_field > rng.uniform(0.9, 2.5)  # 0-20 % of the tile
    epi = (epi_field > rng.uniform(-0.3, 0.7)) & ~ndimage.binary_dilation(glass, iterations=4)
    region = np.full((size, size), STROMA, np.int64)
    region[glass], region[epi] = GLASS, EPITHELIUM
    sheets, _ = ndimage.label(epi)
    return region, sheets


def _draw(rng: np.random.Generator, kind: int, centre: np.ndarray, angle: float | None = None) -> tuple:
    r_med, elong_range, harm, *_ = LOOKS[kind]
    r = float(np.clip(rng.lognormal(np.log(r_med), 0.12 if kind != TUMOUR else 0.2), 0.6 * r_med, 1.6 * r_med))
    elong = rng.uniform(*elong_range)
    harmonics = rng.uniform(0, harm, 3), rng.uniform(0, 2 * np.pi, 3)
    angle = rng.uniform(0, np.pi) if angle is None else angle + rng.normal(0, 0.15)
    return centre, r * np.sqrt(elong), r / np.sqrt(elong), angle, harmonics


def _place(rng: np.random.Generator, region: np.ndarray, sheets: np.ndarray) -> tuple[list[tuple], list[int]]:
    """Nuclei (shape tuples for ``_rasterise``) and their types, placed by region."""
    size = region.shape[0]
    tumour_sheet = rng.random(int(sheets.max()) + 1) < 0.5
    fibre_angle = np.pi * (_texture(rng, (size, size), 25) * 0.4 + rng.uniform(0, 1))
    nuclei, types = [], []
    centres, radii = np.zeros((0, 2)), np.zeros(0)

    def try_add(kind: int, centre: np.ndarray, angle: float | None = None) -> bool:
        nonlocal centres, radii
        shape = _draw(rng, kind, centre, angle)
        reach = np.sqrt(shape[1] * shape[2])
        if len(nuclei) and np.min(np.hypot(*(centres - centre).T) / (radii + reach)) < 0.9:
            return False
        nuclei.append(shape)
        types.append(kind)
        centres, radii = np.vstack([centres, centre]), np.append(radii, reach)
        return True

    epi_px, stroma_px = np.argwhere(region == EPITHELIUM), np.argwhere(region == STROMA)
    if len(epi_px):  # packed sheets: clustered placement, kept inside the epithelium
        coverage = rng.uniform(0.3, 0.45)
        for _ in range(int(len(epi_px) * coverage / (np.pi * 7**2)) * 6):
            if len(types) and rng.random() < 0.7:
                j = rng.integers(len(nuclei))
                theta = rng.uniform(0, 2 * np.pi)
                centre = centres[j] + (radii[j] * 2.2) * np.array([np.sin(theta), np.cos(theta)])
            else:
                centre = epi_px[rng.integers(len(epi_px))].astype(float)
            y, x = np.clip(np.round(centre).astype(int), 0, size - 1)
            if region[y, x] != EPITHELIUM:
                continue
            try_add(TUMOUR if tumour_sheet[sheets[y, x]] else EPITHELIAL, centre)
    if len(stroma_px):
        area = len(stroma_px)
        for _ in range(rng.poisson(area * rng.uniform(0.015, 0.03) / (np.pi * 5**2))):
            y, x = stroma_px[rng.integers(area)]
            try_add(STROMAL, np.array([y, x], float), float(fibre_angle[y, x]))
        for _ in range(rng.poisson(area * rng.uniform(0.01, 0.03) / (np.pi * 4**2))):
            seed = stroma_px[rng.integers(area)].astype(float)
            for _ in range(1 if rng.random() < 0.6 else int(rng.integers(4, 12))):  # single or an aggregate
                centre = seed + rng.normal(0, 7, 2)
                y, x = np.clip(np.round(centre).astype(int), 0, size - 1)
                if region[y, x] == STROMA:
                    try_add(LYMPHOCYTE, centre)
    return nuclei, types


def _render(rng: np.random.Generator, region: np.ndarray, inst: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Beer-Lambert H&E: region backgrounds, then nuclei whose stain and texture follow their type."""
    shape = inst.shape
    smooth, fine = _texture(rng, shape, 10), _texture(rng, shape, 1.2)
    fibre = _texture(rng, shape, (0.8, 5)) if rng.random() < 0.5 else _texture(rng, shape, (5, 0.8))
    eosin_level = np.array([0.03, rng.uniform(0.45, 0.7), rng.uniform(0.25, 0.38)])
    hema_level = np.array([0.01, rng.uniform(0.03, 0.07), rng.uniform(0.08, 0.14)])
    fibrous = np.array([0.0, 0.3, 0.05])[region]
    eosin = eosin_level[region] * np.clip(1 + 0.2 * smooth + fibrous * fibre, 0.05, None)
    hema = hema_level[region] * np.clip(1 + 0.3 * smooth, 0, None)
    k = int(inst.max())
    depth = distance_targets(inst)
    strength, vesicular, grain = np.zeros(k + 1), np.zeros(k + 1, bool), np.zeros(k + 1)
    for t, (_, _, _, (lo, hi), ves, tex) in LOOKS.items():
        sel = np.flatnonzero(kind == t)
        strength[sel] = rng.uniform(lo, hi, len(sel))
        vesicular[sel] = rng.random(len(sel)) < ves
        grain[sel] = tex
    coarse = _texture(rng, shape, 2.0)
    solid = 0.75 + 0.25 * np.clip(depth * 2.5, 0, 1)
    hollow = 1.25 - 0.6 * np.clip(depth * 1.8, 0, 1)
    membrane = 0.55 + 0.45 * np.clip(depth * 5, 0, 1)  # paler at the very edge: touching nuclei keep a seam
    profile = np.where(vesicular[inst], hollow, solid) * membrane
    chromatin = np.clip(1 + grain[inst] * (0.6 * coarse + 0.6 * fine), 0.3, None)
    fg = inst > 0
    hema = np.where(fg, strength[inst] * profile * chromatin, hema)
    eosin = np.where(fg, eosin * 0.5, eosin)
    return _stain_rgb(rng, hema, eosin, blur=(0.6, 1.1), noise=(2, 4))


def synth_panoptic_tile(size: int, *, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One tile: uint8 RGB image, int32 instance map (1..K) and int64 class map (indices of
    :data:`CLASSES`; nuclei carry their type, other pixels their region)."""
    if size < 32:
        raise SeglabError(f"synthetic panoptic tile size must be at least 32, got {size}")
    rng = np.random.default_rng(seed)
    region, sheets = _regions(rng, size)
    nuclei, types = _place(rng, region, sheets)
    raw = _rasterise(nuclei, size)
    type_of_raw = np.r_[0, types].astype(np.int64)
    inst = _clean(raw)
    kind = np.zeros(int(inst.max()) + 1, np.int64)
    kind[inst[inst > 0]] = type_of_raw[raw[inst > 0]]  # one type per cleaned instance (its pixels share it)
    epithelial_cells = ndimage.binary_dilation(np.isin(kind[inst], (TUMOUR, EPITHELIAL)) & (inst > 0), iterations=3)
    region[epithelial_cells & (region != GLASS)] = EPITHELIUM  # a sheet holds its cells whole (cytoplasm around nuclei)
    image = _render(rng, region, inst, kind)
    classes = np.where(inst > 0, kind[inst], region)
    return image, inst, classes


def write_panoptic_dataset(out: Path, *, n: int, size: int, seed: int) -> list[str]:
    """Write ``n`` tiles in the panoptic folder format (``synth_<i>``) and ``classes.yaml``."""
    from seglab.data.io import write_image, write_label
    from seglab.data.panoptic import write_classes

    out = Path(out)
    if n < 1:
        raise SeglabError(f"number of synthetic tiles must be at least 1, got {n}")
    stems = []
    for i in range(n):
        image, inst, classes = synth_panoptic_tile(size, seed=tile_seed(seed, i))
        stem = f"synth_{i:04d}"
        write_image(out / "images" / f"{stem}.png", image)
        write_label(out / "labels" / f"{stem}.tif", inst)
        write_label(out / "classes" / f"{stem}.png", classes)
        stems.append(stem)
    write_classes(out, list(CLASSES))
    return stems
