"""Test-time augmentation over the dihedral group: 4 rotations x optional flip, averaged.

Each of the 8 transforms is applied to the input tiles, the probabilities are mapped back by
the inverse transform and the 8 results averaged. A network that is not exactly rotation and
flip equivariant gives slightly different answers per transform; averaging them reduces the
variance of the prediction (e.g. Moshkov et al., Scientific Reports 2020, for nuclei).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral_tta(predict_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Average ``predict_fn`` over the 8 flips / 90-degree rotations of ``x``.

    Args:
        predict_fn: maps ``N x C x H x W`` to ``N x K x H x W`` probabilities (any H, W).
        x: input batch.

    Returns:
        The averaged, inverse-transformed probabilities.

    Shape:
        ``N x C x H x W`` -> ``N x K x H x W``.
    """
    total = None
    for k, flip in DIHEDRAL:
        t = torch.rot90(x, k, dims=(2, 3))
        if flip:
            t = torch.flip(t, dims=(3,))
        p = predict_fn(t).float()
        if flip:
            p = torch.flip(p, dims=(3,))
        p = torch.rot90(p, -k, dims=(2, 3))
        total = p if total is None else total + p
    return total / len(DIHEDRAL)
