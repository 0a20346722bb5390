"""`seglab data check` and `seglab data synth`: statistics and planted problems."""

import numpy as np
import pytest

import seglab.cli
from seglab.data.check import check_dataset, format_report
from seglab.data.io import read_label, write_image, write_label
from seglab.data.synthetic import write_synthetic_dataset
from seglab.errors import ConfigError, DataError


def main(argv):
    """The real dispatcher, with only the data command registered (others may be unfinished)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(seglab.cli, "COMMANDS", {"data": "seglab.cli.data"})
        return seglab.cli.main(argv)


@pytest.fixture
def data_dir(tmp_path):
    write_synthetic_dataset(tmp_path, n=4, size=48, seed=3)
    return tmp_path


def test_clean_dataset_statistics(data_dir, capsys):
    report = check_dataset(data_dir)
    assert report.ok and report.n_images == report.n_labels == report.n_pairs == 4
    labels = [read_label(p) for p in sorted((data_dir / "labels").iterdir())]
    expected_counts = [len(np.unique(lab[lab > 0])) for lab in labels]
    assert report.instances_per_image == expected_counts
    assert report.object_areas_sum == sum(int((lab > 0).sum()) for lab in labels)
    assert report.sizes == [(48, 48)] * 4 and report.channels == {3: 4} and report.dtypes == {"uint8": 4}
    text = format_report(report)
    mean_area = sum(int((lab > 0).sum()) for lab in labels) / sum(expected_counts)
    assert f"mean area {mean_area:.1f} px" in text and "problems: 0" in text
    assert main(["data", "check", str(data_dir)]) == 0
    assert "4 images, 4 labels, 4 pairs" in capsys.readouterr().out


def test_planted_problems_are_all_listed(data_dir, capsys):
    images, labels = data_dir / "images", data_dir / "labels"
    raw = (images / "synth_0000.png").read_bytes()
    (images / "synth_0000.png").write_bytes(raw[: len(raw) // 2])  # truncated PNG
    write_label(labels / "synth_0001.tif", np.zeros((48, 50), np.int32))  # size mismatch
    (labels / "synth_0002.tif").unlink()  # missing label
    write_label(labels / "synth_0003.tif", np.zeros((48, 48), np.int32))  # empty label
    write_label(labels / "orphan.png", np.ones((8, 8), np.uint8))  # label without image
    report = check_dataset(data_dir)
    problems = "\n".join(report.problems)
    assert len(report.problems) == 5, problems
    assert "synth_0000.png: unreadable image" in problems
    assert "synth_0001.tif: label shape (48, 50) differs from image" in problems
    assert "synth_0002.png: missing label" in problems
    assert "synth_0003.tif: empty label" in problems
    assert "orphan.png: label without image" in problems
    assert main(["data", "check", str(data_dir)]) == 1
    out = capsys.readouterr().out
    assert "problems: 5" in out and all(line in out for line in report.problems)


def test_semantic_histogram_and_errors(tmp_path, capsys):
    write_image(tmp_path / "images" / "a.png", np.zeros((4, 4, 3), np.uint8))
    write_label(tmp_path / "labels" / "a.png", np.array([[0, 0, 1, 1]] * 3 + [[255, 2, 2, 2]]))
    report = check_dataset(tmp_path, task="semantic")
    assert report.ok and report.class_pixels == {0: 6, 1: 6, 2: 3, 255: 1}
    assert "0: 37.50%, 1: 37.50%, 2: 18.75%, 255: 6.25%" in format_report(report)
    with pytest.raises(ConfigError):
        check_dataset(tmp_path, task="panoptic")
    with pytest.raises(DataError, match="folder not found"):
        check_dataset(tmp_path / "nope")
    assert main(["data", "check", str(tmp_path / "nope")]) == 2
    assert "seglab: error:" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images found" in check_dataset(empty).problems[0]


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--n", "2", "--size", "32", "--seed", "1", "--style", "fluo"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["synth_0000.png", "synth_0001.png"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["synth_0000.tif", "synth_0001.tif"]
    assert "wrote 2 fluo tiles" in capsys.readouterr().out
    assert check_dataset(out).ok


def test_huge_tiled_tiff_is_checked_in_bounded_memory(tmp_path):
    """A 6000 x 6000 tiled, compressed label (a few hundred KB on disk) is read band by band:
    the whole map as int64 would take 288 MB, the check stays far below that."""
    import tracemalloc

    import tifffile

    size = 6000
    label = np.zeros((size, size), np.uint16)
    label[100:200, 100:300] = 1
    label[3000:3100, 5900:6000] = 7
    label[5990:, :10] = 300
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "labels" / "big.tif", label, tile=(256, 256), compression="zlib")
    tifffile.imwrite(tmp_path / "images" / "big.tif", (label > 0).astype(np.uint8) * 200, tile=(256, 256), compression="zlib")
    del label
    tracemalloc.start()
    try:
        report = check_dataset(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report.ok, report.problems
    assert report.sizes == [(size, size)] and report.channels == {1: 1} and report.dtypes == {"uint8": 1}
    assert report.instances_per_image == [3] and report.object_areas_sum == 100 * 200 + 100 * 100 + 10 * 10
    assert peak < 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # int64 map: 275 MiB, stored uint16: 69 MiB


def test_banded_label_checks_match_whole_file_checks(tmp_path):
    """Semantic histogram, negative and non-integer values are found in every band, not just the first."""
    import tifffile

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    classes = np.zeros((3000, 1500), np.uint8)
    classes[2990:, :] = 2
    classes[0, 0] = 255
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.zeros((3000, 1500), np.uint8), tile=(256, 256), compression="zlib")
    tifffile.imwrite(tmp_path / "labels" / "a.tif", classes, tile=(256, 256), compression="zlib")
    report = check_dataset(tmp_path, task="semantic")
    assert report.ok and report.class_pixels == {0: 3000 * 1500 - 10 * 1500 - 1, 2: 10 * 1500, 255: 1}
    bad = np.zeros((3000, 1500), np.float32)
    bad[2999, 5] = 0.5
    tifffile.imwrite(tmp_path / "labels" / "a.tif", bad, tile=(256, 256), compression="zlib")
    assert check_dataset(tmp_path).problems == [f"{tmp_path / 'labels' / 'a.tif'}: label map holds non-integer values"]
    bad[2999, 5] = -3
    tifffile.imwrite(tmp_path / "labels" / "a.tif", bad.astype(np.int32), tile=(256, 256), compression="zlib")
    assert check_dataset(tmp_path).problems == [f"{tmp_path / 'labels' / 'a.tif'}: label map holds negative values"]


def test_synth_out_that_is_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert main(["data", "synth", "--out", str(out), "--n", "1", "--size", "32"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"seglab: error: {out}: ") and "--out" in err
    assert afile.read_text() == "x"


def test_mixed_channel_counts_are_a_problem_as_for_train(data_dir, capsys):
    """train refuses images with another channel count (the fingerprint); data check passed them."""
    from seglab.data.dataset import find_samples
    from seglab.data.fingerprint import compute_fingerprint
    from seglab.data.io import read_image

    odd = data_dir / "images" / "synth_0002.png"
    write_image(odd, read_image(odd)[..., 0])
    report = check_dataset(data_dir)
    assert report.problems == [f"{odd}: has 1 channels, 3 of the 4 images have 3 (training needs one channel count)"]
    assert report.channels == {3: 3, 1: 1}
    assert main(["data", "check", str(data_dir)]) == 1
    assert f"  {odd}: has 1 channels" in capsys.readouterr().out
    with pytest.raises(DataError, match="synth_0002.png: has 1 channels"):
        compute_fingerprint(find_samples(data_dir, require_labels=True), task="instance")
