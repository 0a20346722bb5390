"""Two-process DDP validation on CPU (gloo), run by ``test_module.py::test_ddp_validation_*``.

``python ddp_validation_run.py DATA OUT``: Lightning's ``ddp`` launcher starts rank 1 by running
this script again. Both ranks fit one step of a 1x1-conv model and validate on the odd number of
images in ``DATA``; rank 0 writes ``OUT`` (JSON): the logged ``val/aji`` and ``val/pq``, and every
validation image's scores computed one by one, without DDP, with the same weights.
"""

import json
import sys

import lightning as L
import torch

from seglab.data.dataset import find_samples
from seglab.engine.datamodule import SegmentationDataModule
from seglab.engine.module import SegmentationModule, instance_record
from seglab.losses import CrossEntropyLoss
from seglab.spec.recipes import make_recipe


def build(data: str) -> tuple[SegmentationModule, SegmentationDataModule]:
    recipe = make_recipe("instance", "three_class")
    model = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():  # dark pixels -> interior, bright -> background: a plausible, fixed map
        model.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [-0.2, -0.2, -0.2]]).view(3, 3, 1, 1))
        model.bias.zero_()
    meta = {"preprocessing": {"mean": [0.6] * 3, "std": [0.1] * 3},
            "decoder": {"name": recipe.decoder, "kwargs": {}}}
    module = SegmentationModule(model=model, recipe=recipe, loss=CrossEntropyLoss(mode="multiclass", ignore_index=255),
                                meta=meta, lr=1e-4, schedule="constant")
    samples = find_samples(data)
    data_module = SegmentationDataModule(
        train=samples[:4], val=samples, recipe=recipe, patch=32, patches_per_image=1, batch_size=2,
        augment="none", channels=3, workers=0, seed=0,
    )
    return module, data_module


def main(data: str, out: str) -> None:
    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    module, data_module = build(data)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data_module)
    if trainer.global_rank != 0:
        return
    module.eval()
    per_image = {}
    for item in data_module._dataset(data_module.val_samples, train=False):
        with torch.no_grad():
            pred = module.predict_instances(item["image"][None])[0]
        per_image[item["stem"]] = instance_record(item["instances"].numpy(), pred)
    logged = {k: float(trainer.callback_metrics[k]) for k in ("val/aji", "val/pq")}
    with open(out, "w") as f:
        json.dump({"logged": logged, "per_image": per_image, "world_size": trainer.world_size}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
