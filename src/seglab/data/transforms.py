"""Joint image + label augmentation on ``torchvision.transforms.v2``.

The image travels as ``tv_tensors.Image`` and the label map as ``tv_tensors.Mask``, so every
geometric transform moves both the same way and torchvision resamples the mask with nearest
neighbour only (never interpolated ids); photometric transforms (colour jitter, stain jitter)
touch the image only. Randomness comes from torch's global generator, so ``torch.manual_seed``
makes a run repeatable (and DataLoader workers get distinct seeds).

Presets:
    ``"none"``: identity.
    ``"default"``: flips, 90-degree rotations and photometric jitter by modality: for RGB
    brightfield, mild colour jitter and H&E stain jitter; for fluorescence and any image that is
    not RGB, per-channel intensity jitter (gain, offset, gamma).
    ``"strong"``: ``"default"`` with stronger jitter plus random affine and elastic deformation.
    Pixels these expose (outside the input) are 0 in the image and :data:`MASK_FILL` (-1) in
    the label: their label is unknown, and :class:`~seglab.data.dataset.SegmentationDataset`
    turns -1 into "ignore" (255) in every target, as it does for padding.

Stain jitter perturbs the hematoxylin / eosin / DAB concentrations of the colour deconvolution of
Ruifrok & Johnston (2001), as in Tellez et al., "Quantifying the effects of data augmentation and
stain color normalization in convolutional neural networks for computational pathology", Medical
Image Analysis 2019 (HED jitter: ``s' = alpha * s + beta`` per stain).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from seglab.errors import unknown_choice

PRESETS = ("none", "default", "strong")
MASK_FILL = -1  # label of pixels a geometric transform exposes; the data set's padding sentinel
_FILL = {tv_tensors.Image: 0, tv_tensors.Mask: MASK_FILL}
MODALITIES = ("brightfield", "fluorescence")
_LOG_ADJUST = float(torch.log(torch.tensor(1e-6)))


def _hed_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    from skimage.color import hed_from_rgb, rgb_from_hed

    return torch.from_numpy(hed_from_rgb).float(), torch.from_numpy(rgb_from_hed).float()


def rgb_to_hed(image: torch.Tensor) -> torch.Tensor:
    """``3 x H x W`` RGB in [0, 1] to stain concentrations (``skimage.color.rgb2hed`` before clipping)."""
    hed_from_rgb, _ = _hed_matrices()
    od = torch.log(image.clamp(min=1e-6)) / _LOG_ADJUST
    return torch.einsum("chw,cd->dhw", od, hed_from_rgb)


def hed_to_rgb(stains: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hed` (``skimage.color.hed2rgb``), clipped to [0, 1]."""
    _, rgb_from_hed = _hed_matrices()
    log_rgb = torch.einsum("dhw,dc->chw", stains * _LOG_ADJUST, rgb_from_hed)
    return torch.exp(log_rgb).clamp(0, 1)


class RandomRot90(v2.Transform):
    """Rotate by a random multiple of 90 degrees (only 0 or 180 for non-square inputs)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = next(x.shape[-2:] for x in flat_inputs if isinstance(x, torch.Tensor))
        k = int(torch.randint(0, 4, ()).item())
        return {"k": k if h == w else 2 * (k % 2)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image | tv_tensors.Mask) or params["k"] == 0:
            return inpt
        return tv_tensors.wrap(torch.rot90(inpt.as_subclass(torch.Tensor), params["k"], dims=(-2, -1)), like=inpt)


class RandomStainJitter(v2.Transform):
    """H&E stain jitter: per stain, ``s' = alpha * s + beta`` in HED space (RGB images only).

    Args:
        sigma: ``alpha`` is drawn uniformly from ``[1 - sigma, 1 + sigma]``.
        bias: ``beta`` is drawn uniformly from ``[-bias, bias]`` (skimage HED units; nuclei
            reach about 0.05-0.15 in hematoxylin).
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, sigma: float = 0.05, bias: float = 0.005) -> None:
        super().__init__()
        self.sigma, self.bias = sigma, bias

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        alpha = 1 + (torch.rand(3) * 2 - 1) * self.sigma
        beta = (torch.rand(3) * 2 - 1) * self.bias
        return {"alpha": alpha, "beta": beta}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if inpt.shape[-3] != 3:
            return inpt
        stains = rgb_to_hed(inpt.as_subclass(torch.Tensor).float())
        stains = stains * params["alpha"][:, None, None] + params["beta"][:, None, None]
        return tv_tensors.wrap(hed_to_rgb(stains).to(inpt.dtype), like=inpt)


