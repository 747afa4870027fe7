"""PE (Koyun & Töreyin 2024, ``../shared/papers/pe.md``): config, presets and printed tables.

The pipeline (``reprolib.experiments.pe``) counts Tables 1-2 (params / FLOPs of ViT-PE,
ResNet50-PE^1/^2 and every baseline timm / torchvision provides, at 224 px, 1000 classes) and
trains a ViT-PE and its unshared twin with the DeiT recipe (and, where asked, a ResNet-PE pair
with the torchvision recipe).  Section 4 recipes, nested as ``vit_train`` / ``resnet_train``:
DeiT for ViT-PE (AdamW, lr = lr_512 x global batch / 512, wd 0.05, stochastic depth, mixup,
cutmix; 300 and 600 epochs, 224 px); torchvision for ResNet50-PE (SGD lr 0.1, wd 1e-4, cosine,
5 linear warmup epochs, crop + flip, 224 px).
"""

from dataclasses import dataclass

from reprolib.configs import (BaseConfig, TrainConfig, check_each, check_model, check_number,
                              kwargs_field, ranged, recipe, register_paper)
from reprolib.errors import ReprolibError


@dataclass
class PEConfig(BaseConfig):
    # what to build and measure
    vit_model: str = "vit_pe_test"        # ViT-PE builder trained with vit_train ("" = none)
    vit_twin: str = "vit_test_unshared"   # its unshared twin, same recipe ("" = none)
    resnet_model: str = ""                # ResNet-PE builder, resnet_train recipe ("" = none)
    resnet_twin: str = ""                 # its unshared twin ("" = none)
    resnet_variants: tuple = ("1234",)    # PE stage sets of resnet_model: "1234" = PE^1, "34" = PE^2
    vit_kwargs: dict = kwargs_field("vit_model", "vit_twin",
                                    reserved=("num_classes", "drop_path_rate"))  # builder
    #                                       arguments of vit_model and vit_twin alike
    #                                       ({"depth": 4, "embed_dim": 64}; {} = the builders')
    resnet_kwargs: dict = kwargs_field("resnet_model", "resnet_twin",
                                       reserved=("num_classes", "pe_stages"))  # builder
    #                                       arguments of resnet_model and resnet_twin alike
    #                                       ({"base": 8}; {} = the builders')
    narrowed: bool = False                # also train each twin narrowed (ViT: embed_dim; ResNet:
    #                                       base width) to its PE model's parameter count
    seeds: tuple = ()                     # evidence: replicate seeds of every training; () = none
    table_image_size: int = ranged(224, ge=1)  # input side of the params/FLOPs tables
    #                                       (Tables 1-2: 224)
    table_num_classes: int = ranged(1000, ge=1)  # classifier width of the tables (ImageNet-1k)
    # DeiT recipe (ViT-PE and its twin).  lr is stated for a global batch of 512 and scaled
    # linearly to batch_size x processes (the paper's lr_512 / 512 x batch); warmup starts at
    # warmup_start x the scaled lr: 1e-3 x 1e-3 = DeiT's 1e-6 at the presets' scaled lr 1e-3.
    # Mixup / cutmix off and no warmup by default (DeiT: 0.8 / 1.0, 5 epochs; see "paper").
    vit_train: TrainConfig = recipe(epochs=2, batch_size=64, optimizer="adamw", lr=5e-4,
                                    lr_ref_batch=512, weight_decay=0.05, no_decay_norm_bias=True,
                                    schedule="cosine", warmup_epochs=0.0, warmup_start=1e-3,
                                    min_lr=1e-5, label_smoothing=0.1, mixup=0.0, cutmix=0.0)
    vit_drop_path: float = ranged(0.0, ge=0, lt=1)  # stochastic depth rate of the last block
    #                                       (DeiT-S: 0.1)
    vit_long_epochs: int = ranged(0, ge=0)  # >0: also train vit_model this many epochs
    #                                       (ViT-PE^2: 600)
    # torchvision recipe (ResNet50-PE and its twin): SGD momentum 0.9, cosine, linear warmup
    # (paper: lr 0.1, wd 1e-4, 5 warmup epochs; epochs not stated, torchvision: 90)
    resnet_train: TrainConfig = recipe(epochs=2, batch_size=64, optimizer="sgd", lr=0.1,
                                       momentum=0.9, weight_decay=1e-4, schedule="cosine",
                                       warmup_epochs=0.0, label_smoothing=0.0)

    def check(self) -> None:
        """The field rules (``super().check()``), then what a field rule cannot say: a model
        field is a registered model or "" (none), a ResNet variant names distinct stages 1-4,
        and a family that trains something trains for at least one epoch."""
        super().check()
        for key in ("vit_model", "vit_twin", "resnet_model", "resnet_twin"):
            if getattr(self, key):
                check_model(key, getattr(self, key))

        def stage_set(key, v):
            if not (isinstance(v, str) and v and set(v) <= set("1234") and len(set(v)) == len(v)):
                raise ReprolibError(f"{key}={v!r} must name distinct stages 1-4, e.g. '1234' "
                                    "(PE^1) or '34' (PE^2)")

        check_each("resnet_variants", self.resnet_variants, stage_set)
        if self.vit_model or self.vit_twin:
            check_number("vit_train.epochs", self.vit_train.epochs, 1, integer=True)
        if self.resnet_model or self.resnet_twin:
            check_number("resnet_train.epochs", self.resnet_train.epochs, 1, integer=True)


