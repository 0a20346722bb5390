"""Checkerboard artefacts of up-sampling, measured: polyphase ripple and spectral share.

An up-sampling by stride ``s`` computes each output pixel with one of ``s**2`` kernels,
chosen by its phase ``(y mod s, x mod s)``. A transposed convolution whose kernel size is not
a multiple of its stride overlaps unevenly, so the phases see different numbers of taps (Odena
et al. 2016, "Deconvolution and checkerboard artifacts"); resize-convolution uses one kernel
for every phase.

``polyphase_ripple``: the spread (standard deviation) of the ``s**2`` phase means of a map,
divided by the mean absolute value of the map. A phase-independent map scores about 0.

``checkerboard_energy``: the share of the (DC-free) power spectrum at the frequencies a stride
``s`` grid produces, ``(k N / s, l M / s)`` for integers ``k, l`` not both 0. White noise puts
``(s**2 - 1) / (N M - 1)`` there; a periodic pattern of period ``s`` puts everything there.
"""

from __future__ import annotations

import numpy as np


def _as_maps(x) -> np.ndarray:
    """``... x H x W`` (numpy or torch) -> float64 ``B x H x W``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 2:
        raise ValueError(f"need a map of at least 2 dimensions, got shape {a.shape}")
    return a.reshape(-1, *a.shape[-2:])


def phase_means(x, stride: int) -> np.ndarray:
    """Mean of each of the ``stride x stride`` phases over all maps: ``stride x stride``."""
    a = _as_maps(x)
    h, w = (a.shape[1] // stride) * stride, (a.shape[2] // stride) * stride
    a = a[:, :h, :w].reshape(a.shape[0], h // stride, stride, w // stride, stride)
    return a.mean(axis=(0, 1, 3))


def polyphase_ripple(x, stride: int) -> float:
    """``std(phase means) / mean(|x|)`` over the ``stride**2`` phases (0 for an all-zero map).

    Args:
        x: maps ``... x H x W`` (numpy array or tensor); every leading index is one more map.
        stride: the up-sampling stride ``s``.
    """
    scale = float(np.abs(_as_maps(x)).mean())
    return float(phase_means(x, stride).std() / scale) if scale > 0 else 0.0


def power_spectrum(x) -> np.ndarray:
    """Mean power ``|FFT|**2`` of the maps with each map's mean removed (DC = 0), ``H x W``."""
    a = _as_maps(x)
    a = a - a.mean(axis=(1, 2), keepdims=True)
    return (np.abs(np.fft.fft2(a)) ** 2).mean(axis=0)


def checkerboard_mask(shape: tuple[int, int], stride: int) -> np.ndarray:
    """Boolean ``H x W`` (unshifted FFT layout): frequencies ``(k H/s, l W/s)``, DC excluded."""
    h, w = shape
    if h % stride or w % stride:
        raise ValueError(f"map {h}x{w} is not a multiple of the stride {stride}")
    mask = np.zeros(shape, dtype=bool)
    mask[:: h // stride, :: w // stride] = True
    mask[0, 0] = False
    return mask


def checkerboard_energy(x, stride: int) -> float:
    """Share of the DC-free spectral power at the stride-``s`` grid frequencies, in [0, 1]."""
    power = power_spectrum(x)
    mask = checkerboard_mask(power.shape, stride)
    total = float(power.sum())
    return float(power[mask].sum() / total) if total > 0 else 0.0
