"""Predict one slide (or any large image) block by block: memory does not grow with its area.

The image at the model's resolution is cut into square blocks (:class:`~seglab.inference.blocks.BlockGrid`,
``block`` px plus ``margin`` of context). For each block, in raster order:

1. its labels come from :class:`~seglab.inference.region.RegionLabels` (sliding-window
   probabilities on the image's tile grid, tiles without tissue skipped, then the checkpoint's
   decoder) or, for Mask R-CNN, :class:`~seglab.inference.detection.RegionDetections`;
2. :class:`~seglab.inference.blocks.UnionStitcher` gives its pieces provisional ids and joins
   them to the pieces of earlier blocks across shared faces;
3. the core's provisional ids go to a temporary compressed chunked array on disk
   (:class:`~seglab.inference.scratch.ChunkedArray`; all-background chunks are not stored), its
   final objects to the GeoJSON stream (:class:`~seglab.inference.geojson_stream.ObjectWriter`),
   its contours to the preview.

Step 1's network part (reading and the model) runs on the calling thread, and the rest (the
decoder, stitching, writing) on a second thread, one block behind: the post-processing of a
block overlaps the network of the next, and the outputs are those of the sequential order.

After the last block the objects that cross faces are written to the GeoJSON, and the instance
map is written tile by tile as a pyramidal OME-TIFF (:mod:`seglab.inference.pyramid_writer`)
in level-0 pixels: each tile reads the provisional ids under it, upsampled by nearest neighbour
when the model's resolution is coarser than level 0, and maps them to their object's id (the
union-find root). What stays in memory: one block's probabilities and labels, one face line per
block column, one record per object crossing a face, one root per piece, and the preview.

Outputs per slide ``<stem>``: ``<stem>_instances.ome.tif`` (uint32 ids, the GeoJSON's ``id``;
ids are unique but not consecutive), ``<stem>.geojson``, ``<stem>_overlay.png``; for the
semantic task ``<stem>_classes.ome.tif`` (uint8 class indices) and the overlay. Every file is
written under a temporary name and renamed when complete; the scratch folder is removed.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from seglab.fileio import atomic_path
from seglab.inference.blocks import BlockGrid, UnionStitcher
from seglab.inference.geojson_stream import GeoJSONStream, ObjectWriter
from seglab.inference.heap import release_memory
from seglab.inference.preview import Preview
from seglab.inference.pyramid_writer import write_pyramid
from seglab.inference.scratch import ChunkedArray
from seglab.inference.summary import slide_summary_row

CHUNK = 256  # scratch chunk and TIFF tile


def input_stem(path: str | Path) -> str:
    """The name outputs are named after: the file name without its suffix, and without the
    ``.ome`` of an OME-TIFF (``a.ome.tif`` -> ``a``)."""
    stem = Path(path).stem
    return stem[:-4] if stem.lower().endswith(".ome") and len(stem) > 4 else stem


def slide_output_paths(out_dir: str | Path, stem: str, *, task: str = "instance") -> dict[str, Path]:
    """The files the block pipeline writes for one slide (what ``--skip-existing`` checks)."""
    out_dir = Path(out_dir)
    if task == "semantic":
        return {"classes": out_dir / f"{stem}_classes.ome.tif", "overlay": out_dir / f"{stem}_overlay.png"}
    return {"instances": out_dir / f"{stem}_instances.ome.tif", "geojson": out_dir / f"{stem}.geojson",
            "overlay": out_dir / f"{stem}_overlay.png"}


def region_engine(predictor: Any, image: Any, *, covers: Any = None, scale: float = 1.0) -> Any:
    """The labels-of-a-region function of a predictor (Mask R-CNN or probabilities)."""
    if getattr(predictor, "detection", False):
        from seglab.inference.detection import RegionDetections

        return RegionDetections(predictor, image, covers=covers, scale=scale)
    from seglab.inference.region import RegionLabels

    return RegionLabels(predictor, image, covers=covers, scale=scale, value_range=predictor.intensity_range(image))


def predict_slide(
    predictor: Any, image: Any, out_dir: str | Path, stem: str, *, slide: Any = None, covers: Any = None,
    scale: float = 1.0, mpp: float | None = None, tissue_mm2: float | None = None,
    on_blocks: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Predict a large image block by block and write its outputs (module docstring).

    Args:
        predictor: a :class:`~seglab.inference.Predictor` (its ``block``, ``margin``, ``tile``).
        image: the image at the model's resolution (``shape``, ``read_region`` or ``read_rows``).
        out_dir: output folder.
        stem: output name stem.
        slide: the slide behind ``image`` (level-0 size and the preview's pyramid), if any.
        covers: tissue test ``covers(y0, y1, x0, x1)`` in level-0 pixels, or ``None``.
        scale: level-0 pixels per pixel of ``image``.
        mpp: µm per level-0 pixel, or ``None`` when unknown.
        tissue_mm2: the tissue area (``None``: the whole image's, when ``mpp`` is known).
        on_blocks: progress, called as ``on_blocks(done, total)``.

    Returns:
        The slide's ``summary.csv`` row.
    """
    start = time.perf_counter()
    height, width = image.shape[:2]
    semantic = predictor.task == "semantic"
    grid = BlockGrid(height, width, predictor.block, max(predictor.margin, 1))
    shape0 = tuple(slide.shape[:2]) if slide is not None else (round(height * scale), round(width * scale))
    engine = region_engine(predictor, image, covers=covers, scale=scale)
    paths = slide_output_paths(out_dir, stem, task=predictor.task)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    preview = Preview(shape0)
    if slide is not None and len(getattr(slide, "levels", ())) > 1:
        preview.paint_slide(slide)
    else:
        preview.paint_source(image, scale)
    release_memory()
    with tempfile.TemporaryDirectory(prefix=f".{stem}.", dir=out_dir) as scratch, contextlib.ExitStack() as stack:
        ids = ChunkedArray(Path(scratch) / "ids", (height, width), np.uint8 if semantic else np.uint32, chunk=CHUNK)
        objects = stitcher = None
        if not semantic:
            fh = stack.enter_context(open(stack.enter_context(atomic_path(paths["geojson"])), "w", encoding="utf-8"))
            stream = GeoJSONStream(fh)
            objects, stitcher = ObjectWriter(stream, scale=scale, mpp=mpp), UnionStitcher(grid)

        def finish_block(i: int, by: int, bx: int, ey0: int, ex0: int, inferred: Any) -> None:
            labels, foreground = engine.decode(inferred)
            y0, y1, x0, x1 = grid.core(by, bx)
            crop = np.s_[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]
            if semantic and labels is not None:
                ids[y0:y1, x0:x1] = labels[crop]
            elif not semantic:
                core, first, border = stitcher.add(by, bx, labels)
                if core is not None:
                    ids[y0:y1, x0:x1] = core
                    objects.add_block(core, y0, x0, first, border, None if foreground is None else foreground[crop])
            if labels is not None:
                preview.add_contours(labels[crop], y0, x0, scale)
            del labels, foreground
            release_memory()  # a block's arrays, freed, would otherwise hold the heap at its peak
            if on_blocks is not None:
                on_blocks(i + 1, len(grid))

        # two stages on two threads: while block i is decoded, stitched and written, block i + 1
        # is read and run through the network (which releases the GIL); one block in flight
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="seglab-blocks") as pool:
            pending = None
            for i, (by, bx) in enumerate(grid):
                ey0, ey1, ex0, ex1 = grid.extended(by, bx)
                inferred = engine.infer(ey0, ey1, ex0, ex1)
                if pending is not None:
                    pending.result()
                pending = pool.submit(finish_block, i, by, bx, ey0, ex0, inferred)
                del inferred
            if pending is not None:
                pending.result()
        roots = None
        if not semantic:
            roots = stitcher.uf.roots()
            objects.finish(roots, lambda a, b, c, d: ids[a:b, c:d])
            stream.close()
        tile_fn = _level0_tiles(ids, scale, (height, width), None if roots is None else roots.astype(np.uint32))
        with atomic_path(paths["classes" if semantic else "instances"]) as tmp:
            write_pyramid(tmp, shape0, np.uint8 if semantic else np.uint32, tile_fn, tile=CHUNK, mpp=mpp, scratch=scratch)
        preview.save(paths["overlay"])
    tiles = engine.tiles
    return slide_summary_row(stem, objects, time.perf_counter() - start, mpp=mpp, tissue_mm2=tissue_mm2,
                             shape0=shape0, tiles_run=tiles.run, tiles_skipped=tiles.skipped)


