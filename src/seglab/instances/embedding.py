"""Decoders of the embedding routes: cluster foreground pixel embeddings into instances.

``embedding_meanshift`` follows De Brabandere et al., "Semantic instance segmentation with a
discriminative loss function" (2017): the network maps the pixels of one instance close together
in embedding space, so mean-shift on the foreground embeddings finds one mode per instance.
``embedding_seeds`` follows Fathi et al., "Semantic instance segmentation via deep metric
learning" (2017): seeds are picked by a predicted seediness score and each claims the pixels whose
embedding similarity to it is high.

Input stack (the engine's :meth:`~seglab.engine.module.SegmentationModule.probabilities`):

==========================  ==============================================================
``embedding_meanshift``     ``(1 + E) x H x W``: foreground probability, then E embedding channels
``embedding_seeds``         ``(2 + E) x H x W``: foreground probability, seediness (sigmoid),
                            then E embedding channels
==========================  ==============================================================

Both return an ``H x W`` int32 map, 0 = background, instances 1..K. Clustering is vectorised in
torch over all foreground pixels at once: the loops are over mean-shift iterations, coverage
rounds and seeds, never over pixels.

Spatial (semi-convolutional) embeddings, Novotny et al., "Semi-convolutional operators for
instance segmentation" (ECCV 2018): a convolutional network is translation-equivariant, so two
nuclei that look alike get alike embeddings wherever they are, and the discriminative loss has to
push every pair of neighbours apart by appearance alone. With ``coord_unit = u > 0`` the pixel's
own position ``(y / u, x / u)`` is added to the first two embedding channels, in the loss and in
the decoder alike (:func:`with_coordinates`): the network then predicts an offset towards a
point shared by its instance, and neighbours are apart by position already. ``u`` is pixels per
embedding unit; about an instance diameter over ``2 delta_d`` puts touching neighbours at the
push margin. The network's output stays translation-equivariant, so tiles blend as usual and the
decoder adds the coordinates of the tile or block it decodes.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.measure import label as label_regions
from skimage.segmentation import relabel_sequential

from seglab.errors import ConfigError, unknown_choice
from seglab.instances.decoders import remove_small_instances

CLUSTER_METHODS = ("meanshift", "dbscan", "hdbscan")


def _split_stack(stack: np.ndarray, extra: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    stack = np.asarray(stack, dtype=np.float32)
    if stack.ndim != 3 or stack.shape[0] < extra + 1:
        raise ValueError(f"{name} expects a ({extra} + E) x H x W stack with E >= 1, got {stack.shape}")
    return stack[:extra], stack[extra:]


def _finish(labels: np.ndarray, min_size: int, split_components: bool) -> np.ndarray:
    """Split spatially disjoint parts of a cluster, drop small instances, number 1..K."""
    if split_components and labels.max(initial=0) > 0:
        labels = label_regions(labels, background=0, connectivity=1)
    labels = remove_small_instances(labels, min_size)
    return relabel_sequential(labels.astype(np.int32, copy=False))[0].astype(np.int32)


def coordinate_channels(embeddings: torch.Tensor, unit: float) -> torch.Tensor | None:
    """Each pixel's ``(y / unit, x / unit)`` in the first two of the embeddings' E channels.

    ``unit <= 0`` gives ``None`` (plain embeddings). Positions count from the map's top-left
    pixel; the losses of this route are invariant to a common shift of them (the discriminative
    loss regularises the learned embeddings, not these), so patch, tile and block origins need
    not agree.

    Shape:
        embeddings: (N x) E x H x W with E >= 2 -> E x H x W (zeros beyond the first two channels).
    """
    if unit <= 0:
        return None
    if embeddings.shape[-3] < 2:
        raise ConfigError(f"spatial embeddings need embedding_dim >= 2, got {embeddings.shape[-3]}")
    h, w = embeddings.shape[-2:]
    ys = torch.arange(h, device=embeddings.device, dtype=embeddings.dtype) / unit
    xs = torch.arange(w, device=embeddings.device, dtype=embeddings.dtype) / unit
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"))  # 2 x H x W
    pad = embeddings.new_zeros((embeddings.shape[-3] - 2, h, w))
    return torch.cat([grid, pad])


def with_coordinates(embeddings: torch.Tensor, unit: float) -> torch.Tensor:
    """Add each pixel's ``(y / unit, x / unit)`` to the first two embedding channels
    (:func:`coordinate_channels`); ``unit <= 0`` returns the embeddings unchanged.

    Shape:
        embeddings: (N x) E x H x W with E >= 2 -> the same shape (a new tensor).
    """
    coordinates = coordinate_channels(embeddings, unit)
    return embeddings if coordinates is None else embeddings + coordinates


def default_bandwidth(delta_v: float) -> float:
    """Mean-shift bandwidth for embeddings trained with pull margin ``delta_v``: ``2 delta_v``.

    With the discriminative loss's margins every pixel lies within ``delta_v`` of its centre,
    so one cluster spans at most ``2 delta_v``.
    """
    return 2.0 * float(delta_v)


def _kernel(dist2: torch.Tensor, bandwidth: float, kernel: str) -> torch.Tensor:
    if kernel == "flat":
        return (dist2 <= bandwidth * bandwidth).to(dist2.dtype)
    if kernel == "gaussian":
        return torch.exp(-dist2 / (2.0 * bandwidth * bandwidth))
    raise unknown_choice("mean-shift kernel", kernel, ("flat", "gaussian"))


def _dist2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``A x B``."""
    return torch.cdist(a, b).square_()