class RandomIntensityJitter(v2.Transform):
    """Per-channel ``x' = clip(gain * x ** gamma + offset, 0, 1)`` for images in [0, 1].

    The photometric augmentation for fluorescence (exposure, detector gain and background vary
    between images) and for any channel count; ``gamma = exp(u)`` with ``u`` uniform in
    ``[-log_gamma, log_gamma]``, ``gain`` in ``[1 - gain, 1 + gain]``, ``offset`` in
    ``[-offset, offset]``.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, gain: float = 0.2, offset: float = 0.05, log_gamma: float = 0.3) -> None:
        super().__init__()
        self.gain, self.offset, self.log_gamma = gain, offset, log_gamma

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        c = next(x.shape[-3] for x in flat_inputs if isinstance(x, tv_tensors.Image))
        u = lambda: torch.rand(c, 1, 1) * 2 - 1  # noqa: E731
        return {"gain": 1 + u() * self.gain, "offset": u() * self.offset, "gamma": torch.exp(u() * self.log_gamma)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        x = inpt.as_subclass(torch.Tensor).float().clamp(0, 1)
        out = (x.pow(params["gamma"]) * params["gain"] + params["offset"]).clamp(0, 1)
        return tv_tensors.wrap(out.to(inpt.dtype), like=inpt)


class JointTransform:
    """Callable ``(image C x H x W float, label H x W int64) -> (image, label)`` around a v2 pipeline."""

    def __init__(self, pipeline: v2.Transform | None) -> None:
        self.pipeline = pipeline

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pipeline is None:
            return image, label
        img, mask = self.pipeline(tv_tensors.Image(image), tv_tensors.Mask(label))
        return img.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"JointTransform({self.pipeline!r})"


def _photometric(channels: int, strength: float, modality: str) -> list[v2.Transform]:
    if modality == "fluorescence" or channels != 3:
        jitter = RandomIntensityJitter(0.2 * strength, 0.05 * strength, 0.3 * strength)
        return [v2.RandomApply([jitter], p=0.8)]
    colour = v2.ColorJitter(
        brightness=0.1 * strength,
        contrast=0.1 * strength,
        saturation=0.1 * strength if channels == 3 else None,
        hue=0.02 * strength if channels == 3 else None,
    )
    steps: list[v2.Transform] = [v2.RandomApply([colour], p=0.8)]
    if channels == 3:
        steps.append(v2.RandomApply([RandomStainJitter(0.05 * strength, 0.005 * strength)], p=0.8))
    return steps


def build_transforms(preset: str = "default", *, channels: int = 3, modality: str = "brightfield") -> Callable:
    """Build a joint augmentation.

    Args:
        preset: ``"none"``, ``"default"`` or ``"strong"`` (see module docstring).
        channels: image channels; colour saturation/hue and stain jitter need 3.
        modality: ``"brightfield"`` (RGB: colour and stain jitter) or ``"fluorescence"``
            (per-channel gain, offset and gamma); images that are not RGB always get the latter.

    Returns:
        ``transform(image, label) -> (image, label)`` with image ``C x H x W`` float in [0, 1]
        and label ``H x W`` integer (signed: exposed pixels are :data:`MASK_FILL`); shapes are
        kept (90-degree turns only on square inputs).
    """
    if preset not in PRESETS:
        raise unknown_choice("augmentation preset", preset, PRESETS)
    if modality not in MODALITIES:
        raise unknown_choice("modality", modality, MODALITIES)
    if preset == "none":
        return JointTransform(None)
    steps: list[v2.Transform] = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(), RandomRot90()]
    if preset == "strong":
        affine = v2.RandomAffine(degrees=20, translate=(0.05, 0.05), scale=(0.85, 1.15), shear=8, fill=_FILL)
        steps += [v2.RandomApply([affine], p=0.5)]
        steps += [v2.RandomApply([v2.ElasticTransform(alpha=25.0, sigma=5.0, fill=_FILL)], p=0.3)]
    steps += _photometric(channels, 2.0 if preset == "strong" else 1.0, modality)
    return JointTransform(v2.Compose(steps))
