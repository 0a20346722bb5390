"""Sliding-window inference with blended probabilities, one band of tiles at a time.

Tiles of ``tile x tile`` pixels are laid on a grid whose stride is ``int(tile * (1 - overlap))``
with the last tile of each axis shifted back to end at the border, exactly as MONAI's
``sliding_window_inference`` lays them; images smaller than a tile are zero-padded symmetrically
(in the normalised space), as MONAI does. Each tile's probabilities are weighted by a window
(Gaussian with ``sigma = sigma_scale * tile``, a cosine (Hann) bump, or constant), summed, and
divided by the summed weights. With ``blend="gaussian"`` the result equals MONAI's
``mode="gaussian"`` output for a predictor that returns probabilities.

Unlike MONAI, the image is processed band by band (one row of tiles at a time): only
``tile`` rows of accumulated probabilities are ever held, so memory is bounded by a band of
tiles, not by the image. :func:`iter_prob_bands` yields finished rows as soon as no later tile
can touch them; :func:`sliding_window_probs` is the in-memory convenience around it.

References: Isensee et al., nnU-Net (Gaussian importance weighting), Nature Methods 2021;
MONAI ``monai.inferers.sliding_window_inference`` (tile layout and weight map).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import torch
import torch.nn.functional as F

from seglab.errors import unknown_choice

BLENDS = ("gaussian", "cosine", "constant")
RowReader = Callable[[int, int], torch.Tensor]  # (y0, y1) -> C x (y1 - y0) x W float tensor
PredictFn = Callable[[torch.Tensor], torch.Tensor]  # N x C x t x t -> N x K x t x t probabilities


def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of the tiles along one axis of length ``size >= tile`` (MONAI's layout)."""
    if size <= tile:
        return [0]
    stride = max(int(tile * (1 - overlap)), 1)
    count = math.ceil((size - tile) / stride) + 1
    return [min(i * stride, size - tile) for i in range(count)]


@lru_cache(maxsize=16)
def _weight_map_cpu(tile_h: int, tile_w: int, blend: str, sigma_scale: float) -> torch.Tensor:
    if blend == "constant":
        return torch.ones(tile_h, tile_w)
    axes = []
    for n in (tile_h, tile_w):
        if blend == "gaussian":
            x = torch.arange(n, dtype=torch.float32) - (n - 1) / 2.0
            axes.append(torch.exp(x**2 / (-2 * (sigma_scale * n) ** 2)))
        else:  # cosine: Hann window sampled at pixel centres
            x = (torch.arange(n, dtype=torch.float32) + 0.5) / n
            axes.append(0.5 - 0.5 * torch.cos(2 * math.pi * x))
    weights = axes[0][:, None] * axes[1][None, :]
    return weights.clamp_(min=max(float(weights.min()), 1e-3))  # no zero weights (as MONAI)


def weight_map(tile_h: int, tile_w: int, blend: str = "gaussian", *, sigma_scale: float = 0.125) -> torch.Tensor:
    """The per-tile blending weights, computed once per tile size (cached).

    Args:
        tile_h: tile height.
        tile_w: tile width.
        blend: ``"gaussian"`` | ``"cosine"`` | ``"constant"``.
        sigma_scale: Gaussian sigma as a fraction of the tile size (MONAI's default 0.125).

    Returns:
        ``tile_h x tile_w`` float32 weights in (0, 1], clamped below at 1e-3.
    """
    if blend not in BLENDS:
        raise unknown_choice("blend mode", blend, BLENDS)
    return _weight_map_cpu(tile_h, tile_w, blend, float(sigma_scale))


def _padded_rows(read_rows: RowReader, y0: int, y1: int, height: int, pad_top: int, pad_left: int, width_p: int) -> torch.Tensor:
    """Rows [y0, y1) of the zero-padded image (padding: symmetric, as MONAI)."""
    a, b = max(y0 - pad_top, 0), min(y1 - pad_top, height)
    rows = read_rows(a, b)
    top, bottom = (a + pad_top) - y0, y1 - (b + pad_top)
    right = width_p - rows.shape[-1] - pad_left
    if top or bottom or pad_left or right:
        rows = F.pad(rows, (pad_left, right, top, bottom))
    return rows