def mean_shift_modes(
    points: torch.Tensor,
    seeds: torch.Tensor,
    *,
    bandwidth: float,
    kernel: str = "flat",
    max_iter: int = 50,
    tol: float = 1e-2,
) -> torch.Tensor:
    """Move every seed uphill to a mode of the kernel density of ``points`` (all seeds at once).

    Each iteration replaces a seed by the kernel-weighted mean of the points (Comaniciu & Meer
    2002); a seed that moved less than ``tol * bandwidth`` is converged and stops. A flat-kernel
    seed with no point within the bandwidth stays where it is.

    Shape:
        points: P x E, seeds: S x E -> modes S x E.
    """
    modes = seeds.clone()
    active = torch.arange(len(modes))
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        current = modes[active]
        weights = _kernel(_dist2(current, points), bandwidth, kernel)  # S' x P
        mass = weights.sum(1, keepdim=True)
        moved = torch.where(mass > 0, weights @ points / mass.clamp_min(1e-12), current)
        modes[active] = moved
        active = active[(moved - current).norm(dim=1) >= tol * bandwidth]
    return modes


def merge_modes(modes: torch.Tensor, points: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Keep the densest modes, dropping any within ``bandwidth`` of a denser kept one.

    The density of a mode is the number of points within the bandwidth (as scikit-learn's
    ``MeanShift`` ranks its candidate centres). The loop runs over modes, not pixels.
    """
    if modes.shape[0] == 0:
        return modes
    density = (_dist2(modes, points) <= bandwidth**2).sum(1)
    order = torch.argsort(density, descending=True, stable=True)
    modes = modes[order]
    close = _dist2(modes, modes) <= bandwidth**2
    keep = torch.ones(len(modes), dtype=torch.bool)
    for i in range(len(modes)):
        if keep[i]:
            later = close[i].clone()
            later[: i + 1] = False
            keep &= ~later
    return modes[keep]


def meanshift_cluster(
    points: torch.Tensor,
    *,
    bandwidth: float,
    kernel: str = "flat",
    n_seeds: int = 256,
    max_iter: int = 50,
    max_rounds: int = 5,
    max_points: int = 3000,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-shift clustering of ``points`` (P x E) -> (cluster index per point (P), modes (K x E)).

    Seeds are a random subsample of the points. After each round every point farther than the
    bandwidth from all modes found so far is "uncovered", and the next round seeds only among
    those, so a small cluster missed by the first sample still gets its mode. Modes closer than
    the bandwidth are merged (denser first); finally every point goes to its nearest mode.
    The density is estimated on at most ``max_points`` points (a random subsample).
    """
    n = points.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long), points.new_zeros(0, points.shape[1])
    gen = torch.Generator().manual_seed(seed)
    sample = points if n <= max_points else points[torch.randperm(n, generator=gen)[:max_points]]
    modes = points.new_zeros(0, points.shape[1])
    uncovered = torch.ones(n, dtype=torch.bool)
    for _ in range(max_rounds):
        candidates = uncovered.nonzero().squeeze(1)
        if candidates.numel() == 0:
            break
        pick = candidates[torch.randperm(candidates.numel(), generator=gen)[:n_seeds]]
        found = mean_shift_modes(sample, points[pick], bandwidth=bandwidth, kernel=kernel, max_iter=max_iter)
        modes = merge_modes(torch.cat([modes, found]), sample, bandwidth)
        uncovered = _dist2(points, modes).min(1).values > bandwidth**2
    return _dist2(points, modes).argmin(1), modes


