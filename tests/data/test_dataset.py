"""Folder data set: discovery, lazy patches that match the files, padding, workers, errors."""

import numpy as np
import pytest
import tifffile
import torch

from seglab.data.dataset import SegmentationDataset, find_samples, make_loader
from seglab.data.io import read_image, read_label, write_image, write_label
from seglab.data.synthetic import synth_tile, write_synthetic_dataset
from seglab.data.targets import distance_targets, foreground, three_class_targets
from seglab.data.transforms import build_transforms
from seglab.errors import ConfigError, DataError


@pytest.fixture
def synth_dir(tmp_path):
    write_synthetic_dataset(tmp_path, n=3, size=64, seed=0)
    return tmp_path


def _locate(full: np.ndarray, patch: np.ndarray) -> list[tuple[int, int]]:
    p = patch.shape[0]
    h, w = full.shape[:2]
    return [(t, c) for t in range(h - p + 1) for c in range(w - p + 1) if np.array_equal(full[t : t + p, c : c + p], patch)]


def test_find_samples(synth_dir):
    samples = find_samples(synth_dir)
    assert [s.stem for s in samples] == ["synth_0000", "synth_0001", "synth_0002"]
    assert samples[1].image == synth_dir / "images" / "synth_0001.png"
    assert samples[1].label == synth_dir / "labels" / "synth_0001.tif"
    (synth_dir / "labels" / "synth_0001.tif").unlink()
    with pytest.raises(DataError, match=r"synth_0001.*missing label"):
        find_samples(synth_dir)
    assert find_samples(synth_dir, require_labels=False)[1].label is None


def test_find_samples_errors(tmp_path):
    with pytest.raises(DataError, match="images: folder not found"):
        find_samples(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="no images found"):
        find_samples(tmp_path)


