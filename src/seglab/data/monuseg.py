"""MoNuSeg annotations: Aperio ImageScope XML polygons to instance maps.

MoNuSeg (Kumar et al., "A Dataset and a Technique for Generalized Nuclear Segmentation for
Computational Pathology", IEEE TMI 2017) ships each 1000 x 1000 H&E tile as ``<stem>.tif`` with
``<stem>.xml``: ``Annotations/Annotation/Regions/Region/Vertices/Vertex`` with float ``X``
(column) and ``Y`` (row) attributes, one ``Region`` per nucleus.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.draw import polygon

from seglab.data.io import IMAGE_SUFFIXES, PathLike, Sample, find_file
from seglab.errors import DataError


def read_monuseg_regions(path: PathLike) -> list[tuple[str, np.ndarray]]:
    """Polygons of an Aperio XML file as ``(region id, N x 2 array of (row, col))``, in file order.

    Raises:
        DataError: unreadable XML, a vertex without numeric X/Y, or a region with fewer than
            3 vertices (the message names the file and the region id).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(path, f"unreadable XML ({exc})") from None
    regions = []
    for number, region in enumerate(root.iter("Region"), start=1):
        rid = region.get("Id", str(number))
        vertices = region.findall("./Vertices/Vertex")
        if len(vertices) < 3:
            raise DataError(path, f"region {rid} has {len(vertices)} vertices (a polygon needs at least 3)")
        try:
            coords = np.array([(float(v.get("Y")), float(v.get("X"))) for v in vertices])
        except (TypeError, ValueError):
            raise DataError(path, f"region {rid} has a vertex without numeric X and Y") from None
        regions.append((rid, coords))
    return regions


def read_monuseg_xml(path: PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a MoNuSeg XML file into an instance map.

    Region ``k`` (1-based, in file order over all annotations) becomes id ``k``; each polygon is
    filled with ``skimage.draw.polygon`` (pixel centres inside the polygon). Where regions
    overlap, the later region wins. Regions that cover no pixel centre leave their id unused.

    Args:
        path: the ``.xml`` file.
        shape: ``(H, W)`` of the image; vertices outside it are clipped.

    Returns:
        int32 ``H x W`` instance map.

    Raises:
        DataError: see :func:`read_monuseg_regions`.
    """
    h, w = int(shape[0]), int(shape[1])
    inst = np.zeros((h, w), np.int32)
    for k, (_, coords) in enumerate(read_monuseg_regions(path), start=1):
        rr, cc = polygon(coords[:, 0], coords[:, 1], shape=(h, w))
        inst[rr, cc] = k
    return inst


def _first_dir(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return root


def find_monuseg_samples(root: PathLike) -> list[Sample]:
    """Pair ``<stem>.tif`` images with ``<stem>.xml`` annotations under a MoNuSeg folder.

    Accepts the flat layout (both in ``root``), ``root/images`` + ``root/annotations``, and the
    original release's ``Tissue Images`` + ``Annotations``.

    Returns:
        ``list[Sample]`` sorted by stem, ``label`` = the XML file.

    Raises:
        DataError: no images found, or an image without its XML.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "folder not found")
    image_dir = _first_dir(root, ("images", "Images", "Tissue Images", "Tissue_Images"))
    xml_dir = _first_dir(root, ("annotations", "Annotations", "labels"))
    images = sorted(
        p for p in image_dir.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not images:
        raise DataError(image_dir, "no images found (expected <stem>.tif beside <stem>.xml)")
    samples = []
    for image in images:
        xml = find_file(xml_dir, image.stem, (".xml",))
        if xml is None:
            raise DataError(xml_dir / f"{image.stem}.xml", f"missing annotation for image {image}")
        samples.append(Sample(image.stem, image, xml))
    return samples