def _level0_tiles(ids: Any, scale: float, shape: tuple[int, int], roots: np.ndarray | None):
    """Level-0 tiles from the provisional map: nearest-neighbour upsampling, then the final ids.

    Each row of tiles reads its band of the map once (as wide as the image, at the model's
    resolution); a tile with no object under it is ``None`` (written as the shared zero tile)
    without upsampling or id lookup, the others are looked up and upsampled tile by tile."""
    height, width = shape
    xs = np.minimum(((np.arange(round(width * scale)) + 0.5) / scale).astype(np.int64), width - 1)
    band: dict[str, Any] = {"key": None}

    def tile(y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        if band["key"] != (y0, y1):
            ys = np.minimum(((np.arange(y0, y1) + 0.5) / scale).astype(np.int64), height - 1)
            rows = ids[int(ys[0]) : int(ys[-1]) + 1]
            band.update(key=(y0, y1), ys=ys - ys[0], rows=rows, any=rows.any(0).cumsum())
        cols = xs[x0:x1]
        lit = band["any"]
        if lit[cols[-1]] == (lit[cols[0] - 1] if cols[0] > 0 else 0):  # no object under the tile
            return None
        c0 = int(cols[0])
        crop = band["rows"][:, c0 : int(cols[-1]) + 1]  # the model pixels under the tile
        if roots is not None:
            crop = roots[crop]  # final ids before upsampling: scale^2 fewer lookups
        return crop[band["ys"]][:, cols - c0] if scale != 1 else crop

    return tile


def is_slide(source: Any, *, pixels: int = 1 << 26) -> bool:
    """Whether an input takes the block pipeline: a pyramid (several levels) or more than ``pixels``."""
    levels = getattr(source, "levels", None)
    return (levels is not None and len(levels) > 1) or math.prod(source.shape[:2]) > pixels


def open_input(path: str | Path, *, mpp: float | None = None, blocks: bool | None = None) -> Any:
    """Open an input for :func:`~seglab.inference.runner.predict_files`: a
    :class:`~seglab.inference.slide.SlideSource` for the block pipeline (a pyramid, a slide
    format, an image of more than 64 MP, or any input when ``blocks``), else an image source.

    A TIFF that the slide readers refuse is opened as an image (whose reader names the problem).
    """
    from seglab.errors import DataError
    from seglab.inference.slide import open_slide
    from seglab.inference.source import open_image

    path = Path(path)
    if blocks is False or (blocks is None and path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")):
        return open_image(path)
    try:
        slide = open_slide(path, mpp=mpp)
    except DataError:
        if path.suffix.lower() in (".tif", ".tiff") and not blocks:
            return open_image(path)
        raise
    if blocks or is_slide(slide):
        return slide
    slide.close()
    return open_image(path)


def predict_slide_file(predictor: Any, slide: Any, out_dir: str | Path, *, tissue: str = "auto",
                       progress: Any = None) -> dict[str, Any]:
    """Predict an open slide at the model's µm/px, skipping glass, and write its outputs.

    The checkpoint's µm/px (``meta["mpp"]``) picks the pyramid level and resampling
    (:func:`~seglab.inference.slide_view.model_view`); a resolution that cannot be matched is a
    warning line. ``tissue``: ``"auto"``, ``"none"`` or a mask file
    (:func:`~seglab.inference.tissue.detect_tissue`); the mask is saved as ``<stem>_tissue.png``.

    Raises:
        DataError: no tissue found, a mask that does not fit, a slide smaller than one tile, or
            a slide that cannot be read (nothing is left under an output's final name).
    """
    from seglab.errors import DataError, SeglabError
    from seglab.inference.slide_view import model_view
    from seglab.inference.tissue import detect_tissue

    start = time.perf_counter()
    if not predictor.tile:
        raise SeglabError("--tile 0 (the whole image at once) is not for slides; give a tile size")
    view, scale, message = model_view(slide, predictor.meta.get("mpp"))
    if message and progress is not None:
        progress.line(f"warning: {message}")
    if min(view.shape[:2]) < predictor.tile:
        raise DataError(slide.path, f"at the model's resolution the slide is {view.shape[0]} x {view.shape[1]} px, "
                                    f"smaller than one tile ({predictor.tile} px)")
    mask = None if str(tissue) == "none" else detect_tissue(slide, tissue)
    row = predict_slide(
        predictor, view, out_dir, input_stem(slide.path), slide=slide, covers=None if mask is None else mask.covers,
        scale=scale, mpp=slide.mpp, tissue_mm2=None if mask is None else mask.area_mm2(slide.mpp),
        on_blocks=None if progress is None else progress.blocks,
    )
    if mask is not None:
        mask.save_png(Path(out_dir) / f"{input_stem(slide.path)}_tissue.png")
    row["seconds"] = f"{time.perf_counter() - start:.3f}"  # with tissue detection
    if progress is not None:
        what = f"{row['instances']} objects" if predictor.task == "instance" else "classes"
        progress.line(f"{what}, {row['tiles_run']} tiles run, {row['tiles_skipped']} skipped, {row['seconds']} s")
    return row