def test_whole_images_equal_the_files(synth_dir):
    samples = find_samples(synth_dir)
    ds = SegmentationDataset(samples, targets=("three_class", "foreground", "distance", "semantic"), patch_size=None)
    assert len(ds) == 3
    item = ds[1]
    image = read_image(samples[1].image)
    inst = read_label(samples[1].label)
    assert item["stem"] == "synth_0001"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    np.testing.assert_allclose(item["image"].numpy(), image.transpose(2, 0, 1) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(item["instances"].numpy(), inst)
    np.testing.assert_array_equal(item["three_class"].numpy(), three_class_targets(inst))
    np.testing.assert_array_equal(item["foreground"].numpy(), foreground(inst))
    np.testing.assert_array_equal(item["semantic"].numpy(), foreground(inst))
    np.testing.assert_allclose(item["distance"].numpy(), distance_targets(inst))
    assert item["three_class"].dtype == torch.int64 and item["distance"].dtype == torch.float32


def test_random_patches_are_windows_of_the_files(synth_dir):
    samples = find_samples(synth_dir)
    ds = SegmentationDataset(samples, patch_size=24, patches_per_image=4, targets=("three_class",))
    assert len(ds) == 12
    torch.manual_seed(0)
    positions = set()
    for index in range(len(ds)):
        item = ds[index]
        sample = samples[index % 3]
        image = read_image(sample.image)
        patch = np.rint(item["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
        hits = _locate(image, patch)
        assert hits, "patch is not a window of its image"
        t, c = hits[0]
        np.testing.assert_array_equal(item["instances"].numpy(), read_label(sample.label)[t : t + 24, c : c + 24])
        np.testing.assert_array_equal(item["three_class"].numpy(), three_class_targets(item["instances"].numpy()))
        positions.add((index % 3, t, c))
    assert len(positions) > 6  # patches move around


def test_small_images_are_padded_with_ignore(tmp_path):
    image, inst = synth_tile(40, seed=1)
    write_image(tmp_path / "images" / "a.png", image)
    write_label(tmp_path / "labels" / "a.png", inst)
    ds = SegmentationDataset(find_samples(tmp_path), patch_size=64, targets=("three_class", "foreground", "distance"))
    item = ds[0]
    pad = np.ones((64, 64), bool)
    pad[:40, :40] = False
    assert item["image"].shape == (3, 64, 64)
    np.testing.assert_array_equal(item["three_class"].numpy()[pad], 255)
    np.testing.assert_array_equal(item["foreground"].numpy()[pad], 255)
    np.testing.assert_array_equal(item["instances"].numpy()[pad], 0)
    np.testing.assert_array_equal(item["distance"].numpy()[pad], 0)
    np.testing.assert_array_equal(item["three_class"].numpy()[:40, :40], three_class_targets(inst))
    # reflection padding of the image
    np.testing.assert_allclose(item["image"][:, 40, :40].numpy(), item["image"][:, 38, :40].numpy())
    # the ignore area follows the image through geometric transforms
    strong = SegmentationDataset(find_samples(tmp_path), patch_size=64, transform=build_transforms("strong"))
    torch.manual_seed(0)
    for _ in range(5):
        item = strong[0]
        tc = item["three_class"].numpy()
        assert set(np.unique(tc)) <= {0, 1, 2, 255} and (tc == 255).any()
        assert set(np.unique(item["instances"].numpy())) <= set(np.unique(inst))


def test_size_mismatch_names_both_files(tmp_path):
    write_image(tmp_path / "images" / "a.png", np.zeros((30, 40, 3), np.uint8))
    write_label(tmp_path / "labels" / "a.tif", np.zeros((30, 41), np.int32))
    ds = SegmentationDataset(find_samples(tmp_path), patch_size=16)
    with pytest.raises(DataError, match=r"labels/a\.tif: label shape \(30, 41\) differs from image .*images/a\.png"):
        ds[0]


def test_memory_mapped_tiff_and_four_channels_and_gray(tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 65535, (300, 280, 4), dtype=np.uint16)
    inst = rng.integers(0, 50, (300, 280)).astype(np.uint16)
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    tifffile.imwrite(tmp_path / "images" / "big.tif", big)  # uncompressed: memory-mappable
    tifffile.imwrite(tmp_path / "labels" / "big.tif", inst)
    samples = find_samples(tmp_path)
    ds = SegmentationDataset(samples, patch_size=32, patches_per_image=50)
    assert len(ds) == 50
    assert isinstance(ds._load("image", samples[0].image), np.memmap)
    torch.manual_seed(0)
    item = ds[7]
    assert item["image"].shape == (4, 32, 32)  # 4 channels stay 4 channels
    patch = np.rint(item["image"].numpy().transpose(1, 2, 0) * 65535).astype(np.uint16)
    (t, c), = _locate(big, patch)
    np.testing.assert_array_equal(item["instances"].numpy(), inst[t : t + 32, c : c + 32])
    loader = make_loader(ds, batch_size=10, shuffle=True, num_workers=0)
    batches = list(loader)
    assert len(batches) == 5 and batches[0]["image"].shape == (10, 4, 32, 32)
    assert batches[0]["stem"] == ["big"] * 10


def test_xml_labels_and_semantic_task(tmp_path):
    write_image(tmp_path / "images" / "m.png", np.full((20, 20), 128, np.uint8))
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "m.xml").write_text(
        '<Annotations><Annotation><Regions><Region Id="1"><Vertices>'
        '<Vertex X="2" Y="2"/><Vertex X="10" Y="2"/><Vertex X="10" Y="8"/></Vertices></Region>'
        "</Regions></Annotation></Annotations>"
    )
    item = SegmentationDataset(find_samples(tmp_path), patch_size=None, targets=())[0]
    assert item["image"].shape == (1, 20, 20)
    assert set(np.unique(item["instances"].numpy())) == {0, 1}
    sem = np.zeros((20, 20), np.int64)
    sem[5:, :] = 2
    sem[:2, :] = 255
    write_label(tmp_path / "labels" / "m.png", sem)
    ds = SegmentationDataset(find_samples(tmp_path), task="semantic", targets=("semantic", "foreground"), patch_size=32)
    item = ds[0]
    assert item["semantic"].shape == (32, 32)
    np.testing.assert_array_equal(item["semantic"].numpy()[:20, :20], sem)
    np.testing.assert_array_equal(item["semantic"].numpy()[20:], 255)
    np.testing.assert_array_equal(item["foreground"].numpy()[:20, :20], foreground(sem, ignore_index=255))
    with pytest.raises(ConfigError, match="target for the semantic task"):
        SegmentationDataset(find_samples(tmp_path), task="semantic", targets=("three_class",))
    with pytest.raises(ConfigError, match="unknown task"):
        SegmentationDataset(find_samples(tmp_path), task="depth")


def test_workers_seeded_and_repeatable(synth_dir):
    samples = find_samples(synth_dir)[:1]
    ds = SegmentationDataset(samples, patch_size=16, patches_per_image=8)

    def run(workers):
        torch.manual_seed(123)
        loader = make_loader(ds, batch_size=1, shuffle=False, num_workers=workers, persistent_workers=False)
        return torch.cat([b["image"] for b in loader])

    a = run(2)
    assert a.shape == (8, 3, 16, 16)
    assert torch.equal(a, run(2))  # same torch seed, same patches
    assert torch.equal(run(0), run(0))
    # items 0 and 1 are the first item of worker 0 and of worker 1: distinct seeds, distinct patches
    assert not torch.equal(a[0], a[1])
    assert len({tuple(p.flatten()[:20].tolist()) for p in a}) > 4


@pytest.mark.parametrize("task", ["instance", "semantic"])
def test_strong_augmentation_borders_are_ignore_not_background(tmp_path, task):
    """Rotation, shear and elastic deformation expose pixels outside the image; their label is
    unknown, so every target must ignore them (255), never call them background (0)."""
    write_image(tmp_path / "images" / "a.png", np.full((64, 64, 3), 128, np.uint8))
    write_label(tmp_path / "labels" / "a.tif", np.full((64, 64), 5 if task == "instance" else 1, np.int32))  # no background
    targets = ("three_class", "foreground") if task == "instance" else ("semantic",)
    ds = SegmentationDataset(find_samples(tmp_path), task=task, targets=targets, patch_size=64, transform=build_transforms("strong"))
    torch.manual_seed(0)
    exposed = 0
    for _ in range(20):
        item = ds[0]
        for name in targets:
            values = set(np.unique(item[name].numpy()).tolist())
            assert 0 not in values and values <= {1, 2, 255}, (name, values)
        exposed += int((item[targets[0]] == 255).sum())
        if task == "instance":
            assert set(np.unique(item["instances"].numpy()).tolist()) <= {0, 5}
            np.testing.assert_array_equal(item["instances"].numpy() == 0, item["three_class"].numpy() == 255)
    assert exposed > 0  # the affine / elastic steps did expose borders


def _blob_folder(root, label, channels=3):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    write_image(root / "images" / "a.png", np.full((*label.shape, channels), 128, np.uint8))
    write_label(root / "labels" / "a.tif", label)
    return find_samples(root)


def _share(samples, key, present, *, task="instance", fg=0.0, n=1000, patch=16):
    data = SegmentationDataset(samples, task=task, targets=("foreground",), patch_size=patch, patches_per_image=n,
                               seed=7, foreground_sampling=fg)
    return np.mean([bool(present(data[(i, 0)][key].numpy())) for i in range(n)])


def test_foreground_sampling_centres_patches_on_a_small_blob(tmp_path):
    label = np.zeros((64, 64), np.uint16)
    label[40:43, 10:13] = 1  # one 3 x 3 nucleus
    samples = _blob_folder(tmp_path, label)
    # a uniform 16 x 16 window (top, left in 0..48) meets the blob for 18 of 49 tops and 13 of 49 lefts
    uniform = 18 * 13 / 49**2
    sd = (uniform * (1 - uniform) / 1000) ** 0.5
    has_blob = lambda inst: inst.any()  # noqa: E731
    assert abs(_share(samples, "instances", has_blob, fg=0.0) - uniform) < 4 * sd
    assert _share(samples, "instances", has_blob, fg=1.0) == 1.0
    half = 0.5 + 0.5 * uniform
    assert abs(_share(samples, "instances", has_blob, fg=0.5) - half) < 4 * (half * (1 - half) / 1000) ** 0.5


def test_foreground_sampling_draws_rare_classes_as_often_as_common_ones(tmp_path):
    label = np.zeros((64, 64), np.uint8)
    label[:, :32] = 1  # 2048 px of a common class
    label[50:52, 55:57] = 2  # 4 px of a rare one, out of reach of patches centred on class 1
    samples = _blob_folder(tmp_path, label)
    rare = _share(samples, "semantic", lambda sem: (sem == 2).any(), task="semantic", fg=1.0)
    assert abs(rare - 0.5) < 4 * (0.25 / 1000) ** 0.5  # a class drawn uniformly, not a pixel (4 / 2052)


def test_foreground_positions_are_a_bounded_uniform_subset():
    from seglab.data.dataset import foreground_positions

    label = np.zeros((300, 200), np.int32)
    label[100:250, 50:150] = 3  # 15000 instance pixels
    rng = np.random.default_rng(0)
    (pos,) = foreground_positions(label, "instance", rng, limit=1000)
    assert pos.shape == (1000, 2) and len({tuple(p) for p in pos}) == 1000
    assert (label[pos[:, 0], pos[:, 1]] == 3).all()
    assert abs(pos[:, 0].mean() - 174.5) < 3 and abs(pos[:, 1].mean() - 99.5) < 2  # spread over the blob
    assert foreground_positions(np.zeros((8, 8)), "instance", rng) == []
    semantic = np.where(label > 0, 1, 0)
    semantic[0, 0], semantic[1, 1] = 2, 255
    classes = foreground_positions(semantic, "semantic", rng, limit=100)
    assert [len(c) for c in classes] == [50, 1] and tuple(classes[1][0]) == (0, 0)


def test_foreground_positions_do_not_depend_on_the_band_size(monkeypatch):
    import seglab.data.dataset as dataset_module

    label = np.zeros((120, 90), np.uint8)
    label[10:100, 20:80] = 1
    label[60:70, 5:15] = 2
    whole = dataset_module.foreground_positions(label, "semantic", np.random.default_rng(3), limit=500)
    monkeypatch.setattr(dataset_module, "_FG_BAND", 90 * 7)  # 7 rows at a time
    banded = dataset_module.foreground_positions(label, "semantic", np.random.default_rng(3), limit=500)
    assert [len(c) for c in whole] == [250, 100]
    for a, b in zip(whole, banded, strict=True):
        np.testing.assert_array_equal(a, b)
