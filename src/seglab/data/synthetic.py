"""Built-in synthetic nuclei: the embedded default data set (H&E-like or fluorescence-like).

Each tile is drawn from a ``numpy.random.Generator`` seeded with ``seed``, so a seed always gives
the same tile. Nuclei are perturbed ellipses (an ellipse whose radius is modulated by a few
low-order harmonics, so each is star-shaped) with radii of about 4-14 px, whatever the tile size
(the pixel scale of a 40x slide). About half are placed against an existing nucleus, so
clusters of touching nuclei are common; heavy overlap is rejected. Where two nuclei overlap, a
pixel goes to the one whose normalised radius ``|p - c| / r(angle)`` is smaller, which gives a
clean shared boundary. Fragments are then removed so every id is one 4-connected region, and ids
are renumbered 1..K.

H&E rendering follows the Beer-Lambert model with the Ruifrok & Johnston (2001) stain vectors:
optical density = hematoxylin concentration * H + eosin concentration * E, image =
``exp(-OD)``. The eosin background has smooth and fibrous texture and a few unlabelled red blood
cells (hard negatives); each nucleus has its own hematoxylin concentration, chromatin texture and
either a solid profile lighter at the rim or a vesicular one (dark rim, pale centre). The
concentrations are blurred (optical point spread) and sensor noise is added.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components

from seglab.data.targets import distance_targets, relabel_sequential
from seglab.errors import SeglabError

STYLES = ("he", "fluo")
_STAIN_H = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
_STAIN_E = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])
_MIN_AREA = 12


def tile_seed(seed: int, index: int) -> int:
    """Seed of tile ``index`` of the data set made with ``seed`` (see :func:`write_synthetic_dataset`)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple) -> np.ndarray:
    """Smooth Gaussian noise with unit standard deviation.

    Coarse textures (isotropic ``sigma >= 4``) are drawn on a 4x coarser grid and enlarged
    bilinearly, which looks the same and costs a sixteenth.
    """
    if np.isscalar(sigma) and sigma >= 4:
        small = (-(-shape[0] // 4) + 1, -(-shape[1] // 4) + 1)
        coarse = ndimage.gaussian_filter(rng.standard_normal(small), sigma / 4, mode="wrap")
        field = ndimage.zoom(coarse, 4, order=1)[: shape[0], : shape[1]]
    else:
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-8)


def _place_nuclei(rng: np.random.Generator, size: int) -> list[tuple]:
    """Centres and shape parameters of nuclei: clustered, touching, never heavily overlapping."""
    coverage = rng.uniform(0.2, 0.38)
    target = int(coverage * size * size / (np.pi * 7.5**2))
    p_cluster = rng.uniform(0.4, 0.7)
    centres = np.zeros((0, 2))
    radii = np.zeros(0)
    nuclei = []
    for _ in range(target * 8):
        if len(nuclei) >= target:
            break
        r = float(np.clip(rng.lognormal(np.log(7.0), 0.3), 4.0, 14.0))
        if len(nuclei) and rng.random() < p_cluster:
            j = rng.integers(len(nuclei))
            theta = rng.uniform(0, 2 * np.pi)
            dist = (radii[j] + r) * rng.uniform(0.85, 1.0)
            centre = centres[j] + dist * np.array([np.sin(theta), np.cos(theta)])
        else:
            centre = rng.uniform(-r / 2, size + r / 2, 2)
        if len(nuclei) and np.min(np.hypot(*(centres - centre).T) / (radii + r)) < 0.82:
            continue
        elong = rng.uniform(1.0, 1.7)
        harmonics = rng.uniform(0, 0.07, 3), rng.uniform(0, 2 * np.pi, 3)
        nuclei.append((centre, r * np.sqrt(elong), r / np.sqrt(elong), rng.uniform(0, np.pi), harmonics))
        centres = np.vstack([centres, centre])
        radii = np.append(radii, r)
    return nuclei


def _rasterise(nuclei: list[tuple], size: int) -> np.ndarray:
    """Instance map of perturbed ellipses; overlaps go to the smallest normalised radius."""
    inst = np.zeros((size, size), np.int32)
    best = np.full((size, size), np.inf)
    for k, (centre, a, b, angle, (amp, phase)) in enumerate(nuclei, start=1):
        reach = int(np.ceil(a * (1 + amp.sum()))) + 1
        y0, x0 = (max(0, int(c) - reach) for c in centre)
        y1, x1 = (min(size, int(c) + reach + 1) for c in centre)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1)[:, None] - centre[0]
        dx = np.arange(x0, x1)[None, :] - centre[1]
        phi = np.arctan2(dy, dx) - angle
        r_edge = a * b / np.hypot(b * np.cos(phi), a * np.sin(phi))
        for order, (amp_k, phase_k) in enumerate(zip(amp, phase, strict=True), start=2):
            r_edge = r_edge * (1 + amp_k * np.cos(order * phi + phase_k))
        rho = np.hypot(dy, dx) / r_edge
        win_best = best[y0:y1, x0:x1]
        take = (rho < 1) & (rho < win_best)
        inst[y0:y1, x0:x1][take] = k
        win_best[take] = rho[take]
    return inst