# Table 1 of the paper (ImageNet-1k val, 224 px): params (M), FLOPs (G), top-1 (%), as printed.
PAPER_TABLE1 = {
    "DeiT-T/16": {"params_M": 5.7, "GFLOPs": 1.3, "top1": 72.2},
    "PVT-T": {"params_M": 13.2, "GFLOPs": 1.9, "top1": 75.1},
    "PVTv2-B1": {"params_M": 14.0, "GFLOPs": 2.1, "top1": 78.7},
    "ViT-PE¹ (ours)": {"params_M": 11.1, "GFLOPs": 4.6, "top1": 77.3},   # 300 epochs
    "ViT-PE² (ours)": {"params_M": 11.1, "GFLOPs": 4.6, "top1": 78.8},   # 600 epochs
    "DeiT-S/16": {"params_M": 22.1, "GFLOPs": 4.6, "top1": 79.9},
    "T2T-ViT-14": {"params_M": 22.0, "GFLOPs": 6.1, "top1": 80.7},
    "PVT-S": {"params_M": 24.5, "GFLOPs": 3.8, "top1": 79.8},
    "TNT-S": {"params_M": 23.8, "GFLOPs": 5.2, "top1": 81.3},
    "SWin-T": {"params_M": 29.0, "GFLOPs": 4.5, "top1": 81.3},
    "CvT-13": {"params_M": 20.0, "GFLOPs": 4.5, "top1": 81.6},
    "Twins-SVT-S": {"params_M": 24.0, "GFLOPs": 2.8, "top1": 81.3},
    "FocalAtt-Tiny": {"params_M": 28.9, "GFLOPs": 4.9, "top1": 82.2},
    "PVTv2-B2": {"params_M": 25.4, "GFLOPs": 3.9, "top1": 82.0},
    "PVTv2-B2-li": {"params_M": 22.6, "GFLOPs": 4.0, "top1": 82.1},
    "T2T-ViT-19": {"params_M": 39.0, "GFLOPs": 9.8, "top1": 81.4},
    "T2T-ViT-24": {"params_M": 64.0, "GFLOPs": 15.0, "top1": 82.2},
    "PVT-M": {"params_M": 44.2, "GFLOPs": 6.7, "top1": 81.2},
    "PVT-L": {"params_M": 61.4, "GFLOPs": 9.8, "top1": 81.7},
    "CvT-21": {"params_M": 32.0, "GFLOPs": 7.1, "top1": 82.5},
    "TNT-B": {"params_M": 66.0, "GFLOPs": 14.1, "top1": 82.8},
    "SWin-S": {"params_M": 50.0, "GFLOPs": 8.7, "top1": 83.0},
    "SWin-B": {"params_M": 88.0, "GFLOPs": 15.4, "top1": 83.3},
    "Twins-SVT-B": {"params_M": 56.0, "GFLOPs": 8.3, "top1": 83.2},
    "Twins-SVT-L": {"params_M": 99.2, "GFLOPs": 14.8, "top1": 83.7},
    "FocalAtt-Small": {"params_M": 51.1, "GFLOPs": 9.4, "top1": 83.5},
    "FocalAtt-Base": {"params_M": 89.8, "GFLOPs": 16.4, "top1": 83.8},
    "PVTv2-B3": {"params_M": 45.2, "GFLOPs": 6.9, "top1": 83.2},
    "PVTv2-B4": {"params_M": 62.6, "GFLOPs": 10.1, "top1": 83.6},
    "PVTv2-B5": {"params_M": 82.0, "GFLOPs": 11.8, "top1": 83.8},
}

