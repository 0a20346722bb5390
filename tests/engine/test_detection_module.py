"""DetectionModule: a training step gives the five Mask R-CNN losses and gradients, validation
scores decoded instance maps with seglab's AJI / PQ, checkpoint metadata, schedule, a short fit."""

import math

import numpy as np
import pytest
import torch

from seglab.data.synthetic import synth_tile
from seglab.engine.detection_module import DetectionModule
from seglab.models.maskrcnn import build_maskrcnn

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),  # raised inside Lightning
]


def _batch(n=2, size=64):
    tiles = [synth_tile(size, seed=s) for s in range(n)]
    image = torch.from_numpy(np.stack([t[0] for t in tiles])).permute(0, 3, 1, 2).float() / 255
    inst = torch.from_numpy(np.stack([t[1] for t in tiles]).astype(np.int64))
    return {"image": image, "instances": inst}


def _module(**kw):
    torch.manual_seed(0)
    model = build_maskrcnn(backbone="resnet18_fpn", detections_per_image=8, rois_per_image=32,
                           representation_size=64, mask_channels=16)
    meta = {"task": "instance", "method": "maskrcnn", "decoder": {"name": "maskrcnn", "kwargs": {"score_threshold": 0.0}}}
    return DetectionModule(model=model, meta=meta, **kw)


def test_training_step_and_validation():
    module = _module()
    module.log = lambda *a, **k: None
    batch = _batch()
    batch["instances"][1] = 0  # one image without nuclei
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)
    loss.backward()
    assert module.model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad.abs().sum() > 0
    assert module.model.backbone.body.conv1.weight.grad.abs().sum() > 0

    module.eval()
    module.on_validation_epoch_start()
    with torch.no_grad():
        module.validation_step(_batch(n=1), 0)
        detections = module(_batch(n=1)["image"])
    (record,) = module._val_records
    from seglab.metrics import aji, panoptic_quality

    gt = _batch(n=1)["instances"][0].numpy()
    pred = module.decode_instances(detections, (64, 64))[0]
    np.testing.assert_array_equal(module.predict_instances(_batch(n=1)["image"])[0], pred)
    assert record["aji"] == pytest.approx(aji(gt, pred))
    assert record["pq"] == pytest.approx(panoptic_quality(gt, pred)["pq"])
    assert pred.shape == (64, 64) and pred.dtype == np.int32
    assert module.decoder_kwargs() == {"score_threshold": 0.0, "mask_threshold": 0.5, "min_size": 0}


def test_checkpoint_meta_and_schedule():
    module = _module(schedule="cosine")
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["seglab"]["method"] == "maskrcnn"
    module.progress = lambda: 0.5
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    expected = 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert scheduler.get_last_lr()[0] == pytest.approx(module.lr * expected)
    opt = module.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[1]["weight_decay"] == 0.0


def test_nan_loss_raises():
    from seglab.errors import SeglabError

    module = _module()
    module.log = lambda *a, **k: None
    batch = _batch(n=1)
    batch["image"][:] = float("nan")
    with pytest.raises(SeglabError, match="at step 0"):
        module.training_step(batch, 0)


def test_lightning_fit_two_steps(tmp_path):
    import lightning as L
    from torch.utils.data import DataLoader

    batch = _batch(n=2)
    items = [{"image": batch["image"][i], "instances": batch["instances"][i]} for i in range(2)]
    module = _module()
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(items, batch_size=2), DataLoader(items[:1], batch_size=1))
    assert trainer.global_step == 2 and "val/aji" in trainer.callback_metrics
