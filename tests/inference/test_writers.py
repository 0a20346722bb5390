"""Writers: GeoJSON against the spec, TIFF/PNG label maps, overlay, COCO RLE (pycocotools), summary."""

import csv
import json

import numpy as np
import pytest
import tifffile
from PIL import Image
from pycocotools import mask as mask_utils
from skimage.segmentation import find_boundaries

from seglab.data.rle import rle_encode
from seglab.inference.writers import (
    coco_rles,
    display_rgb,
    to_coco,
    to_geojson,
    write_outputs,
    write_summary,
)


def shapes_map():
    labels = np.zeros((40, 60), np.int32)
    labels[5:9, 10:40] = 1  # wide, short bar: x extent 30, y extent 4
    yy, xx = np.mgrid[:40, :60]
    labels[(yy - 25) ** 2 + (xx - 20) ** 2 <= 36] = 2  # disc
    labels[20:35, 45:48] = 3  # tall, thin bar
    labels[30:34, 20:24] = 4  # touches the disc
    labels[39, 59] = 5  # one pixel in the corner
    return labels


def shoelace(ring):
    x, y = np.asarray(ring, float).T
    return 0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


@pytest.fixture
def outputs(tmp_path):
    labels = shapes_map()
    image = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    paths = write_outputs(tmp_path, "img", image, labels, coco=True, file_name="img.png")
    return tmp_path, paths, labels, image


def test_geojson_follows_the_spec(outputs):
    _, paths, labels, _ = outputs
    doc = json.loads(paths["geojson"].read_text())  # valid JSON
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 5
    for feat in doc["features"]:
        assert feat["type"] == "Feature" and feat["geometry"]["type"] == "Polygon"
        ring = feat["geometry"]["coordinates"][0]
        assert len(ring) >= 4 and ring[0] == ring[-1]  # closed linear ring
        assert shoelace(ring) > 0  # counter-clockwise exterior in the (x, y) plane
        props = feat["properties"]
        area = int((labels == props["id"]).sum())
        assert props["area"] == area
        assert props["objectType"] == "detection" and props["classification"]["name"] == "Nucleus"
        perimeter = np.abs(np.diff(np.asarray(ring), axis=0)).sum()
        assert abs(shoelace(ring) - area) <= 0.25 * perimeter + 1  # marching squares cuts corners
        ys, xs = np.nonzero(labels == props["id"])
        assert np.allclose(props["centroid"], [xs.mean() + 0.5, ys.mean() + 0.5], atol=1e-3)  # x then y


def test_geojson_is_x_then_y(outputs):
    _, paths, _, _ = outputs
    feats = {f["properties"]["id"]: f for f in json.loads(paths["geojson"].read_text())["features"]}
    bar = np.asarray(feats[1]["geometry"]["coordinates"][0])
    assert np.allclose(bar.min(0), [10, 5], atol=0.5) and np.allclose(bar.max(0), [40, 9], atol=0.5)
    tall = np.asarray(feats[3]["geometry"]["coordinates"][0])
    assert np.ptp(tall[:, 1]) > 4 * np.ptp(tall[:, 0])


def test_instance_tiff_dtype(tmp_path, outputs):
    _, paths, labels, _ = outputs
    back = tifffile.imread(paths["instances"])
    assert back.dtype == np.uint16 and np.array_equal(back, labels)
    big = labels.astype(np.int64) * 20000  # ids up to 100,000
    write_outputs(tmp_path / "big", "big", np.zeros((40, 60), np.uint8), big)
    back = tifffile.imread(tmp_path / "big" / "big_instances.tif")
    assert back.dtype == np.uint32 and np.array_equal(back, big)


def test_semantic_classes_png(tmp_path):
    classes = np.random.default_rng(1).integers(0, 4, (30, 20)).astype(np.uint8)
    paths = write_outputs(tmp_path, "s", np.zeros((30, 20, 3), np.uint8), classes, task="semantic")
    assert set(paths) == {"classes", "overlay"}
    assert np.array_equal(np.asarray(Image.open(paths["classes"])), classes)


def test_overlay_paints_contours_only(outputs):
    _, paths, labels, image = outputs
    drawn = np.asarray(Image.open(paths["overlay"]))
    edge = find_boundaries(labels, mode="inner") & (labels > 0)
    assert np.all(drawn[edge] == [255, 255, 0])
    assert np.array_equal(drawn[~edge], image[~edge])


def test_display_rgb_gray_rgba_16bit():
    gray16 = np.linspace(0, 4000, 100, dtype=np.uint16).reshape(10, 10)
    out = display_rgb(gray16)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8 and out.max() == 255 and out.min() == 0
    rgba = np.zeros((5, 5, 4), np.uint8)
    rgba[..., 0] = 9
    assert np.array_equal(display_rgb(rgba), rgba[..., :3])