def _clean(inst: np.ndarray) -> np.ndarray:
    """Keep the largest 4-connected piece of each id, drop tiny ones, renumber 1..K."""
    comp = connected_components(inst, background=0, connectivity=1)
    if comp.max() == 0:  # a tile without nuclei (possible for tiny tiles)
        return np.zeros(inst.shape, np.int32)
    sizes = np.bincount(comp.ravel())
    owner = np.zeros(sizes.size, np.int64)
    owner[comp.ravel()] = inst.ravel()
    order = np.lexsort((sizes[1:], owner[1:])) + 1  # by owner, then size
    last_of_owner = np.r_[owner[order][1:] != owner[order][:-1], True]
    keep = np.zeros(sizes.size, bool)
    keep[order[last_of_owner]] = True
    keep &= sizes >= _MIN_AREA
    keep[0] = False
    return relabel_sequential(np.where(keep[comp], inst, 0)).astype(np.int32)


def _render_he(rng: np.random.Generator, inst: np.ndarray) -> np.ndarray:
    shape = inst.shape
    k = int(inst.max())
    smooth, fine = _texture(rng, shape, 10), _texture(rng, shape, 1.2)
    fibre = _texture(rng, shape, (0.8, 5)) if rng.random() < 0.5 else _texture(rng, shape, (5, 0.8))
    eosin = rng.uniform(0.3, 0.55) * np.clip(1 + 0.25 * smooth + 0.1 * fibre, 0.05, None)
    hema = np.full(shape, rng.uniform(0.03, 0.1)) * np.clip(1 + 0.3 * smooth, 0, None)
    _add_blood_cells(rng, inst, eosin)
    depth = distance_targets(inst)
    strength = np.r_[0.0, rng.uniform(0.75, 1.7, k)] * rng.uniform(0.85, 1.15)
    vesicular = np.r_[False, rng.random(k) < 0.25]
    solid = 0.72 + 0.28 * np.clip(depth * 2.5, 0, 1)
    hollow = 1.15 - 0.45 * np.clip(depth * 1.6, 0, 1)
    profile = np.where(vesicular[inst], hollow, solid)
    nuclear = strength[inst] * profile * np.clip(1 + 0.22 * fine, 0.3, None)
    fg = inst > 0
    hema = np.where(fg, nuclear, hema)
    eosin = np.where(fg, eosin * 0.5, eosin)
    return _stain_rgb(rng, hema, eosin, blur=(0.6, 1.2), noise=(2, 5))