# Table 2 of the paper (ImageNet-1k, 224 px): top-1 / top-5 (%), params (M), GFLOPs, as printed.
PAPER_TABLE2 = {
    "ResNet18": {"top1": 69.7, "top5": 89.0, "params_M": 11.7, "GFLOPs": 1.8},
    "ResNet34": {"top1": 73.3, "top5": 91.4, "params_M": 21.8, "GFLOPs": 3.66},
    "ResNet50": {"top1": 76.1, "top5": 92.8, "params_M": 25.6, "GFLOPs": 4.09},
    "ResNet50-PE¹ (Ours)": {"top1": 74.2, "top5": 91.9, "params_M": 12.8, "GFLOPs": 4.09},
    "ResNet50-PE² (Ours)": {"top1": 75.1, "top5": 92.8, "params_M": 13.4, "GFLOPs": 4.09},
}

# DeiT (Touvron et al.) as the paper uses it: batch 1024, lr_512 5e-4 (scaled lr 1e-3), wd 0.05,
# 5 warmup epochs from 1e-6 (= warmup_start 1e-3 x 1e-3), cosine to 1e-5, mixup 0.8, cutmix 1.0,
# label smoothing 0.1, stochastic depth 0.1.
# The batch is the GLOBAL one (global_batch): under torchrun each of N processes loads 1024 / N
# and the lr follows from 1024 (5e-4 x 1024 / 512 = 1e-3) whatever N is.  DeiT's data recipe:
# RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, repeated augmentation x3 (timm).
_DEIT = {"vit_train.global_batch": 1024, "vit_train.lr": 5e-4, "vit_train.weight_decay": 0.05,
         "vit_train.randaugment": "rand-m9-mstd0.5-inc1", "vit_train.random_erasing": 0.25,
         "vit_train.repeated_aug": 3,
         "vit_train.warmup_epochs": 5.0, "vit_train.warmup_start": 1e-3,
         "vit_train.min_lr": 1e-5, "vit_train.mixup": 0.8, "vit_train.cutmix": 1.0,
         "vit_train.label_smoothing": 0.1, "vit_drop_path": 0.1}
# torchvision's reference: lr 0.1 for the global batch 256 (8 GPUs x 32)
_TORCHVISION = {"resnet_train.global_batch": 256, "resnet_train.lr": 0.1,
                "resnet_train.weight_decay": 1e-4, "resnet_train.warmup_epochs": 5.0,
                "resnet_train.label_smoothing": 0.0}

