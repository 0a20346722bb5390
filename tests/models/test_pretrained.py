"""Pretrained backbone weights: a weights file must fit, a moved one is named, nothing downloads,
and the backbone's normalisation statistics are offered."""

import pytest
import torch
import torchvision

from seglab.errors import DataError
from seglab.models import create_model
from seglab.models.encoders import TorchvisionResNet
from seglab.models.pretrained import offline_kwargs, pretrained_normalization
from seglab.models.weights import describe_mismatch, summarise_load_error


@pytest.fixture
def no_download(monkeypatch):
    """Any weights download fails the test."""
    import torch.hub
    import torchvision.models._api

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}")

    for module, name in ((torchvision.models._api, "load_state_dict_from_url"), (torch.hub, "load_state_dict_from_url"),
                         (torch.hub, "download_url_to_file")):
        monkeypatch.setattr(module, name, refuse)


@pytest.fixture
def r18_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "r18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_weights_file_loads_every_weight(r18_file, no_download):
    state = torch.load(r18_file, weights_only=True)
    encoder = TorchvisionResNet("resnet18", pretrained=str(r18_file))
    torch.testing.assert_close(encoder.stem[0].weight, state["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(encoder.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"], rtol=0, atol=0)


def test_weights_file_with_other_key_names_is_one_line_error(r18_file, tmp_path, no_download):
    """A file whose keys do not match loaded nothing, silently, with strict=False."""
    state = torch.load(r18_file, weights_only=True)
    renamed = tmp_path / "renamed.pt"
    torch.save({f"backbone.{k}": v for k, v in state.items()}, renamed)
    with pytest.raises(DataError) as info:
        TorchvisionResNet("resnet18", pretrained=str(renamed))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{renamed}: weights do not fit encoder 'resnet18': ")
    assert "missing keys (conv1.weight, bn1.weight, bn1.bias, ..." in message and "unexpected (backbone.conv1.weight" in message


def test_weights_file_with_another_shape_is_one_line_error(tmp_path, no_download):
    state = torchvision.models.resnet18().state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(DataError, match=r"1 with another shape \(layer1\.0\.conv1\.weight: checkpoint \[64, 64, 1, 1\], "
                                        r"model \[64, 64, 3, 3\]\)$"):
        TorchvisionResNet("resnet18", pretrained=str(path))


def test_moved_weights_file_is_named_not_a_key_error(tmp_path, no_download):
    gone = str(tmp_path / "moved" / "r18.pt")
    with pytest.raises(DataError, match=r"r18\.pt: weights file not found \(pretrained: a file, or one of DEFAULT, IMAGENET1K_V1\)"):
        TorchvisionResNet("resnet18", pretrained=gone)
    with pytest.raises(DataError, match="weights file not found"):
        create_model("unet", num_classes=2, encoder="timm:resnet10t", pretrained=gone)


def test_timm_weights_file_mismatch_is_one_line_error(tmp_path, no_download):
    import timm

    state = timm.create_model("resnet10t").state_dict()
    state["fc.weight"] = torch.zeros(1000, 512)  # the classifier is dropped for features_only
    state["conv1.0.weight"] = torch.zeros(24, 3, 5, 5)
    del state["bn1.weight"]
    path = tmp_path / "t.pt"
    torch.save(state, path)
    with pytest.raises(DataError) as info:
        create_model("unet", num_classes=2, encoder="timm:resnet10t", pretrained=str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: weights do not fit timm encoder 'resnet10t': ")
    assert "1 missing key (bn1.weight)" in message
    assert "1 with another shape (conv1.0.weight: checkpoint [24, 3, 5, 5], model [24, 3, 3, 3])" in message


def test_offline_kwargs_rebuild_the_same_state_dict_without_download(monkeypatch):
    """A pretrained model's recorded kwargs build the same architecture (Mask R-CNN: frozen batch norm)."""
    import torchvision.models._api

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url",
                        lambda *a, **k: torchvision.models.resnet18().state_dict())  # a fake download
    kwargs = {"backbone": "resnet18_fpn", "pretrained": True, "fpn_channels": 8, "representation_size": 8, "mask_channels": 8}
    trained = create_model("maskrcnn", num_classes=2, **kwargs)
    unet = create_model("unet", num_classes=2, encoder="resnet18", pretrained="IMAGENET1K_V1")

    def refuse(*a, **k):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    again = create_model("maskrcnn", num_classes=2, **offline_kwargs("maskrcnn", kwargs))
    again.load_state_dict(trained.state_dict())  # strict: same keys, same shapes
    assert offline_kwargs("maskrcnn", kwargs)["pretrained"] is False
    assert offline_kwargs("unet", {"encoder": "resnet18", "pretrained": "IMAGENET1K_V1"}) == {"encoder": "resnet18", "pretrained": False}
    create_model("unet", num_classes=2, encoder="resnet18", pretrained=False).load_state_dict(unet.state_dict())


def test_pretrained_normalization_comes_from_the_weights_description(r18_file, no_download):
    imagenet_mean, imagenet_std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    stats = pretrained_normalization("unet", {"encoder": "resnet18", "pretrained": True}, 3)
    assert (stats.mean, stats.std) == (imagenet_mean, imagenet_std) and "IMAGENET1K_V1" in stats.source
    from_file = pretrained_normalization("deeplabv3", {"encoder": "resnet18", "pretrained": str(r18_file)}, 1)
    assert from_file.mean == [pytest.approx(sum(imagenet_mean) / 3)] and str(r18_file) in from_file.source
    timm_stats = pretrained_normalization("unet", {"encoder": "timm:resnet10t", "pretrained": True}, 4)
    assert timm_stats.mean == pytest.approx([*imagenet_mean, sum(imagenet_mean) / 3])
    assert pretrained_normalization("maskrcnn", {"pretrained": True}, 3).std == imagenet_std
    assert pretrained_normalization("unet", {"encoder": "resnet18"}, 3) is None
    assert pretrained_normalization("unet", {"pretrained": True}, 3) is None  # the classic encoder: none


def test_torch_load_error_summarised_in_one_line():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1))
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict({"0.weight": torch.zeros(4, 3, 1, 1), "x": torch.zeros(1)})
    expected = "1 missing key (0.bias), 1 unexpected (x), 1 with another shape (0.weight: checkpoint [4, 3, 1, 1], model [8, 3, 1, 1])"
    assert summarise_load_error(str(info.value)) == expected
    assert describe_mismatch([], [], []) is None