def test_coco_rle_matches_pycocotools(outputs):
    _, paths, labels, _ = outputs
    rles = coco_rles(labels)
    doc = to_coco(labels, file_name="img.png")
    assert doc["images"][0] == {"id": 1, "file_name": "img.png", "height": 40, "width": 60}
    part = json.loads(paths["coco"].read_text())  # the image's share of coco_results.json
    assert (part["file_name"], part["height"], part["width"]) == ("img.png", 40, 60)
    assert [r["segmentation"] for r in part["results"]] == [a["segmentation"] for a in doc["annotations"]]
    assert all(r["score"] == 1.0 and r["category"] == "nucleus" for r in part["results"])  # no probabilities given
    for ann in doc["annotations"]:
        mask = labels == ann["id"]
        ref = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert rles[ann["id"]] == rle_encode(mask)
        assert ann["segmentation"]["counts"] == ref["counts"].decode()
        assert np.array_equal(mask_utils.decode({"size": [40, 60], "counts": ann["segmentation"]["counts"]}), mask)
        assert ann["area"] == int(mask_utils.area(ref))
        assert np.allclose(ann["bbox"], mask_utils.toBbox(ref))
    assert to_coco(np.zeros((4, 4), np.int32), file_name="e")["annotations"] == []


def test_atomic_outputs_and_summary(outputs):
    out_dir, _, _, _ = outputs
    write_summary(out_dir / "summary.csv", {"b": {"stem": "b", "instances": 2, "mean_area": "3.0", "seconds": "0.1"},
                                             "a": {"stem": "a", "instances": 0, "mean_area": "0", "seconds": "0.2"}})
    rows = list(csv.DictReader((out_dir / "summary.csv").read_text().splitlines()))
    assert [r["stem"] for r in rows] == ["a", "b"] and rows[1]["instances"] == "2"
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def test_empty_map_writes_empty_collection(tmp_path):
    paths = write_outputs(tmp_path, "e", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.int32), coco=True)
    assert json.loads(paths["geojson"].read_text()) == {"type": "FeatureCollection", "features": []}


def polygon_area(geometry):
    """Shoelace area of a GeoJSON Polygon / MultiPolygon: exteriors minus holes (signed rings)."""
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    return sum(shoelace(ring) for polygon in polygons for ring in polygon)


def ring_and_pieces_map():
    """1: an annulus (one hole); 2: two separate squares; 3: a square with two holes and a dot
    of its own inside one of them (a third piece)."""
    labels = np.zeros((50, 70), np.int32)
    yy, xx = np.mgrid[:50, :70]
    r2 = (yy - 14) ** 2 + (xx - 14) ** 2
    labels[(r2 <= 100) & (r2 > 16)] = 1
    labels[5:12, 35:45] = 2
    labels[20:26, 50:60] = 2
    labels[30:48, 5:40] = 3
    labels[33:40, 8:20] = 0
    labels[36, 12] = 3  # an island in the first hole
    labels[40:45, 25:35] = 0
    return labels


def test_geojson_holes_and_pieces_match_the_pixels(tmp_path):
    labels = ring_and_pieces_map()
    paths = write_outputs(tmp_path, "r", np.zeros((50, 70), np.uint8), labels)
    feats = {f["properties"]["id"]: f for f in json.loads(paths["geojson"].read_text())["features"]}
    annulus, pair, holed = feats[1]["geometry"], feats[2]["geometry"], feats[3]["geometry"]
    assert annulus["type"] == "Polygon" and len(annulus["coordinates"]) == 2  # exterior + the hole
    assert pair["type"] == "MultiPolygon" and [len(p) for p in pair["coordinates"]] == [1, 1]
    assert holed["type"] == "MultiPolygon" and [len(p) for p in holed["coordinates"]] == [3, 1]  # largest first
    for geometry in (annulus, pair, holed):
        polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
        for exterior, *holes in polygons:
            assert shoelace(exterior) > 0 and all(shoelace(h) < 0 for h in holes)  # RFC 7946 winding
            assert all(ring[0] == ring[-1] and len(ring) >= 4 for ring in (exterior, *holes))
    hole = np.asarray(annulus["coordinates"][1])
    assert np.allclose(hole.min(0), [10, 10], atol=1) and np.allclose(hole.max(0), [19, 19], atol=1)
    for lab, feat in feats.items():
        area = int((labels == lab).sum())
        assert feat["properties"]["area"] == area  # every piece, holes excluded
        rings = feat["geometry"]["coordinates"]
        perimeter = sum(np.abs(np.diff(np.asarray(r), axis=0)).sum()
                        for poly in ([rings] if feat["geometry"]["type"] == "Polygon" else rings) for r in poly)
        # marching squares cuts each corner by 1/8 pixel: within a quarter of the perimeter
        assert abs(polygon_area(feat["geometry"]) - area) <= 0.25 * perimeter, lab


def test_geojson_class_names_from_the_model():
    labels = shapes_map()
    feats = to_geojson(labels, classes={1: "Tumor", 3: "Stroma"})["features"]
    names = {f["properties"]["id"]: f["properties"]["classification"] for f in feats}
    assert names[1]["name"] == "Tumor" and names[3]["name"] == "Stroma" and names[2]["name"] == "Nucleus"
    assert names[2]["color"] == [255, 200, 0] and names[1]["color"] != names[2]["color"]
    assert to_geojson(labels, classes={1: "Tumor"})["features"][0]["properties"]["classification"] == names[1]
    assert all(len(c["color"]) == 3 and all(0 <= v <= 255 for v in c["color"]) for c in names.values())