def _sklearn_cluster(points: np.ndarray, method: str, bandwidth: float, min_samples: int) -> np.ndarray:
    """DBSCAN / HDBSCAN labels; noise points join the cluster with the nearest centre."""
    from sklearn.cluster import DBSCAN, HDBSCAN

    if method == "dbscan":
        labels = DBSCAN(eps=bandwidth, min_samples=min_samples).fit_predict(points)
    else:
        labels = HDBSCAN(min_cluster_size=max(2, min_samples), min_samples=min_samples, copy=True).fit_predict(points)
    clusters = labels[labels >= 0]
    if clusters.size == 0:
        return np.zeros(len(points), dtype=np.int64)
    ids, inverse = np.unique(clusters, return_inverse=True)
    centres = np.zeros((len(ids), points.shape[1]))
    np.add.at(centres, inverse, points[labels >= 0])
    centres /= np.bincount(inverse)[:, None]
    noise = labels < 0
    out = np.searchsorted(ids, np.where(noise, ids[0], labels))
    if noise.any():
        d = ((points[noise, None, :] - centres[None]) ** 2).sum(-1)
        out[noise] = d.argmin(1)
    return out.astype(np.int64)


def embedding_meanshift(
    stack: np.ndarray,
    *,
    fg_threshold: float = 0.5,
    bandwidth: float | None = None,
    delta_v: float = 0.5,
    kernel: str = "flat",
    method: str = "meanshift",
    normalize: bool = False,
    n_seeds: int = 256,
    max_iter: int = 50,
    min_samples: int = 10,
    min_size: int = 10,
    split_components: bool = True,
    coord_unit: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Cluster the foreground embeddings into instances (De Brabandere et al. 2017).

    Args:
        stack: ``(1 + E) x H x W``: foreground probability, then the E embedding channels.
        fg_threshold: foreground = probability above this.
        bandwidth: mean-shift kernel radius (flat) or sigma (gaussian), DBSCAN's ``eps``;
            ``None`` = ``2 * delta_v``: with the discriminative loss's margins every pixel lies
            within ``delta_v`` of its centre, so one cluster spans at most ``2 * delta_v``.
        delta_v: the pull margin the embeddings were trained with (for the default bandwidth).
        kernel: ``"flat"`` or ``"gaussian"`` (mean-shift only).
        method: ``"meanshift"`` (torch, vectorised), ``"dbscan"`` or ``"hdbscan"`` (scikit-learn).
        normalize: put embeddings on the unit sphere first (the recurrent route's cosine geometry).
        n_seeds: mean-shift seeds per coverage round (see :func:`meanshift_cluster`).
        max_iter: mean-shift iterations per round.
        min_samples: DBSCAN / HDBSCAN ``min_samples``.
        min_size: instances smaller than this many pixels become background.
        split_components: give each 4-connected part of a cluster its own id (two separate
            nuclei that happen to share a cluster are still two instances).
        coord_unit: pixels per embedding unit of the spatial embeddings the route was trained
            with (module docstring); 0 = plain embeddings.
        seed: random seed of the seed subsample (the result is deterministic).

    Returns:
        ``H x W`` int32 instance map, 0 = background, 1..K.
    """
    if method not in CLUSTER_METHODS:
        raise unknown_choice("clustering method", method, CLUSTER_METHODS)
    head, emb = _split_stack(stack, 1, "embedding_meanshift")
    emb = with_coordinates(torch.from_numpy(emb), coord_unit).numpy()
    bandwidth = default_bandwidth(delta_v) if bandwidth is None else float(bandwidth)
    if bandwidth <= 0:
        raise ConfigError(f"bandwidth must be positive, got {bandwidth}")
    fg = head[0] > fg_threshold
    labels = np.zeros(fg.shape, dtype=np.int32)
    if not fg.any():
        return labels
    points = torch.from_numpy(np.ascontiguousarray(emb[:, fg].T))  # P x E
    if normalize:
        points = torch.nn.functional.normalize(points, dim=1)
    if method == "meanshift":
        assign = meanshift_cluster(points, bandwidth=bandwidth, kernel=kernel, n_seeds=n_seeds,
                                   max_iter=max_iter, seed=seed)[0].numpy()
    else:
        assign = _sklearn_cluster(points.numpy().astype(np.float64), method, bandwidth, min_samples)
    labels[fg] = assign + 1
    return _finish(labels, min_size, split_components)


def pair_similarity(dist2: torch.Tensor) -> torch.Tensor:
    """Fathi et al.'s similarity ``sigma = 2 / (1 + exp(||e_i - e_j||^2))``: 1 at distance 0."""
    return 2.0 * torch.sigmoid(-dist2)


def embedding_seeds(
    stack: np.ndarray,
    *,
    fg_threshold: float = 0.5,
    seed_threshold: float = 0.3,
    similarity_threshold: float = 0.5,
    max_instances: int = 1000,
    assign_rest: bool = True,
    min_size: int = 10,
    split_components: bool = True,
    coord_unit: float = 0.0,
) -> np.ndarray:
    """Seeds by seediness, pixels by embedding similarity (Fathi et al. 2017).

    Repeatedly take the unassigned foreground pixel of highest seediness (while it is at least
    ``seed_threshold``) as a seed; the unassigned foreground pixels whose similarity to it,
    ``sigma(e, e_seed) = 2 / (1 + exp(||e - e_seed||^2))`` (the similarity the pairwise loss
    trains, see :mod:`seglab.losses.embedding`), exceeds ``similarity_threshold`` form its
    instance. The paper scores later seeds also by their embedding distance to earlier ones;
    here a pixel already claimed can never seed again, which serves the same purpose.

    Args:
        stack: ``(2 + E) x H x W``: foreground probability, seediness, E embedding channels.
        fg_threshold: foreground = probability above this.
        seed_threshold: lowest seediness a seed may have.
        similarity_threshold: lowest sigma for a pixel to join a seed (0.5 = the loss's decision
            boundary, ``||e - e_seed||^2 < ln 3``).
        max_instances: at most this many seeds.
        assign_rest: foreground pixels left after the last seed join the most similar seed
            (otherwise they become background).
        min_size: instances smaller than this many pixels become background.
        split_components: give each 4-connected part of an instance its own id.
        coord_unit: pixels per embedding unit of spatial embeddings (module docstring); 0 = plain.

    Returns:
        ``H x W`` int32 instance map, 0 = background, 1..K.
    """
    head, emb = _split_stack(stack, 2, "embedding_seeds")
    emb = with_coordinates(torch.from_numpy(emb), coord_unit).numpy()
    fg = head[0] > fg_threshold
    labels = np.zeros(fg.shape, dtype=np.int32)
    if not fg.any():
        return labels
    points = torch.from_numpy(np.ascontiguousarray(emb[:, fg].T))  # P x E
    seediness = torch.from_numpy(head[1][fg]).clone()
    assign = torch.zeros(points.shape[0], dtype=torch.long)  # 0 = unassigned
    seeds = []
    free = torch.ones_like(assign, dtype=torch.bool)
    for k in range(1, max_instances + 1):
        score = torch.where(free, seediness, torch.full_like(seediness, -1.0))
        best = int(score.argmax())
        if score[best] < seed_threshold:
            break
        sim = pair_similarity((points - points[best]).square().sum(1))
        members = free & (sim > similarity_threshold)
        members[best] = True
        assign[members] = k
        free &= ~members
        seeds.append(best)
    if assign_rest and seeds and free.any():
        dist2 = torch.cdist(points[free], points[seeds]).square()
        assign[free] = dist2.argmin(1) + 1
    labels[fg] = assign.numpy()
    return _finish(labels, min_size, split_components)
