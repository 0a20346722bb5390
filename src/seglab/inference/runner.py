"""Predict a file, folder or glob of images: outputs, ``summary.csv``, skip-existing, progress.

With ``coco`` each image leaves a part (its instances with scores) and the folder's
``coco_results.json`` / ``coco_images.json`` are assembled from the parts of all inputs after
the last image, so a resumed run (``skip_existing``) still writes complete folder files.

Reading the next images (decoding PNG/JPEG, opening TIFFs) runs in ``workers`` background threads
while the model works on the current one; a TIFF is then read band by band as the sliding
window needs it (also in a background thread, see :mod:`seglab.inference.sliding`).
"""

from __future__ import annotations

import copy
import glob
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from seglab.data.io import IMAGE_SUFFIXES
from seglab.errors import DataError, SeglabError
from seglab.inference.slide import SlideSource
from seglab.inference.slide_run import (
    input_stem,
    open_input,
    predict_slide_file,
    slide_output_paths,
)
from seglab.inference.source import check_finite
from seglab.inference.summary import merge_summary
from seglab.inference.writers import (
    instance_scores,
    output_paths,
    read_summary,
    summary_row,
    write_coco_folder,
    write_outputs,
)

SLIDE_SUFFIXES = (".svs", ".ndpi", ".vms", ".vmu", ".mrxs", ".scn", ".bif", ".svslide", ".dcm")


def expand_inputs(spec: str | Path) -> list[Path]:
    """The image and slide files named by a file, a folder (its images and slides, sorted) or a glob pattern.

    Raises:
        SeglabError: nothing matches, or two inputs share a stem (their outputs would collide).
    """
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + SLIDE_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(str(spec)) if Path(p).is_file())
    if not files:
        raise DataError(spec, "no image files found (expected a file, a folder of images or a glob pattern)")
    stems: dict[str, Path] = {}
    for f in files:
        if input_stem(f) in stems:
            raise DataError(f, f"shares its stem with {stems[input_stem(f)]}; outputs would collide")
        stems[input_stem(f)] = f
    return files


class Progress:
    """Progress over images and tiles: redrawn in place on a TTY, plain lines otherwise.

    Tiles on a TTY: one line redrawn after every batch. Otherwise (a log file, a pipe, a job
    scheduler's output) an image of at least ``min_tiles`` tiles prints a line each time another
    tenth of its tiles is done, so a large image shows it is moving; smaller ones print only
    their result line.
    """

    def __init__(self, total: int, stream: TextIO | None = None, *, min_tiles: int = 10) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.index, self.name = 0, ""
        self.min_tiles, self.tenths = min_tiles, 0

    def start(self, index: int, name: str) -> None:
        self.index, self.name, self.tenths = index, name, 0

    def tiles(self, done: int, total: int, unit: str = "tile") -> None:
        if self.tty:
            self.stream.write(f"\r[{self.index}/{self.total}] {self.name}: {unit} {done}/{total}")
            self.stream.flush()
            return
        tenths = done * 10 // max(total, 1)
        if (total >= self.min_tiles or unit == "block") and tenths > self.tenths:
            self.tenths = tenths
            self.line(f"{unit} {done}/{total} ({done * 100 // total}%)")

    def blocks(self, done: int, total: int) -> None:
        """Progress over the blocks of a slide (a line per tenth off a TTY)."""
        self.tiles(done, total, "block")

    def line(self, text: str) -> None:
        prefix = "\r\033[K" if self.tty else ""
        self.stream.write(f"{prefix}[{self.index}/{self.total}] {self.name}: {text}\n")
        self.stream.flush()


