"""``Predictor``: a trained model plus its recorded preprocessing and decoder, ready for images.

A checkpoint (``seglab.spec.checkpoint``) carries everything needed: the model spec and
weights, ``preprocessing`` (intensity scaling to [0, 1] by the training data's or the image's
percentiles, :mod:`seglab.data.normalize`, then ``(x - mean) / std``), the task,
the instance method and the decoder. Probabilities are the engine's (:func:`outputs_to_probs`): soft-max of the logits,
or for methods with extra heads the foreground probability followed by the heads, e.g.
``[p_foreground, sigmoid(distance)]`` for ``distance_watershed``. Images of any size run through sliding windows band by band
(:mod:`seglab.inference.sliding`) and are decoded block by block (:mod:`seglab.inference.stitch`),
so memory is bounded by a band of tiles, not by the image.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from seglab.data.normalize import IntensityScaling, read_sampled
from seglab.errors import DataError, SeglabError, unknown_choice
from seglab.inference.sliding import BLENDS, iter_prob_bands
from seglab.inference.source import ArraySource
from seglab.inference.stitch import decode_blockwise, decode_rows_semantic
from seglab.inference.tta import dihedral_tta, tta_channels
from seglab.instances import DECODERS, decode
from seglab.spec.checkpoint import build_model, load_checkpoint
from seglab.spec.recipes import Recipe, decoder_input, make_recipe

TASKS = ("instance", "semantic", "panoptic")  # panoptic: seglab.inference.panoptic_writers


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu`` or ``cuda[:i]``; CUDA must be available when asked for (else a one-line error)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SeglabError(f"unsupported device {str(device)!r}; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SeglabError(f"device {str(device)!r} requested but CUDA is not available; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise SeglabError(f"unsupported device {str(device)!r}; use cpu or cuda")
    return dev


def adapt_channels(image: np.ndarray, in_channels: int, path: str | os.PathLike[str] = "<array>") -> np.ndarray:
    """Make an ``H x W x C`` image have the model's channel count.

    Gray (1 channel, or gray + alpha) to a 3-channel model is repeated; RGBA / gray + alpha
    drop the alpha channel; any other mismatch is a :class:`DataError` naming the file.
    """
    c = image.shape[-1]
    if c == in_channels:
        return image
    if c in (2, 4):  # trailing alpha
        image, c = image[..., : c - 1], c - 1
        if c == in_channels:
            return image
    if c == 1 and in_channels == 3:
        return np.repeat(image, 3, axis=-1)
    raise DataError(path, f"image has {image.shape[-1]} channels but the model expects {in_channels}")


def outputs_to_probs(out: torch.Tensor | dict[str, torch.Tensor], method: str | None, task: str = "instance") -> torch.Tensor:
    """Model outputs -> the decoder's input stack, exactly as the engine builds it in validation.

    See :func:`seglab.spec.recipes.decoder_input`: the soft-max of the logits for
    ``three_class`` and the semantic task; otherwise the foreground probability followed by each
    extra head of the method's recipe, through its activation.
    """
    if task == "instance" and method not in (None, "three_class"):
        try:
            return decoder_input(out, make_recipe(task, method))
        except SeglabError:
            pass
    return decoder_input(out, Recipe(task, method, 0, (), "", ()))


def default_tile(meta: dict[str, Any]) -> int:
    """Sliding-window tile for a checkpoint: its training patch, at least 256 px.

    A fully convolutional network trained on small patches predicts larger tiles as well (its
    normalisation layers are frozen), with fewer tile borders and less overlap work.
    """
    return max(int(meta.get("patch_size") or 256), 256)


def is_detection_checkpoint(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint's model predicts detections (Mask R-CNN) rather than probabilities."""
    return meta.get("method") == "maskrcnn"


