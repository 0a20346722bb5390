"""`seglab predict`: bad options and bad checkpoints end in one line, before anything is written."""

import pytest
import torch

import seglab.cli
from seglab.data.io import write_image
from seglab.data.synthetic import synth_tile
from seglab.models import create_model
from seglab.spec.checkpoint import CHECKPOINT_FORMAT, make_meta, save_checkpoint

KW = {"in_channels": 3, "num_classes": 3, "depth": 2, "base_channels": 4}


def _meta(**changes):
    meta = make_meta(task="instance", model_name="unet", model_kwargs=KW, method="three_class",
                     preprocessing={"in_channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3},
                     decoder={"name": "three_class_watershed", "kwargs": {"min_size": 3}}, patch_size=32)
    meta.update(changes)
    return meta


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_errors")
    torch.manual_seed(0)
    model = create_model("unet", **KW)
    save_checkpoint(root / "m.ckpt", model, _meta())
    no_classes = {k: v for k, v in KW.items() if k != "num_classes"}
    save_checkpoint(root / "no_classes.ckpt", model, _meta(model={"name": "unet", "kwargs": no_classes}))
    write_image(root / "images" / "a.png", synth_tile(48, seed=0)[0])
    return root


@pytest.fixture
def cli(monkeypatch, capsys):
    monkeypatch.setattr(seglab.cli, "COMMANDS", {"predict": "seglab.cli.predict"})

    def run(*argv):
        status = seglab.cli.main(["predict", *map(str, argv)])
        err = capsys.readouterr().err.strip()
        return status, err

    return run


def _is_one_line(status, err):
    return status == 2 and err.startswith("seglab: error: ") and "\n" not in err and "Traceback" not in err


def test_output_that_is_a_file(cli, setup, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    status, err = cli("--checkpoint", setup / "m.ckpt", "--input", setup / "images", "--output", afile)
    assert _is_one_line(status, err) and f"{afile}: --output must be a folder, but this is a file" in err
    status, err = cli("--checkpoint", setup / "m.ckpt", "--input", setup / "images", "--output", afile / "sub")
    assert _is_one_line(status, err) and f"cannot create --output: {afile} is a file" in err
    assert afile.read_text() == "x"


def test_unknown_device(cli, setup, tmp_path):
    status, err = cli("--checkpoint", setup / "m.ckpt", "--input", setup / "images", "--output", tmp_path / "o", "--device", "banana")
    assert _is_one_line(status, err) and "--device: unsupported device 'banana'" in err
    assert not (tmp_path / "o").exists()


def test_checkpoint_without_num_classes_names_the_file(cli, setup, tmp_path):
    bad = setup / "no_classes.ckpt"
    status, err = cli("--checkpoint", bad, "--input", setup / "images", "--output", tmp_path / "o")
    assert _is_one_line(status, err) and err == f"seglab: error: {bad}: seglab metadata: model 'unet' kwargs lack num_classes"
    assert not (tmp_path / "o").exists()


def test_weights_that_do_not_fit_are_described_in_one_complete_line(cli, setup, tmp_path):
    """PyTorch's message spans one line per kind of problem; only its first line was kept."""
    state = {f"model.{k}": v for k, v in create_model("unet", **KW).state_dict().items()}
    for key in ("decoder.blocks.0.conv.0.0.weight", "decoder.blocks.0.conv.0.1.weight", "decoder.blocks.0.conv.0.1.bias"):
        del state[f"model.{key}"]
    state["model.extra.weight"], state["model.extra.bias"] = torch.zeros(2), torch.zeros(2)
    state["model.heads.convs.logits.weight"] = torch.zeros(3, 16, 1, 1)
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": state, "seglab": _meta()}, path)
    status, err = cli("--checkpoint", path, "--input", setup / "images", "--output", tmp_path / "o")
    assert _is_one_line(status, err)
    assert err == (f"seglab: error: {path}: weights do not fit model 'unet': 3 missing keys (decoder.blocks.0.conv.0.0.weight, "
                   "decoder.blocks.0.conv.0.1.weight, decoder.blocks.0.conv.0.1.bias), 2 unexpected (extra.weight, extra.bias), "
                   "1 with another shape (heads.convs.logits.weight: checkpoint [3, 16, 1, 1], model [3, 4, 1, 1])")


def test_tile_below_the_model_stride_is_refused(cli, setup, tmp_path):
    """--tile 1 would run thousands of forward passes on a 48 px image; the floor is 32 px and the stride."""
    status, err = cli("--checkpoint", setup / "m.ckpt", "--input", setup / "images", "--output", tmp_path / "o", "--tile", 1)
    assert _is_one_line(status, err) and err.startswith("seglab: error: --tile: must be 0 (whole image) or >= 32")
    deep = {**KW, "depth": 6, "base_channels": 2}  # stride 64
    save_checkpoint(tmp_path / "deep.ckpt", create_model("unet", **deep), _meta(model={"name": "unet", "kwargs": deep}))
    status, err = cli("--checkpoint", tmp_path / "deep.ckpt", "--input", setup / "images", "--output", tmp_path / "o", "--tile", 32)
    assert _is_one_line(status, err) and ">= 64" in err and "got 32" in err
    assert not (tmp_path / "o").exists()
    status, err = cli("--checkpoint", tmp_path / "deep.ckpt", "--input", setup / "images", "--output", tmp_path / "o", "--tile", 0)
    assert status == 0 and (tmp_path / "o" / "a_instances.tif").is_file()


@pytest.mark.parametrize("fmt", [CHECKPOINT_FORMAT + 1, "2.0", 0])
def test_checkpoint_of_unknown_format_is_refused(cli, setup, tmp_path, fmt):
    path = tmp_path / "future.ckpt"
    save_checkpoint(path, create_model("unet", **KW), _meta(format=fmt))
    status, err = cli("--checkpoint", path, "--input", setup / "images", "--output", tmp_path / "o")
    assert _is_one_line(status, err) and err.startswith(f"seglab: error: {path}: unknown checkpoint format {fmt!r}")
    assert ("newer seglab" in err) == (fmt == CHECKPOINT_FORMAT + 1) and not (tmp_path / "o").exists()


def test_all_nan_image_is_refused_naming_the_file(cli, setup, tmp_path):
    import numpy as np
    import tifffile

    images = tmp_path / "in"
    images.mkdir()
    tifffile.imwrite(images / "blank.tif", np.full((48, 48), np.nan, np.float32))
    write_image(images / "ok.png", synth_tile(48, seed=0)[0])
    status, err = cli("--checkpoint", setup / "m.ckpt", "--input", images, "--output", tmp_path / "o")
    errors = [line for line in err.splitlines() if line.startswith("seglab: error:")]
    assert status == 2 and errors == [f"seglab: error: {images / 'blank.tif'}: image has no finite pixel (all NaN or infinite); nothing to predict"]
    assert not list((tmp_path / "o").glob("blank*")) and (tmp_path / "o" / "ok_instances.tif").is_file()


def test_check_finite_reads_only_up_to_the_first_finite_pixel():
    import numpy as np

    from seglab.errors import DataError
    from seglab.inference.source import ArraySource, check_finite

    class Counting(ArraySource):
        reads = 0

        def read_rows(self, y0, y1):
            Counting.reads += 1
            return super().read_rows(y0, y1)

    image = np.full((64, 8, 1), np.nan, np.float32)
    image[-1, -1] = 0.5  # one finite pixel in the last band
    check_finite(Counting(image), band_pixels=8)
    assert Counting.reads == 64
    Counting.reads = 0
    check_finite(Counting(np.zeros((64, 8, 1), np.float32)), band_pixels=8)
    assert Counting.reads == 1
    check_finite(ArraySource(np.zeros((4, 4), np.uint8)))  # integers: no NaN possible
    with pytest.raises(DataError, match="no finite pixel"):
        check_finite(ArraySource(np.full((4, 4, 3), np.inf, np.float32)))