def predict_files(
    predictor: Any, inputs: list[Path], out_dir: str | Path, *, coco: bool = False, skip_existing: bool = False,
    workers: int = 1, progress: Progress | None = None, on_error: Callable[[SeglabError], None] | None = None,
    tissue: str = "auto", mpp: float | None = None, blocks: bool | None = None,
) -> dict[str, dict[str, Any]]:
    """Predict every input and write its outputs and ``out_dir/summary.csv``.

    Args:
        predictor: a :class:`~seglab.inference.Predictor`.
        inputs: image files (see :func:`expand_inputs`).
        out_dir: output folder (created).
        coco: also write ``<stem>_coco_part.json`` per image and, at the end, the folder's
            ``coco_results.json`` and ``coco_images.json`` (:func:`~seglab.inference.writers.write_coco_folder`;
            images that failed are left out).
        skip_existing: skip images whose outputs all exist (resume an interrupted run).
        workers: background threads reading upcoming images (0: read in the main thread).
        progress: progress printer (default: one on stderr).
        on_error: called with a bad image's error, after which the run goes on; when ``None``
            the error is raised.
        tissue: for slides, ``"auto"`` (detect tissue, skip glass), ``"none"`` or a mask file.
        mpp: µm per level-0 pixel of every input, overriding what the files say.
        blocks: ``None`` sends slides (pyramids, or more than 64 MP) through the block pipeline
            (:mod:`seglab.inference.slide_run`) and other images through the in-memory one;
            ``True`` / ``False`` forces one for every input.

    Returns:
        The summary rows by stem (including rows of earlier runs kept in ``summary.csv``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / "summary.csv"
    rows: dict[str, dict[str, Any]] = {}
    progress = progress or Progress(len(inputs))
    todo = [p for p in inputs if not (skip_existing and _done(p, out_dir, predictor.task, coco))]
    for p in inputs:
        if p not in todo:
            progress.start(inputs.index(p) + 1, p.name)
            progress.line("outputs exist, skipped")
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
    futures: dict[Path, Future] = {}
    failed: set[Path] = set()
    try:
        for i, path in enumerate(todo):
            if pool is not None:
                for ahead in todo[i : i + workers + 1]:
                    if ahead not in futures:
                        futures[ahead] = pool.submit(open_input, ahead, mpp=mpp, blocks=blocks)
            progress.start(inputs.index(path) + 1, path.name)
            try:
                source = futures.pop(path).result() if pool is not None else open_input(path, mpp=mpp, blocks=blocks)
                with source:
                    if isinstance(source, SlideSource):
                        if coco:
                            raise DataError(path, "--coco is for images; a slide's objects are in its GeoJSON")
                        if predictor.task == "panoptic":  # the block pipeline fuses no classes yet
                            raise DataError(path, "a panoptic checkpoint predicts images of up to 64 megapixels, "
                                            "not whole slides; export regions of the slide as images")
                        row = predict_slide_file(predictor, source, out_dir, tissue=tissue, progress=progress)
                    else:
                        row = _predict_one(predictor, source, path, out_dir, coco, progress)
            except SeglabError as exc:
                if on_error is None:
                    raise
                failed.add(path)
                on_error(exc)
                continue
            rows = merge_summary(summary_path, {input_stem(path): row})
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if coco and predictor.task == "instance":
        write_coco_folder(out_dir, [output_paths(out_dir, input_stem(p), coco=True)["coco"] for p in inputs if p not in failed])
    return rows or read_summary(summary_path)


def _done(path: Path, out_dir: Path, task: str, coco: bool) -> bool:
    return any(all(p.is_file() for p in paths.values()) for paths in (
        output_paths(out_dir, input_stem(path), task=task, coco=coco), slide_output_paths(out_dir, input_stem(path), task=task)))


def _predict_one(predictor: Any, source: Any, path: Path, out_dir: Path, coco: bool, progress: Progress) -> dict[str, Any]:
    if predictor.task == "panoptic":  # classes, COCO panoptic, typed GeoJSON: seglab.inference.panoptic_writers
        from seglab.inference.panoptic_writers import predict_panoptic_one

        return predict_panoptic_one(predictor, source, path, out_dir, progress)
    start = time.perf_counter()
    check_finite(source)
    scores = None
    if coco and predictor.task == "instance":
        tap = _ForegroundTap(predictor, source.shape[:2])
        labels = tap.predictor.predict_source(source, on_tiles=progress.tiles)
        scores = tap.scores(labels)
    else:
        labels = predictor.predict_source(source, on_tiles=progress.tiles)
    write_outputs(out_dir, input_stem(path), source.read_all(), labels, task=predictor.task, coco=coco, file_name=path.name,
                  scores=scores)
    row = summary_row(input_stem(path), labels, time.perf_counter() - start, task=predictor.task)
    what = f"{row['instances']} instances" if predictor.task == "instance" else "classes"
    progress.line(f"{what}, {row['seconds']} s")
    return row


class _ForegroundTap:
    """Keeps the foreground probability of the bands a predictor streams (the COCO scores).

    ``tap.predictor`` is a shallow copy of the predictor whose ``iter_probs`` also stores each
    band's foreground probability (float16, 2 bytes a pixel beside the label map's 4):
    ``1 - p_background`` of a soft-max stack (``three_class``), else the stack's first channel
    (:func:`~seglab.inference.predictor.outputs_to_probs`). Predictors that stream no
    probabilities (Mask R-CNN) leave it empty, and :meth:`scores` returns None (score 1.0).
    """

    def __init__(self, predictor: Any, shape: tuple[int, int]) -> None:
        self.foreground: Any = None
        self.shape = shape
        self.softmax = getattr(predictor, "method", None) in (None, "three_class")
        self.predictor = copy.copy(predictor)
        if hasattr(predictor, "iter_probs"):
            self.predictor.iter_probs = self._tapped(predictor.iter_probs)

    def _tapped(self, iter_probs: Callable[..., Any]) -> Callable[..., Any]:
        def iterate(*args: Any, **kwargs: Any):
            for y0, y1, band in iter_probs(*args, **kwargs):
                if self.foreground is None:
                    self.foreground = np.zeros(self.shape, np.float16)
                self.foreground[y0:y1] = 1 - band[0] if self.softmax else band[0]
                yield y0, y1, band

        return iterate

    def scores(self, labels: Any) -> dict[int, float] | None:
        """Mean foreground probability per instance id, or None without probabilities."""
        return None if self.foreground is None else instance_scores(labels, self.foreground)
