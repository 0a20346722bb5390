"""Test-time augmentation over the dihedral group: 4 rotations x optional flip, averaged.

Each of the 8 transforms is applied to the input tiles, the outputs are mapped back by the
inverse transform and the 8 results averaged. A network that is not exactly rotation and flip
equivariant gives slightly different answers per transform; averaging them reduces the
variance of the prediction (e.g. Moshkov et al., Scientific Reports 2020, for nuclei).

Mapping an output back is more than moving its pixels. Channels transform by what they are:

* scalar maps (probabilities, distance, seediness) move with their pixels and are averaged;
* vector channel pairs ``(dy, dx)`` (the offsets of spatial embeddings, Novotny et al. 2018,
  see :mod:`seglab.instances.embedding`) move with their pixels *and* turn with the image:
  a horizontal flip negates ``dx``, a vertical flip ``dy``, a rotation rotates the vector;
  moving only the pixels would leave the 8 offsets pointing 8 ways, and they cancel;
* free embedding channels (plain discriminative embeddings, the recurrent route's unit-sphere
  embeddings, the channels past the offsets of spatial ones) have no geometric meaning per
  transform: the network may give one nucleus a different (equally good) vector under each
  transform, and the mean of such vectors shrinks the distances the decoder's bandwidth was
  trained for. They are taken from the identity transform only (:func:`tta_channels`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from seglab.spec.recipes import EMBEDDING_METHODS, make_recipe

DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))  # (0, False) first: the identity


def _flip_field(p: torch.Tensor, vectors: Sequence[tuple[int, int]]) -> torch.Tensor:
    """Mirror left-right (``x -> W - 1 - x``): pixels move, every ``dx`` changes sign."""
    p = torch.flip(p, dims=(3,))
    for _, j in vectors:
        p[:, j] = -p[:, j]
    return p


def _rot_field(p: torch.Tensor, k: int, vectors: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``torch.rot90(p, k, (2, 3))`` of a field: pixel ``(y, x)`` goes to ``(W - 1 - x, y)`` and a
    vector ``(dy, dx)`` to ``(-dx, dy)``, once per quarter turn."""
    p = torch.rot90(p, k, dims=(2, 3))
    for _ in range(k % 4):
        for i, j in vectors:
            dy = p[:, i].clone()
            p[:, i] = -p[:, j]
            p[:, j] = dy
    return p


def dihedral_tta(
    predict_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    vector_channels: Sequence[tuple[int, int]] = (),
    identity_channels: slice | Sequence[int] = (),
) -> torch.Tensor:
    """Average ``predict_fn`` over the 8 flips / 90-degree rotations of ``x``.

    Args:
        predict_fn: maps ``N x C x H x W`` to ``N x K x H x W`` outputs (any H, W).
        x: input batch.
        vector_channels: ``(dy, dx)`` channel index pairs holding vectors in pixel axes (row
            down, column right, any unit); they are rotated and mirrored back with the image
            before averaging (module docstring).
        identity_channels: channels that are not equivariant feature maps (free embeddings):
            taken from the untransformed input's output, not averaged. A slice counts over the
            K output channels (``slice(2, None)``: every channel from the third on).

    Returns:
        The averaged, inverse-transformed outputs.

    Shape:
        ``N x C x H x W`` -> ``N x K x H x W``.
    """
    vectors = [(int(i), int(j)) for i, j in vector_channels]
    total = identity = None
    for k, flip in DIHEDRAL:
        t = torch.rot90(x, k, dims=(2, 3))
        if flip:
            t = torch.flip(t, dims=(3,))
        p = predict_fn(t).float()
        if identity is None:
            identity = p
        if flip:
            p = _flip_field(p, vectors)
        p = _rot_field(p, -k, vectors)
        total = p if total is None else total + p
    out = total / len(DIHEDRAL)
    keep = list(range(out.shape[1])[identity_channels] if isinstance(identity_channels, slice) else identity_channels)
    if keep:
        out[:, keep] = identity[:, keep]
    return out


def tta_channels(method: str | None, decoder: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`dihedral_tta`'s channel roles for the decoder input stack of an instance method.

    The embedding routes' stack is ``[p_fg, (seediness,) embedding...]``
    (:func:`seglab.spec.recipes.decoder_input`). With spatial embeddings (the decoder's
    ``coord_unit`` > 0, recorded in the checkpoint by the engine) the first two embedding
    channels are the offsets ``(dy, dx)`` towards the instance's point, a vector field; every
    other embedding channel, and every channel of plain (``coord_unit`` 0) or recurrent
    (unit-sphere) embeddings, comes from the identity transform. Other methods' outputs are
    scalar maps: all averaged.

    Returns:
        ``{"vector_channels": ..., "identity_channels": ...}`` keyword arguments.
    """
    if method not in EMBEDDING_METHODS:
        return {}
    heads = make_recipe("instance", method).aux_heads  # in stack order after p_fg
    names = list(heads)
    start = 1 + sum(heads[name] for name in names[: names.index("embedding")])
    if float(((decoder or {}).get("kwargs") or {}).get("coord_unit", 0.0)) > 0:
        return {"vector_channels": ((start, start + 1),), "identity_channels": slice(start + 2, None)}
    return {"identity_channels": slice(start, None)}