def load_model(
    path: str | os.PathLike[str], *, task: str | None = None, detection: bool | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a checkpoint for prediction: its model (eval mode) and its ``seglab`` metadata.

    Args:
        path: the ``.ckpt`` file.
        task: when given, refuse a checkpoint of another task.
        detection: when given, refuse a checkpoint that is (``False``) or is not (``True``) a
            Mask R-CNN (detection) one.

    Raises:
        DataError: missing, damaged or non-seglab file, unsupported or unexpected task or kind,
            unknown decoder, or weights that do not fit the recorded model.
    """
    ckpt = load_checkpoint(path)
    meta = ckpt["seglab"]
    if meta["task"] not in TASKS or (task is not None and meta["task"] != task):
        wanted = task or " or ".join(TASKS)
        raise DataError(path, f"checkpoint is for the {meta['task']!r} task; predict needs {wanted}")
    if detection is not None and is_detection_checkpoint(meta) != detection:
        kind = "not a Mask R-CNN checkpoint; DetectionPredictor" if detection else "a Mask R-CNN checkpoint; Predictor"
        raise DataError(path, f"{kind} cannot predict it (seglab.inference.load_predictor picks the predictor for any checkpoint)")
    if meta["task"] in ("instance", "panoptic") and not is_detection_checkpoint(meta) and (meta["decoder"] or {}).get("name") not in DECODERS:
        raise DataError(path, f"instance checkpoint names no known decoder (got {meta['decoder']!r})")
    return build_model(ckpt, path), meta  # DataError naming the file when the model does not build


class Predictor:
    """Runs a segmentation model on whole images of any size.

    Args:
        model: the network (returns logits, or a dict with ``"logits"``).
        meta: the checkpoint's ``seglab`` metadata (``task``, ``method``, ``preprocessing``,
            ``decoder``); see :mod:`seglab.spec.checkpoint`.
        device: ``"cpu"`` or ``"cuda"`` (CUDA runs under float16 autocast).
        tta: average over the 8 flips / 90-degree rotations.
        tile: sliding-window tile size; ``None`` runs the whole image in one pass.
        overlap: tile overlap fraction.
        batch_size: tiles per forward pass.
        blend: ``"gaussian"`` | ``"cosine"`` | ``"constant"``.
        block: instance-decoding block size (images up to this size decode in one piece).
        margin: context decoded around each block; should exceed the largest nucleus.
        decode_workers: processes decoding blocks while the model runs (images of more than one
            block only; 0 decodes in the calling thread). The watershed holds the GIL, so a
            thread would not overlap with the model; a process does.
        backend: ``"torch"`` | ``"onnxruntime"`` | ``"torchscript"``: what runs the tiles
            (:mod:`seglab.inference.backends`); tiling, TTA and decoding are the same for all.
        model_file: the exported file for an exported backend (default: exported on first use
            into a cache beside ``checkpoint``).
        checkpoint: the checkpoint file the model came from (the export cache's place).
    """

    detection: ClassVar[bool] = False  # True for the predictor of Mask R-CNN (detection) checkpoints

    def __init__(
        self, model: torch.nn.Module, meta: dict[str, Any], *, device: str = "cpu", tta: bool = False,
        tile: int | None = None, overlap: float = 0.25, batch_size: int = 8, blend: str = "gaussian",
        block: int = 1536, margin: int = 64, decode_workers: int = 0, backend: str = "torch",
        model_file: str | os.PathLike[str] | None = None, checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        if blend not in BLENDS:
            raise unknown_choice("blend mode", blend, BLENDS)
        if not 0 <= overlap < 1 or (tile is not None and tile < 1) or batch_size < 1 or block < 1 or margin < 0:
            raise SeglabError(
                f"bad predictor options: overlap {overlap} (in [0, 1)), tile {tile} (>= 1 or None), "
                f"batch_size {batch_size} (>= 1), block {block} (>= 1), margin {margin} (>= 0)"
            )
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        if backend != "torch" and self.device.type != "cpu":
            raise SeglabError(f"--backend {backend} runs on the CPU; use --device cpu or --backend torch")
        from seglab.inference.backends import load_backend

        self.backend = backend
        self.run_model = load_backend(backend, self.model, meta, model_file=model_file, checkpoint=checkpoint)
        self.meta = meta
        self.task, self.method = meta["task"], meta.get("method")
        pre = meta["preprocessing"]
        self.in_channels = int(pre["in_channels"])
        self.mean = torch.tensor(pre["mean"], dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(pre["std"], dtype=torch.float32).view(-1, 1, 1)
        self.scaling = IntensityScaling.from_preprocessing(pre)
        self.decoder = meta.get("decoder") or None
        self.tta, self.tile, self.overlap = tta, tile, overlap
        self.batch_size, self.blend, self.block, self.margin = batch_size, blend, block, margin
        self.decode_workers = decode_workers

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], *, task: str | None = None, **kwargs: Any) -> Predictor:
        """Load a seglab checkpoint (``weights_only``) and build this class's predictor for it.

        A Mask R-CNN checkpoint needs :class:`~seglab.inference.detection.DetectionPredictor`;
        :func:`seglab.inference.load_predictor` picks the right class for any checkpoint.

        Args:
            path: the ``.ckpt`` file.
            task: when given, refuse a checkpoint of another task.
            **kwargs: :class:`Predictor` options (device, tta, tile, ...).

        Raises:
            DataError: as :func:`load_model`, including a checkpoint of the other kind
                (detection or not) than this class predicts.
        """
        model, meta = load_model(path, task=task, detection=cls.detection)
        return cls(model, meta, checkpoint=path, **kwargs)

    # -- preprocessing ------------------------------------------------------------------------
    def preprocess(self, rows: np.ndarray, path: str | os.PathLike[str] = "<array>",
                   value_range: tuple[Any, Any] | None = None) -> torch.Tensor:
        """``H x W x C`` image rows -> normalised ``C x H x W`` float tensor.

        ``value_range``: the whole image's intensity range (:meth:`intensity_range`) when
        ``rows`` are a band of it; ``None`` takes it from ``rows``.
        """
        x = self.scaling(adapt_channels(rows, self.in_channels, path), value_range)
        return (x - self.mean) / self.std

    def intensity_range(self, source: ArraySource) -> tuple[Any, Any]:
        """The intensity range of a whole (lazily read) image, from a strided sample of it."""
        if self.scaling.mode != "image":
            return self.scaling.range_of(np.zeros((1, 1, self.in_channels)))
        height, width, _ = source.shape
        sample = read_sampled(lambda a, b: adapt_channels(source.read_rows(a, b), self.in_channels, source.path), height, width)
        return self.scaling.range_of(sample)

    def _predict_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        amp = torch.autocast("cuda", dtype=torch.float16) if self.device.type == "cuda" else contextlib.nullcontext()

        def run(x: torch.Tensor) -> torch.Tensor:
            with amp:
                out = self.run_model(x.to(self.device).contiguous(memory_format=torch.channels_last))
            return outputs_to_probs(out, self.method, self.task)

        roles = tta_channels(self.method, self.decoder)  # offsets turn with the image, free embeddings do not
        return (lambda x: dihedral_tta(run, x, **roles)) if self.tta else run

    # -- probabilities ------------------------------------------------------------------------
    def iter_probs(self, source: ArraySource, on_tiles: Callable[[int, int], None] | None = None):
        """Yield ``(y0, y1, K x n x W)`` numpy probability bands of a (lazily read) image."""
        height, width, channels = source.shape
        adapt_channels(np.zeros((1, 1, channels), source.dtype), self.in_channels, source.path)
        fn = self._predict_fn()
        value_range = self.intensity_range(source)
        with torch.inference_mode():
            if self.tile is None:
                probs = fn(self.preprocess(source.read_all(), source.path, value_range)[None].to(self.device))[0]
                yield 0, height, probs.float().cpu().numpy()
                return
            read = lambda a, b: self.preprocess(source.read_rows(a, b), source.path, value_range)  # noqa: E731
            for y0, y1, probs in iter_prob_bands(
                read, (height, width), fn, tile=self.tile, overlap=self.overlap, blend=self.blend,
                batch_size=self.batch_size, device=self.device, on_tiles=on_tiles,
            ):
                yield y0, y1, probs.numpy()

    def predict_probs(self, image: np.ndarray | ArraySource) -> np.ndarray:
        """Probabilities of a whole image as ``K x H x W`` float32 (the decoder's input)."""
        source = image if isinstance(image, ArraySource) else ArraySource(image)
        bands = list(self.iter_probs(source))
        return np.concatenate([b[2] for b in bands], axis=1)

    # -- labels -------------------------------------------------------------------------------
    def decode_probs(self, probs: np.ndarray) -> np.ndarray:
        """Decode a ``K x h x w`` crop with the checkpoint's decoder (instance task)."""
        if self.task == "panoptic":  # the instance channels; the class channels are fused after
            probs = probs[:3]
        return decode(self.decoder["name"], probs, **self.decoder.get("kwargs", {}))

    def predict_source(
        self, source: ArraySource, *, out: np.ndarray | None = None, on_tiles: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Label map of an image, streamed: bounded memory for any size.

        Returns:
            ``H x W`` int32 instance map (instance task) or uint8 class map (semantic task).
        """
        height, width = source.shape[:2]
        bands = self.iter_probs(source, on_tiles)
        if self.task == "semantic":
            return decode_rows_semantic(bands, (height, width), out)
        if self.decode_workers < 1 or max(height, width) <= self.block:
            return decode_blockwise(bands, (height, width), self.decode_probs, block=self.block, margin=self.margin, out=out)
        decoder = functools.partial(decode, self.decoder["name"], **self.decoder.get("kwargs", {}))
        with ProcessPoolExecutor(self.decode_workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            return decode_blockwise(
                bands, (height, width), decoder, block=self.block, margin=self.margin, out=out, pool=pool,
            )

    def predict(self, image: np.ndarray | str | Path) -> dict[str, np.ndarray]:
        """Predict one in-memory image (``H x W [x C]``) or image file.

        Returns:
            ``{"probs": K x H x W, "instances": H x W int32}`` for the instance task,
            ``{"probs": ..., "classes": H x W uint8}`` (uint16 past 256 classes) for the semantic task.
        """
        if isinstance(image, str | Path):
            from seglab.inference.source import open_image

            with open_image(image) as source:
                return self.predict(source)
        source = image if isinstance(image, ArraySource) else ArraySource(image)
        probs = self.predict_probs(source)
        if self.task == "semantic":
            return {"probs": probs, "classes": decode_rows_semantic([(0, probs.shape[1], probs)], probs.shape[1:])}
        bands = [(0, probs.shape[1], probs)]
        labels = decode_blockwise(bands, probs.shape[1:], self.decode_probs, block=self.block, margin=self.margin)
        return {"probs": probs, "instances": labels}
