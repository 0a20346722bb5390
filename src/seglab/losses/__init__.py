"""Segmentation losses with an explicit mode, and the discriminative embedding loss.

Every region/pixel loss is an ``nn.Module`` called as ``loss(logits, target)`` and built with a
keyword-only, required ``mode``:

===========  ==============================  ============================================
mode         logits                          target
===========  ==============================  ============================================
binary       N x 1 x H x W  or  N x H x W    N x H x W or N x 1 x H x W, values in {0, 1}
multiclass   N x C x H x W, C >= 2           N x H x W integer class indices in [0, C)
multilabel   N x C x H x W                   N x C x H x W, values in {0, 1}
===========  ==============================  ============================================

Tensors that do not fit the mode raise :class:`LossInputError` (a ``ConfigError`` and a
``ValueError``) naming the expected shapes. ``ignore_index`` pixels are left out of every term.

Example:
    >>> loss = create_loss("ce+dice", mode="multiclass", ignore_index=255)
    >>> value = loss(logits, target)          # logits N x C x H x W, target N x H x W
    >>> loss.last_components                   # {"ce": ..., "dice": ...}
"""

from seglab.losses._inputs import MODES, LossInputError
from seglab.losses.combined import CombinedLoss
from seglab.losses.cross_entropy import CrossEntropyLoss, FocalLoss
from seglab.losses.discriminative import DiscriminativeLoss
from seglab.losses.embedding import FathiPairLoss, KongPairLoss, SeedinessLoss
from seglab.losses.factory import LOSSES, check_loss_kwargs, create_loss, parse_spec
from seglab.losses.generalized_dice import GeneralizedDiceLoss
from seglab.losses.lovasz import LovaszLoss
from seglab.losses.region import DiceLoss, JaccardLoss, TverskyLoss

__all__ = [
    "LOSSES",
    "MODES",
    "CombinedLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "DiscriminativeLoss",
    "FathiPairLoss",
    "FocalLoss",
    "GeneralizedDiceLoss",
    "JaccardLoss",
    "KongPairLoss",
    "LossInputError",
    "LovaszLoss",
    "SeedinessLoss",
    "TverskyLoss",
    "check_loss_kwargs",
    "create_loss",
    "parse_spec",
]
