"""`seglab predict`: odd inputs, outputs, summary, --skip-existing, one-line errors."""

import csv
import json

import numpy as np
import pytest
import tifffile
import torch

import seglab.cli
from seglab.data.io import write_image
from seglab.data.synthetic import synth_tile
from seglab.inference import Predictor
from seglab.models import create_model
from seglab.spec.checkpoint import make_meta, save_checkpoint

KW = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4}


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(seglab.cli, "COMMANDS", {"predict": "seglab.cli.predict"})  # only ours
    return lambda *argv: seglab.cli.main(["predict", *map(str, argv)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    meta = make_meta(task="instance", model_name="unet", model_kwargs=KW, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 3}}, patch_size=32)
    save_checkpoint(root / "m.ckpt", create_model("unet", **KW), meta)
    image = synth_tile(48, seed=0)[0]
    images = root / "images"
    write_image(images / "rgb.png", image)
    write_image(images / "deep.tif", image.astype(np.uint16) * 257)
    write_image(images / "gray.png", image[..., 0])
    write_image(images / "rgba.png", np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]))
    write_image(images / "tiny.png", image[:12, :20])
    return root, image


def test_predicts_every_kind_of_image(cli, setup, tmp_path, capsys):
    root, image = setup
    assert cli("--checkpoint", root / "m.ckpt", "--input", root / "images", "--output", tmp_path, "--tile", 32, "--coco") == 0
    rows = list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))
    assert [r["stem"] for r in rows] == ["deep", "gray", "rgb", "rgba", "tiny"]
    for stem in ("deep", "gray", "rgb", "rgba", "tiny"):
        labels = tifffile.imread(tmp_path / f"{stem}_instances.tif")
        assert labels.dtype == np.uint16 and labels.shape == ((12, 20) if stem == "tiny" else (48, 48))
        assert json.loads((tmp_path / f"{stem}.geojson").read_text())["type"] == "FeatureCollection"
        assert (tmp_path / f"{stem}_overlay.png").is_file() and (tmp_path / f"{stem}_coco_part.json").is_file()
    images = json.loads((tmp_path / "coco_images.json").read_text())["images"]
    assert [(i["id"], i["file_name"]) for i in images] == list(enumerate(
        ["deep.tif", "gray.png", "rgb.png", "rgba.png", "tiny.png"], 1))
    assert {r["image_id"] for r in json.loads((tmp_path / "coco_results.json").read_text())} <= {1, 2, 3, 4, 5}
    expected = Predictor.from_checkpoint(root / "m.ckpt", tile=32).predict(image)["instances"]
    assert np.array_equal(tifffile.imread(tmp_path / "rgb_instances.tif"), expected)
    assert np.array_equal(tifffile.imread(tmp_path / "rgba_instances.tif"), expected)
    assert "[5/5] tiny.png" in capsys.readouterr().err  # plain progress lines off a TTY


def test_skip_existing_does_only_what_is_missing(cli, setup, tmp_path, capsys):
    root, _ = setup
    args = ("--checkpoint", root / "m.ckpt", "--input", root / "images" / "*.png", "--output", tmp_path, "--tile", 32)
    assert cli(*args) == 0
    (tmp_path / "gray.geojson").unlink()  # as if interrupted while writing gray
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    capsys.readouterr()
    assert cli(*args, "--skip-existing") == 0
    err = capsys.readouterr().err
    assert err.count("outputs exist, skipped") == 3 and "gray.png: " in err
    assert (tmp_path / "gray.geojson").is_file()
    for name in ("rgb_instances.tif", "rgba_overlay.png", "tiny.geojson"):
        assert (tmp_path / name).stat().st_mtime_ns == before[name]
    assert len(list(csv.DictReader((tmp_path / "summary.csv").read_text().splitlines()))) == 4  # rows of both runs


def test_bad_inputs_are_one_line_errors(cli, setup, tmp_path, capsys):
    root, _ = setup
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    write_image(bad / "ok.png", synth_tile(48, seed=0)[0][:24, :24])
    assert cli("--checkpoint", root / "m.ckpt", "--input", bad, "--output", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [e for e in err if e.startswith("seglab: error:")] == [e for e in err if "broken.png: unreadable" in e]
    assert (tmp_path / "out" / "ok_instances.tif").is_file()
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(b"\x80\x02garbage")
    assert cli("--checkpoint", damaged, "--input", bad / "ok.png", "--output", tmp_path / "o2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"seglab: error: {damaged}: damaged")
    assert cli("--checkpoint", root / "m.ckpt", "--input", tmp_path / "nothing*.png", "--output", tmp_path / "o3") == 2
    assert "no image files found" in capsys.readouterr().err


def test_large_image_prints_progress_every_tenth_of_its_tiles(cli, setup, tmp_path, capsys):
    """Not on a terminal (a log file, a pipe), tile progress printed nothing until the image was done."""
    root, image = setup
    images = tmp_path / "images"
    write_image(images / "big.png", np.tile(image, (3, 3, 1)))  # 144 x 144: 36 tiles of 32 px
    write_image(images / "small.png", image[:32, :32])  # one tile
    assert cli("--checkpoint", root / "m.ckpt", "--input", images, "--output", tmp_path / "out", "--tile", 32,
               "--batch-size", 1) == 0
    err = capsys.readouterr().err.splitlines()
    ticks = [line for line in err if "tile" in line]
    firsts = [(36 * k + 9) // 10 for k in range(1, 11)]  # the first tile of each tenth done
    assert ticks == [f"[1/2] big.png: tile {d}/36 ({d * 100 // 36}%)" for d in firsts]
    assert not [line for line in err if line.startswith("[2/2]") and "tile" in line]
    assert err[len(ticks)].startswith("[1/2] big.png: ") and "instances" in err[len(ticks)]


def test_progress_tiles_on_a_terminal_and_off_it():
    import io

    from seglab.inference import Progress

    log = io.StringIO()
    progress = Progress(1, log, min_tiles=10)
    progress.start(1, "a.tif")
    for done in (4, 8, 12, 16, 20):  # batches of 4 of 20 tiles: every other tenth is skipped
        progress.tiles(done, 20)
    assert log.getvalue().splitlines() == [f"[1/1] a.tif: tile {d}/20 ({d * 5}%)" for d in (4, 8, 12, 16, 20)]
    progress.start(1, "b.tif")
    progress.tiles(9, 9)  # fewer tiles than min_tiles: nothing until its result line
    assert log.getvalue().count("b.tif") == 0

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    on_tty = Progress(1, tty)
    on_tty.start(1, "a.tif")
    on_tty.tiles(3, 20)
    assert tty.getvalue() == "\r[1/1] a.tif: tile 3/20"