def _stain_rgb(rng: np.random.Generator, hema: np.ndarray, eosin: np.ndarray, *,
               blur: tuple[float, float], noise: tuple[float, float]) -> np.ndarray:
    """Blur the haematoxylin and eosin densities (sigma drawn from ``blur``), render them through
    jittered Ruifrok-Johnston stain vectors (Beer-Lambert) and add camera noise (sd from ``noise``)."""
    sigma = rng.uniform(*blur)
    hema, eosin = ndimage.gaussian_filter(hema, sigma), ndimage.gaussian_filter(eosin, sigma)
    jitter = 1 + rng.uniform(-0.06, 0.06, (2, 3))
    od = hema[..., None] * (_STAIN_H * jitter[0]) + eosin[..., None] * (_STAIN_E * jitter[1])
    rgb = 255 * np.exp(-od) + rng.normal(0, rng.uniform(*noise), od.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _add_blood_cells(rng: np.random.Generator, inst: np.ndarray, eosin: np.ndarray) -> None:
    """Paint a few bright-eosin red blood cells on the background (unlabelled)."""
    size = inst.shape[0]
    yy, xx = np.ogrid[: inst.shape[0], : inst.shape[1]]
    for _ in range(rng.integers(0, 3 + size * size // 20000)):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(3, 4.5)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) & (inst == 0)
        eosin[disc] = rng.uniform(0.9, 1.3)


def _render_fluo(rng: np.random.Generator, inst: np.ndarray) -> np.ndarray:
    k = int(inst.max())
    depth = distance_targets(inst)
    brightness = np.r_[0.0, rng.uniform(0.25, 0.9, k)]
    profile = 0.55 + 0.45 * np.sqrt(np.clip(depth * 1.5, 0, 1))
    signal = brightness[inst] * profile * np.clip(1 + 0.15 * _texture(rng, inst.shape, 1.5), 0, None)
    background = rng.uniform(0.02, 0.08) * (1 + 0.3 * _texture(rng, inst.shape, 20))
    signal = ndimage.gaussian_filter(np.where(inst > 0, signal, background), rng.uniform(0.7, 1.3))
    noisy = signal + rng.normal(0, 1, signal.shape) * (0.01 + 0.03 * np.sqrt(np.clip(signal, 0, None)))
    return np.clip(np.rint(255 * noisy), 0, 255).astype(np.uint8)[..., None]


def synth_tile(size: int, *, seed: int, style: str = "he") -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic nuclei tile.

    Args:
        size: tile side in pixels.
        seed: seed of the tile's ``numpy.random.Generator``; equal seeds give equal tiles.
        style: ``"he"`` (H&E-like RGB) or ``"fluo"`` (fluorescence-like, one channel).

    Returns:
        ``(image, instances)``: uint8 image ``H x W x 3`` (he) or ``H x W x 1`` (fluo), and the
        int32 ``H x W`` instance map with ids 1..K, each one 4-connected region.
    """
    if style not in STYLES:
        from seglab.errors import unknown_choice

        raise unknown_choice("synthetic style", style, STYLES)
    if size < 8:
        raise SeglabError(f"synthetic tile size must be at least 8, got {size}")
    rng = np.random.default_rng(seed)
    inst = _clean(_rasterise(_place_nuclei(rng, size), size))
    image = _render_he(rng, inst) if style == "he" else _render_fluo(rng, inst)
    return image, inst


def write_synthetic_dataset(
    out: Path, *, n: int, size: int, seed: int, style: str = "he"
) -> list[str]:
    """Write ``n`` synthetic tiles in the folder format, each file atomically.

    Tile ``i`` is ``synth_tile(size, seed=tile_seed(seed, i), style=style)`` and is written as
    ``out/images/synth_<i>.png`` and ``out/labels/synth_<i>.tif`` (4-digit index).

    Returns:
        The stems written, in order.
    """
    from seglab.data.io import write_image, write_label

    out = Path(out)
    if n < 1:
        raise SeglabError(f"number of synthetic tiles must be at least 1, got {n}")
    stems = []
    for i in range(n):
        image, inst = synth_tile(size, seed=tile_seed(seed, i), style=style)
        stem = f"synth_{i:04d}"
        write_image(out / "images" / f"{stem}.png", image)
        write_label(out / "labels" / f"{stem}.tif", inst)
        stems.append(stem)
    return stems
