"""`seglab predict` on slides: outputs and summary, --skip-existing, --tissue, --devices 2 = 1 process,
and bad slides (truncated, no tissue, a mask of the wrong size) end in one line with nothing complete-looking."""

import csv
import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import seglab.cli
from seglab.data.synthetic_slide import write_synthetic_slide
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta, save_checkpoint

KW = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4}
FAST = ("--tile", 64, "--block", 96, "--margin", 16, "--workers", 0)


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(seglab.cli, "COMMANDS", {"predict": "seglab.cli.predict"})
    return lambda *argv: seglab.cli.main(["predict", *map(str, argv)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("slides")
    torch.manual_seed(0)
    meta = make_meta(task="instance", model_name="unet", model_kwargs=KW, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [0.8] * 3, "std": [0.2] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 3}}, patch_size=32, mpp=0.5)
    save_checkpoint(root / "m.ckpt", create_model("unet", **KW), meta)
    slides = root / "slides"
    slides.mkdir()
    for i in range(3):
        write_synthetic_slide(slides / f"s{i}.ome.tif", 320, 384, mpp=0.5, levels=2, tile=64, coverage=0.2, seed=i)
    return root


def outputs(out):
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def test_slides_one_and_two_processes(cli, setup, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli("--checkpoint", setup / "m.ckpt", "--input", setup / "slides", "--output", one, *FAST) == 0
    assert outputs(one) == sorted([f"s{i}{x}" for i in range(3) for x in (
        "_instances.ome.tif", ".geojson", "_overlay.png", "_tissue.png")] + ["summary.csv"])
    rows = {r["stem"]: r for r in csv.DictReader((one / "summary.csv").read_text().splitlines())}
    for r in rows.values():
        assert int(r["tiles_skipped"]) > 0 and int(r["tiles_run"]) > 0
        assert 0 < float(r["tissue_mm2"]) < 320 * 384 * 0.25 / 1e6 and r["mean_area_um2"] != ""
    with tifffile.TiffFile(one / "s0_instances.ome.tif") as tif:
        assert tif.series[0].levels[0].shape == (320, 384) and tif.series[0].dtype == np.uint32
    capsys.readouterr()
    assert cli("--checkpoint", setup / "m.ckpt", "--input", setup / "slides", "--output", two, *FAST, "--devices", 2) == 0
    assert "3/3 images predicted" in capsys.readouterr().out
    assert outputs(two) == outputs(one)
    for i in range(3):
        stem = f"s{i}"
        assert np.array_equal(tifffile.imread(one / f"{stem}_instances.ome.tif"), tifffile.imread(two / f"{stem}_instances.ome.tif"))
        assert (one / f"{stem}.geojson").read_text() == (two / f"{stem}.geojson").read_text()
    rows2 = {r["stem"]: r for r in csv.DictReader((two / "summary.csv").read_text().splitlines())}
    assert {s: r["instances"] for s, r in rows2.items()} == {s: r["instances"] for s, r in rows.items()}
    before = (one / "s1.geojson").stat().st_mtime_ns
    assert cli("--checkpoint", setup / "m.ckpt", "--input", setup / "slides", "--output", one, *FAST, "--skip-existing") == 0
    assert capsys.readouterr().err.count("outputs exist, skipped") == 3
    assert (one / "s1.geojson").stat().st_mtime_ns == before


def test_tissue_none_runs_every_tile(cli, setup, tmp_path):
    slide = setup / "slides" / "s0.ome.tif"
    assert cli("--checkpoint", setup / "m.ckpt", "--input", slide, "--output", tmp_path, *FAST, "--tissue", "none") == 0
    row = next(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert row["tiles_skipped"] == "0" and float(row["tissue_mm2"]) == pytest.approx(320 * 384 * 0.25 / 1e6)
    assert not (tmp_path / "s0_tissue.png").exists()
    features = json.loads((tmp_path / "s0.geojson").read_text())["features"]
    assert len(features) == int(row["instances"])


def _fails_in_one_line(cli, setup, capsys, out, *args):
    assert cli("--checkpoint", setup / "m.ckpt", "--output", out, *FAST, *args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("seglab: error:")]
    assert len(err) == 1
    assert not [p for p in out.iterdir() if p.suffix in (".tif", ".geojson", ".png") or p.name.startswith(".")]
    return err[0]


def test_bad_slides(cli, setup, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (setup / "slides" / "s0.ome.tif").read_bytes()
    (bad / "cut.tif").write_bytes(data[: len(data) // 2])
    err = _fails_in_one_line(cli, setup, capsys, tmp_path / "o1", "--input", bad / "cut.tif")
    assert "cut.tif" in err
    write_synthetic_slide(bad / "glass.tif", 256, 256, mpp=0.5, levels=2, tile=64, coverage=0.0)
    err = _fails_in_one_line(cli, setup, capsys, tmp_path / "o2", "--input", bad / "glass.tif")
    assert "glass.tif" in err and "no tissue" in err
    Image.fromarray(np.full((10, 40), 255, np.uint8)).save(bad / "mask.png")
    err = _fails_in_one_line(cli, setup, capsys, tmp_path / "o3", "--input", setup / "slides" / "s1.ome.tif",
                             "--tissue", bad / "mask.png")
    assert "mask.png" in err


def test_unknown_model_resolution_is_a_warning_line(cli, setup, tmp_path, capsys):
    ckpt = torch.load(setup / "m.ckpt", weights_only=True)
    ckpt["seglab"]["mpp"] = None
    torch.save(ckpt, tmp_path / "no_mpp.ckpt")
    slide = setup / "slides" / "s2.ome.tif"
    assert cli("--checkpoint", tmp_path / "no_mpp.ckpt", "--input", slide, "--output", tmp_path / "out", *FAST) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "µm/px unknown" in warnings[0] and "s2.ome.tif" in warnings[0]


def test_an_aperio_svs_and_an_ome_tiff_in_one_folder(cli, setup, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_synthetic_slide(folder / "a.svs", 320, 384, mpp=0.5, levels=2, tile=64, layout="svs", coverage=0.2, seed=5)
    write_synthetic_slide(folder / "b.ome.tif", 320, 384, mpp=0.5, levels=2, tile=64, coverage=0.2, seed=6)
    assert cli("--checkpoint", setup / "m.ckpt", "--input", folder, "--output", tmp_path / "out", *FAST) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").read_text().splitlines()))
    assert [r["stem"] for r in rows] == ["a", "b"] and all(float(r["tissue_mm2"]) > 0 for r in rows)
    assert (tmp_path / "out" / "a_instances.ome.tif").is_file() and (tmp_path / "out" / "b.geojson").is_file()
