"""Physical resolution (µm per pixel) from an image file's own metadata.

Where each format states it, in the order read:

1. OME-XML (OME-TIFF): ``Pixels PhysicalSizeX`` with ``PhysicalSizeXUnit`` (µm by default);
2. Aperio ``ImageDescription``: ``... |MPP = 0.2520|...``;
3. ImageJ TIFF: ``unit=micron`` in its description, ``XResolution`` in pixels per µm;
4. TIFF ``ResolutionUnit`` (inch, centimetre; tifffile's millimetre and micrometre) with
   ``XResolution`` in pixels per unit; PNG ``pHYs`` / JPEG JFIF density (Pillow's ``dpi``).

A value outside :data:`PLAUSIBLE_MPP` is not a microscope's: 72, 96 or 300 dpi (353, 265 and
85 µm/px) are the defaults of screen and print software, so they read as unknown (``None``).
OpenSlide formats state theirs in the ``openslide.mpp-x`` property (read by the slide reader).
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

PLAUSIBLE_MPP = (0.01, 50.0)  # µm per pixel: from beyond-optical resolution to a 0.2x overview
_MICRONS = {"µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "nm": 1e-3,
            "Å": 1e-4, "mm": 1e3, "cm": 1e4, "m": 1e6, "in": 25400.0, "inch": 25400.0}
_RESUNIT_MICRONS = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}  # inch, cm, tifffile's mm and µm
_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")


def plausible(mpp: float | None) -> float | None:
    """``mpp`` when it is a finite value in :data:`PLAUSIBLE_MPP`, else ``None``."""
    if mpp is None or not math.isfinite(mpp) or not PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
        return None
    return float(mpp)


def mpp_from_ome(xml: str | None) -> float | None:
    """µm/px of the first image of an OME-XML document (``PhysicalSizeX`` and its unit)."""
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "Pixels" and "PhysicalSizeX" in element.attrib:
            unit = _MICRONS.get(element.attrib.get("PhysicalSizeXUnit", "µm"))
            try:
                size = float(element.attrib["PhysicalSizeX"])
            except ValueError:
                return None
            return plausible(size * unit) if unit else None
    return None


def mpp_from_description(description: str | None) -> float | None:
    """µm/px from an Aperio ``ImageDescription`` (``|MPP = 0.252``)."""
    match = _APERIO_MPP.search(description or "")
    if not match:
        return None
    try:
        return plausible(float(match.group(1)))
    except ValueError:
        return None


def _ratio(value: Any) -> float | None:
    """A TIFF RATIONAL ``(numerator, denominator)`` (or a plain number) as a float."""
    try:
        num, den = value if isinstance(value, tuple) else (value, 1)
        return float(num) / float(den) if den else None
    except (TypeError, ValueError):
        return None


def mpp_from_tiff_page(page: Any, imagej: dict[str, Any] | None = None) -> float | None:
    """µm/px from a tifffile page's resolution tags (and ImageJ's ``unit`` when given)."""
    tag = page.tags.get("XResolution")
    per_unit = _ratio(tag.value) if tag is not None else None
    if not per_unit:
        return None
    if imagej and str(imagej.get("unit", "")).replace("\\u00B5", "µ") in _MICRONS:
        return plausible(_MICRONS[str(imagej["unit"]).replace("\\u00B5", "µ")] / per_unit)
    unit_tag = page.tags.get("ResolutionUnit")
    microns = _RESUNIT_MICRONS.get(int(unit_tag.value) if unit_tag is not None else 2)
    return plausible(microns / per_unit) if microns else None


def mpp_from_tiff(tif: Any) -> float | None:
    """µm/px of level 0 of an open ``tifffile.TiffFile`` (OME, Aperio, ImageJ, resolution tags)."""
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    mpp = mpp_from_ome(tif.ome_metadata) if tif.is_ome else None
    if mpp is None:
        mpp = mpp_from_description(getattr(page, "description", ""))
    if mpp is None:
        mpp = mpp_from_tiff_page(page, tif.imagej_metadata if tif.is_imagej else None)
    return mpp


def image_mpp(path: str | os.PathLike[str]) -> float | None:
    """µm/px stated by an image file (TIFF, OME-TIFF, PNG, JPEG), ``None`` when it states none.

    Never raises for an unreadable file: reading the pixels reports that.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff", ".svs"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return mpp_from_tiff(tif)
        from PIL import Image

        with Image.open(path) as image:
            dpi = image.info.get("dpi")
        return plausible(25400.0 / float(dpi[0])) if dpi and float(dpi[0]) > 0 else None
    except Exception:  # unreadable or damaged: the image reader names the problem
        return None
