"""MoNuSeg XML: rasterisation equals skimage.draw.polygon of the same vertices; bad input."""

import numpy as np
import pytest
from skimage.draw import polygon

from seglab.data.monuseg import find_monuseg_samples, read_monuseg_regions, read_monuseg_xml
from seglab.errors import DataError


def _xml(regions, ids=None):
    parts = ['<?xml version="1.0"?>\n<Annotations MicronsPerPixel="0.25">']
    parts.append('<Annotation Id="1"><Regions><RegionAttributeHeaders/>')
    for i, verts in enumerate(regions, start=1):
        rid = ids[i - 1] if ids else i
        parts.append(f'<Region Id="{rid}" Type="0"><Attributes/><Vertices>')
        parts += [f'<Vertex X="{x}" Y="{y}" Z="0"/>' for y, x in verts]
        parts.append("</Vertices></Region>")
    parts.append("</Regions></Annotation></Annotations>")
    return "\n".join(parts)


def _random_polygons(seed, n=25, shape=(80, 90)):
    rng = np.random.default_rng(seed)
    polys = []
    for _ in range(n):
        c = rng.uniform(-5, np.array(shape) + 5)
        k = rng.integers(3, 14)
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(3, 10, k)
        polys.append(np.stack([c[0] + r * np.sin(t), c[1] + r * np.cos(t)], 1).round(3))
    return polys


@pytest.mark.parametrize("seed", range(3))
def test_matches_skimage_polygon_later_region_wins(tmp_path, seed):
    shape = (80, 90)
    polys = _random_polygons(seed, shape=shape)
    path = tmp_path / "tile.xml"
    path.write_text(_xml(polys))
    expected = np.zeros(shape, np.int32)
    for k, verts in enumerate(polys, start=1):
        rr, cc = polygon(verts[:, 0], verts[:, 1], shape=shape)
        expected[rr, cc] = k
    out = read_monuseg_xml(path, shape)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


def test_regions_keep_file_order_and_ids(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(_xml([[(1, 1), (1, 5), (5, 5)], [(2, 2), (2, 6.5), (7.25, 6)]], ids=[11, 4]))
    regions = read_monuseg_regions(path)
    assert [r for r, _ in regions] == ["11", "4"]
    np.testing.assert_allclose(regions[1][1], [(2, 2), (2, 6.5), (7.25, 6)])


def test_region_without_vertices_names_file_and_region(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text(_xml([[(1, 1), (1, 5), (5, 5)], []], ids=[1, 42]))
    with pytest.raises(DataError, match=r"bad\.xml: region 42 has 0 vertices"):
        read_monuseg_xml(path, (10, 10))
    path.write_text(_xml([[(1, 1), (1, 5)]], ids=[7]))
    with pytest.raises(DataError, match="region 7 has 2 vertices"):
        read_monuseg_xml(path, (10, 10))
    path.write_text("<Annotations><Region")
    with pytest.raises(DataError, match="unreadable XML"):
        read_monuseg_xml(path, (10, 10))
    path.write_text(_xml([[(1, 1), (1, "x"), (5, 5)]]))
    with pytest.raises(DataError, match="numeric X and Y"):
        read_monuseg_xml(path, (10, 10))


@pytest.mark.parametrize("layout", ["flat", "folders"])
def test_find_monuseg_samples(tmp_path, layout):
    img_dir, xml_dir = (tmp_path, tmp_path) if layout == "flat" else (tmp_path / "images", tmp_path / "annotations")
    img_dir.mkdir(exist_ok=True)
    xml_dir.mkdir(exist_ok=True)
    for stem in ("TCGA-B", "TCGA-A"):
        (img_dir / f"{stem}.tif").write_bytes(b"")
        (xml_dir / f"{stem}.xml").write_text(_xml([[(1, 1), (1, 5), (5, 5)]]))
    samples = find_monuseg_samples(tmp_path)
    assert [s.stem for s in samples] == ["TCGA-A", "TCGA-B"]
    assert samples[0].label == xml_dir / "TCGA-A.xml" and samples[0].image == img_dir / "TCGA-A.tif"
    (xml_dir / "TCGA-A.xml").unlink()
    with pytest.raises(DataError, match="TCGA-A.xml: missing annotation"):
        find_monuseg_samples(tmp_path)
