"""SiDT (Xue et al., "Searching Intrinsic Dimensions of Vision Transformers",
../shared/papers/sidt.md): hyperparameters of the search / prune / fine-tune pipeline, and
the paper's own printed numbers (Tables I and II) as data.
"""

from dataclasses import dataclass

from reprolib.configs import BaseConfig, register_paper


@dataclass
class SiDTConfig(BaseConfig):
    model: str = "swin_tiny_test"         # registered Swin trained, searched and pruned
    ratios: tuple = (0.2, 0.4, 0.6, 0.8)  # pruning ratios PR = fraction of dimensions removed
    scope: str = "global"                 # ranking of |alpha|: "global" (all layers) or "layer"
    gamma: float = 1e-4                   # L1 scale on the scores during search (section 4)
    search_epochs: int = 2                # epochs of the search stage (weights + scores, L1)
    finetune_epochs: int = 1              # epochs of warm-started fine-tuning per ratio (no L1)
    batch_size: int = 64                  # training batch size
    optimizer: str = "adamw"              # optimizer of both stages
    lr: float = 1e-3                      # peak learning rate (cosine schedule, both stages)
    weight_decay: float = 0.05            # AdamW decoupled weight decay (norms, biases, scores exempt)
    warmup_epochs: float = 0.0            # linear warmup of each stage, in epochs
    label_smoothing: float = 0.1          # cross-entropy label smoothing
    mixup: float = 0.0                    # mixup alpha (0 = off)
    cutmix: float = 0.0                   # cutmix alpha (0 = off)
    clip_grad: float | None = 5.0         # max global grad norm (Swin's recipe)
    reference_model: str = "swin_t"       # the full-size Swin-T whose Table I / II sizes we count
    reference_classes: int = 100          # its classifier outputs (CIFAR-100 in Table I)
    reference_size: int = 224             # its input resolution (pixels)
    latency_batch: int = 1                # batch size of the CPU latency measurement
    latency_repeats: int = 20             # timed forward passes per latency measurement


# SiDT Table I (CIFAR-100, Swin-T): PR -> (Acc %, Params M, FLOPs G).  The 0% row is the
# authors' recovered baseline (footnote 2); the other baseline row ([15]: 78.07 %) has no sizes.
PAPER_TABLE1 = {
    0.0: (81.78, 27.60, 4.49),
    0.2: (82.75, 23.28, 3.53),
    0.4: (82.11, 17.89, 2.60),
    0.6: (80.81, 11.92, 1.73),
    0.8: (79.35, 7.17, 0.92),
}
PAPER_TABLE1_BASELINE_15 = 78.07  # Table I, "0% (Baseline [15])" accuracy, no sizes printed

# SiDT Table II (COCO, Cascade Mask R-CNN, Swin-T backbone): PR -> (box mAP, mask mAP,
# total params M, backbone params M).
PAPER_TABLE2 = {
    0.0: (50.5, 43.7, 86, 28),
    0.2: (50.4, 43.7, 80, 22),
    0.4: (49.2, 42.9, 74, 16),
}

register_paper(
    "sidt", "SiDT: Swin-T dimension search and physical pruning (Table I, section 3, Table II)",
    SiDTConfig,
    presets={
        # tiny Swin on the embedded digits, a minute on a CPU
        "smoke": {"latency_repeats": 5},
        # Swin-T's layout at 32 px on 5,085 real CIFAR-10 images, ~15 min on one CPU thread
        "cpu": {"dataset": "npz:../shared/data/cifar10_subset.npz", "model": "swin_cifar",
                "search_epochs": 6, "finetune_epochs": 2, "warmup_epochs": 1.0},
        # Swin-T at 224 px on CIFAR-100, short: 30 + 30 epochs on one GPU
        "gpu": {"dataset": "cifar100", "model": "swin_t", "image_size": 224,
                "search_epochs": 30, "finetune_epochs": 30, "batch_size": 128, "lr": 2.5e-4,
                "warmup_epochs": 2.0, "mixup": 0.8, "cutmix": 1.0, "latency_repeats": 50},
        # section 4: batch 256, lr 2.5e-4, momentum 0.9, wd 0.05, 160 + 160 epochs, gamma 1e-4
        "paper": {"dataset": "cifar100", "model": "swin_t", "image_size": 224,
                  "search_epochs": 160, "finetune_epochs": 160, "batch_size": 256, "lr": 2.5e-4,
                  "warmup_epochs": 20.0, "mixup": 0.8, "cutmix": 1.0, "latency_repeats": 50},
    },
)