def iter_prob_bands(
    read_rows: RowReader,
    shape: tuple[int, int],
    predict_fn: PredictFn,
    *,
    tile: int = 256,
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 8,
    sigma_scale: float = 0.125,
    device: str | torch.device = "cpu",
    on_tiles: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Blend sliding-window probabilities, yielding finished row ranges top to bottom.

    The next band of input rows is read in a background thread while the current band runs.

    Args:
        read_rows: returns image rows ``[y0, y1)`` as a ``C x n x W`` float tensor (normalised).
        shape: the image's ``(H, W)``.
        predict_fn: maps a batch of tiles to probabilities of the same spatial size.
        tile: tile size in pixels (square).
        overlap: fraction of a tile shared with its neighbour, in [0, 1).
        blend: weight window, ``"gaussian"`` | ``"cosine"`` | ``"constant"``.
        batch_size: tiles per forward pass.
        sigma_scale: Gaussian sigma as a fraction of the tile.
        device: where tiles are sent and blended.
        on_tiles: called as ``on_tiles(done, total)`` after each batch (progress).

    Yields:
        ``(y0, y1, probs)`` with ``probs`` a CPU float32 ``K x (y1 - y0) x W`` tensor; the ranges
        cover ``[0, H)`` in order.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    height, width = shape
    hp, wp = max(height, tile), max(width, tile)
    pad_top, pad_left = (hp - height) // 2, (wp - width) // 2
    ys, xs = tile_starts(hp, tile, overlap), tile_starts(wp, tile, overlap)
    weights = weight_map(tile, tile, blend, sigma_scale=sigma_scale).to(device)
    total, done = len(ys) * len(xs), 0
    # every band holds one row of tiles at the same x offsets: its weight sum is the same strip
    strip = torch.zeros(tile, wp, device=device)
    for x in xs:
        strip[:, x : x + tile] += weights
    acc = cnt = None
    buf_y0 = 0

    def emit(a: int, b: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        lo, hi = max(a, pad_top), min(b, pad_top + height)
        if hi > lo:
            block = acc[:, lo - buf_y0 : hi - buf_y0, pad_left : pad_left + width]
            norm = cnt[lo - buf_y0 : hi - buf_y0, pad_left : pad_left + width]
            yield lo - pad_top, hi - pad_top, (block / norm).float().cpu()

    def read(y: int) -> torch.Tensor:
        return _padded_rows(read_rows, y, y + tile, height, pad_top, pad_left, wp)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read, ys[0])
        for i, y in enumerate(ys):
            band = pending.result().to(device)
            if i + 1 < len(ys):
                pending = pool.submit(read, ys[i + 1])
            if acc is not None:  # rows above y are final: no later tile reaches them
                yield from emit(buf_y0, y)
                keep = buf_y0 + tile - y
                acc[:, :keep] = acc[:, tile - keep :].clone()
                cnt[:keep] = cnt[tile - keep :].clone()
                acc[:, keep:] = 0
                cnt[keep:] = 0
            buf_y0 = y
            for j in range(0, len(xs), batch_size):
                starts = xs[j : j + batch_size]
                probs = predict_fn(torch.stack([band[:, :, x : x + tile] for x in starts])).float()
                if acc is None:
                    acc = torch.zeros(probs.shape[1], tile, wp, device=device, dtype=torch.float32)
                    cnt = torch.zeros(tile, wp, device=device, dtype=torch.float32)
                probs.mul_(weights)
                for p, x in zip(probs, starts, strict=True):
                    acc[:, :, x : x + tile] += p
                done += len(starts)
                if on_tiles is not None:
                    on_tiles(done, total)
            cnt += strip
        yield from emit(buf_y0, buf_y0 + tile)


def sliding_window_probs(
    image: torch.Tensor,
    predict_fn: PredictFn,
    *,
    tile: int = 256,
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 8,
    sigma_scale: float = 0.125,
    on_tiles: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Blended sliding-window probabilities of a whole in-memory image.

    Args:
        image: the normalised image (on the device the model runs on).
        predict_fn: maps ``N x C x tile x tile`` tiles to ``N x K x tile x tile`` probabilities.
        tile, overlap, blend, batch_size, sigma_scale, on_tiles: as in :func:`iter_prob_bands`.

    Returns:
        ``K x H x W`` float32 probabilities (on the CPU).

    Shape:
        image: ``C x H x W`` -> ``K x H x W``.
    """
    height, width = image.shape[-2:]
    out = None
    for y0, y1, probs in iter_prob_bands(
        lambda a, b: image[:, a:b], (height, width), predict_fn, tile=tile, overlap=overlap,
        blend=blend, batch_size=batch_size, sigma_scale=sigma_scale, device=image.device, on_tiles=on_tiles,
    ):
        if out is None:
            out = torch.empty(probs.shape[0], height, width)
        out[:, y0:y1] = probs
    return out
