"""SiDT on detection (Xue et al., ../shared/papers/sidt.md, section 4 and Table II):
hyperparameters of the train / search / prune / fine-tune pipeline of a Cascade Mask R-CNN
whose Swin backbone is searched and pruned, and the Swin detection baseline's printed
numbers as data (the paper's own Table II is ``reprolib.configs.sidt.PAPER_TABLE2``).

Section 4: "we have also pruned the Swin-T backbone for the COCO object detection task,
following the settings in the Swin paper.  That is, batch size = 16, initial learning rate
= 0.0001, weight decay = 0.05, epochs = 36 ... During the search stage, we also start
training with a pretrained Swin-T object detection model."  The three recipes are nested:
``train`` (the detector the search starts from; the ``paper`` profile trains the Swin
baseline itself: ImageNet-1k Swin-T weights, 3x schedule), ``search`` (scores on the
backbone, L1 added to the detection loss) and ``finetune`` (each pruned detector,
warm-started, no L1).
"""

from dataclasses import dataclass

from reprolib.configs import (BaseConfig, TrainConfig, kwargs_field, ranged, recipe,
                              register_paper)
from reprolib.errors import ReprolibError

#: The detection data sets of ``reprolib.data`` (this package imports no torch, so the
#: names are repeated here; tests/unit/test_coco.py checks they agree).
DETECTION_DATASETS = ("coco", "coco_shapes")
SCOPES = ("global", "layer")

# The Swin detection baseline's optimiser (AdamW, lr 1e-4, weight decay 0.05 without decay on
# the norms; step decay x0.1), with bf16 on CUDA.  No gradient clipping.
_RECIPE = dict(batch_size=2, optimizer="adamw", lr=1e-4, weight_decay=0.05,
               no_decay_norm_bias=True, schedule="multistep", lr_decay=0.1,
               warmup_start=0.001, channels_last=False)


@dataclass
class SiDTDetectionConfig(BaseConfig):
    # BaseConfig.image_size is not used: the detector resizes its inputs itself
    # (its builder's ``min_sizes`` / ``max_size``, given in model_kwargs).
    dataset: str = ranged("coco_shapes", choices=DETECTION_DATASETS)  # "coco_shapes"
    #                                             (generated) or "coco" (data_root)
    model: str = ranged("cascade_mask_rcnn_swin_tiny", model=True)  # registered detector
    #                                             (reprolib.models.detection)
    model_kwargs: dict = kwargs_field("model", reserved=("num_classes",))  # extra builder arguments
    pretrained_backbone: str = ""                 # timm name whose ImageNet weights start the Swin
    train_images: int = ranged(0, ge=0)           # first N training images only (0 = all)
    val_images: int = ranged(0, ge=0)             # first N validation images only (0 = all)
    ratios: tuple = ranged((0.2, 0.4), ge=0, lt=1, each=True, empty=True)  # pruning ratios PR
    #                                             (fraction of dims removed)
    scope: str = ranged("global", choices=SCOPES)  # |alpha| ranking: "global" or "layer"
    l1_strength: float = ranged(1e-4, ge=0)       # gamma: L1 weight on the scores during search
    train: TrainConfig = recipe(epochs=2, **{**_RECIPE, "lr": 1e-3, "batch_size": 4})
    search: TrainConfig = recipe(epochs=1, **{**_RECIPE, "lr": 2e-4, "batch_size": 4})
    finetune: TrainConfig = recipe(epochs=1, **{**_RECIPE, "lr": 2e-4, "batch_size": 4})
    reference_model: str = ranged("cascade_mask_rcnn_swin_t", model=True)  # the detector of
    #                                             Table II's sizes
    reference_classes: int = 81                   # its classes with the background (COCO: 81)
    flops_size: tuple = (800, 1280)               # (H, W) of the FLOP count: 1280 x 800
    flops_boxes: int = ranged(1000, ge=1)         # RoIs through the box heads in the FLOP count
    flops_masks: int = ranged(100, ge=1)          # RoIs through the mask heads in the FLOP count

    def check(self) -> None:
        """The field rules (``ranged``), then ``flops_size``: a pair (H, W), each at least
        32 px (a field rule would refuse a square size as a repeat)."""
        super().check()
        if len(self.flops_size) != 2 or min(self.flops_size) < 32:
            raise ReprolibError(f"flops_size={self.flops_size} must be (H, W) of at least 32 px")


# The Swin detection baseline (Liu et al. 2021, Table 2(a) and the Swin-Transformer-Object-
# Detection model zoo): Cascade Mask R-CNN, Swin-T, 3x, COCO val.
SWIN_BASELINE = {"box_AP": 50.5, "mask_AP": 43.7, "params_M": 86, "flops_G": 745}
SWIN_TINY_TIMM = "swin_tiny_patch4_window7_224"

register_paper(
    "sidt_detection",
    "SiDT on detection: Swin-T backbone of a Cascade Mask R-CNN searched and pruned (Table II)",
    SiDTDetectionConfig,
    presets={
        # the small detector on 16 generated images (8 to validate), ~1 min on a CPU: every
        # stage runs (train, search, a fine-tune per ratio), none to a useful accuracy
        "smoke": {"train_images": 16, "val_images": 8, "train.epochs": 2,
                  "search.epochs": 1, "finetune.epochs": 1},
        # the small detector on a third of the generated training set and all its 96 val
        # images, ~15 min on one CPU core: trained from scratch until its box AP50 is far
        # above chance, then one search and one fine-tuning epoch per ratio
        "cpu": {"train_images": 160, "train.epochs": 8, "train.milestones": (6,),
                "train.warmup_epochs": 0.5, "train.eval_every": 4,
                "search.epochs": 1, "finetune.epochs": 1},
        # one GPU on COCO: the Swin-T detector from ImageNet-1k Swin-T, the 1x schedule
        # (12 epochs, lr x0.1 at 8 and 11) per stage, batch 2, the paper's optimiser
        "gpu": {"dataset": "coco", "model": "cascade_mask_rcnn_swin_t",
                "pretrained_backbone": SWIN_TINY_TIMM,
                **{f"{r}.{k}": v for r in ("train", "search", "finetune")
                   for k, v in dict(epochs=12, milestones=(8, 11), batch_size=2, lr=1e-4,
                                    warmup_epochs=0.07, eval_every=4).items()}},
        # section 4 / the Swin baseline: COCO, Swin-T detector from ImageNet-1k Swin-T, 36
        # epochs per stage (3x: lr x0.1 at 27 and 33), 2 images per GPU x 8 GPUs = batch 16,
        # AdamW lr 1e-4, wd 0.05, linear warmup over ~500 iterations
        "paper": {"dataset": "coco", "model": "cascade_mask_rcnn_swin_t",
                  "pretrained_backbone": SWIN_TINY_TIMM,
                  **{f"{r}.{k}": v for r in ("train", "search", "finetune")
                     for k, v in dict(epochs=36, milestones=(27, 33), batch_size=2, lr=1e-4,
                                      warmup_epochs=0.07, eval_every=12).items()}},
    },
    order=15,
)