register_paper(
    "pe", "PE: parameter-efficient ViT and ResNet-50 through row and column spaces", PEConfig,
    presets={
        # embedded digits, tiny ViT pair, 2 epochs: checks the pipeline, says nothing of accuracy
        "smoke": {"vit_train.lr": 8e-3},
        # real CIFAR-10 images (5085 / 1017), 32 px ViT pair (dim 96, depth 6), 8 epochs each;
        # AdamW lr 1e-3 at batch 128; mixup / cutmix off (they need long schedules)
        "cpu": {"dataset": "cifar10_subset", "vit_model": "vit_pe_cifar",
                "vit_twin": "vit_cifar_unshared", "vit_train.epochs": 8,
                "vit_train.batch_size": 128, "vit_train.lr": 4e-3, "vit_train.warmup_epochs": 1.0},
        # the claims test: 3 seeds of ViT-PE / its unshared twin / the twin narrowed to ViT-PE's
        # parameter count (patch 8, depth 4), 40 epochs (with 15 the twins' accuracy was still
        # rising), and the same three of the quarter-width ResNet-50 (base 8, PE^1), 15 epochs.
        # One idle CPU thread per epoch of 5,085 images (and the test pass): ViT 4-5 s, ResNet
        # 21-32 s (from the records), so the ViT half is ~10 min per seed and the ResNet half
        # ~20 min: ~90 core-minutes, ~45 min on 2 cores (estimated from those times).  The ResNet half is not at a plateau after 15 epochs; 30 (-p
        # resnet_train.epochs=30) doubles its cost: a GPU run, or leave it out (-p
        # resnet_model= -p resnet_twin=)
        "evidence": {"dataset": "cifar10_subset", "vit_model": "vit_pe_cifar",
                     "vit_twin": "vit_cifar_unshared", "vit_kwargs": {"patch_size": 8, "depth": 4},
                     "resnet_model": "resnet50_pe_cifar", "resnet_twin": "resnet50_cifar_unshared",
                     "resnet_kwargs": {"base": 8}, "resnet_variants": ("1234",), "narrowed": True,
                     "seeds": (0, 1, 2), "vit_train.epochs": 40, "vit_train.batch_size": 128,
                     "vit_train.lr": 4e-3, "vit_train.warmup_epochs": 1.0,
                     "resnet_train.epochs": 15, "resnet_train.batch_size": 128,
                     "resnet_train.lr": 0.1, "resnet_train.warmup_epochs": 1.0},
        # the paper's models on the paper's data, shortened for one GPU: ImageNet-1k at 224 px,
        # ViT-PE / DeiT-S on the full DeiT recipe for 30 epochs (not 300), ResNet50-PE^1 / ^2 /
        # ResNet-50 on the torchvision recipe for 16 epochs (not 90); no 600-epoch run
        "gpu": {"dataset": "imagenet", "image_size": 224, "vit_model": "vit_pe_small",
                "vit_twin": "vit_small", "vit_train.epochs": 30, **_DEIT,
                "resnet_model": "resnet50_pe", "resnet_twin": "resnet50",
                "resnet_variants": ("1234", "34"), "resnet_train.epochs": 16, **_TORCHVISION},
        # the paper: ImageNet-1k ImageFolder at data_root, 224 px; ViT-PE / DeiT-S on the DeiT
        # recipe, 300 epochs, and ViT-PE again for 600 (the ViT-PE^2 row); ResNet50-PE^1 / ^2 /
        # ResNet-50 on the torchvision recipe (epochs not stated in the paper: torchvision's 90)
        "paper": {"dataset": "imagenet", "image_size": 224, "vit_model": "vit_pe_small",
                  "vit_twin": "vit_small", "vit_train.epochs": 300, "vit_long_epochs": 600,
                  **_DEIT,
                  "resnet_model": "resnet50_pe", "resnet_twin": "resnet50",
                  "resnet_variants": ("1234", "34"), "resnet_train.epochs": 90, **_TORCHVISION},
    },
    order=20,
)
