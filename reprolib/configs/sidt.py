"""SiDT (Xue et al., "Searching Intrinsic Dimensions of Vision Transformers",
../shared/papers/sidt.md): hyperparameters of the search / prune / fine-tune pipeline, and
the paper's own printed numbers (Tables I and II) as data.

The three training recipes are nested: ``baseline`` (the dense model the search starts from;
0 epochs = the search starts from scratch), ``search`` (weights + scores with the L1 term) and
``finetune`` (the pruned model, warm-started, no L1); section 4 uses the same settings for
all, so the presets set each value on each (``-p finetune.epochs=3`` changes one).  Ranges
and choices are declared beside each field (``ranged``); ``check()`` adds what a field rule
cannot say.
"""

from dataclasses import dataclass

from reprolib.configs import (BaseConfig, TrainConfig, check_number, kwargs_field, ranged,
                              recipe, register_paper)
from reprolib.errors import ReprolibError

#: The pruning controls of the evidence profile (``controls``): ours at equal parameters, and
#: Torch-Pruning (the bench's peer, ``reprolib.methods.peer``) at equal FLOPs.
CONTROLS = ("uniform", "random", "tp_uniform", "tp_global")

# Swin's recipe as SiDT uses it in both stages: AdamW, cosine, no weight decay on norms,
# biases and scores, label smoothing 0.1, gradient norm clipped at 5.
_RECIPE = dict(batch_size=64, optimizer="adamw", lr=1e-3, weight_decay=0.05,
               no_decay_norm_bias=True, schedule="cosine", warmup_epochs=0.0,
               label_smoothing=0.1, mixup=0.0, cutmix=0.0, clip_grad=5.0)


@dataclass
class SiDTConfig(BaseConfig):
    model: str = ranged("swin_tiny_test", model=True)  # registered Swin trained, searched and
    #                                       pruned
    model_kwargs: dict = kwargs_field("model", reserved=("num_classes", "img_size"))  # extra
    #                                       builder arguments of `model`
    #                                       ({"patch_size": 4, "embed_dim": 24}; {} = its defaults)
    ratios: tuple = ranged((0.2, 0.4, 0.6, 0.8), ge=0, lt=1, each=True)  # pruning ratios PR =
    #                                       fraction of dimensions removed
    scope: str = ranged("global", choices=("global", "layer"))  # ranking of |alpha|: "global"
    #                                       (all layers) or "layer"
    l1_strength: float = ranged(1e-4, ge=0)  # L1 weight on the scores during search (gamma,
    #                                       section 4)
    baseline: TrainConfig = recipe(epochs=0, **_RECIPE)  # dense model trained first; the search
    #                                       starts from it (the paper's order); 0 = from scratch
    search: TrainConfig = recipe(epochs=2, **_RECIPE)    # search: weights + scores, L1 on scores
    finetune: TrainConfig = recipe(epochs=1, **_RECIPE)  # warm-started fine-tune per ratio, no L1
    reference_model: str = ranged("swin_t", model=True)  # the full-size Swin-T whose Table I /
    #                                       II sizes we count
    reference_classes: int = ranged(100, ge=1)  # its classifier outputs (CIFAR-100 in Table I)
    reference_size: int = ranged(224, ge=1)  # its input resolution (pixels)
    latency_batch: int = ranged(1, ge=1)  # batch size of the CPU latency measurement
    latency_repeats: int = ranged(20, ge=1)  # timed forward passes per latency measurement
    # evidence (the claims tests; reprolib.experiments.sidt.assess)
    seeds: tuple = ()                     # replicate seeds of every condition; () = no evidence
    controls: tuple = ranged(CONTROLS[:2], choices=CONTROLS, each=True, empty=True)  # pruning
    #                                       controls of the searched model: "uniform" (every
    #                                       layer loses the same fraction, ranked by the learned
    #                                       scores) and "random" (random scores, global ranking)
    #                                       at the learned model's parameter count;
    #                                       "tp_uniform" / "tp_global" (Torch-Pruning, magnitude
    #                                       importance, the bench's peer; needs torch-pruning)
    #                                       at the learned model's FLOPs
    kept_margin: float = 0.0              # margin (pp) of "accuracy kept"; 0 = sqrt(2) x the
    #                                       binomial standard error of the unpruned accuracy

    def check(self) -> None:
        """The field rules (``ranged``), then what a rule cannot say: no two ratios at the
        same percent (their stage names), and at least one epoch of search and fine-tuning
        (fields of the nested recipes)."""
        super().check()
        if len({round(100 * r) for r in self.ratios}) != len(self.ratios):
            raise ReprolibError(f"ratios={self.ratios!r}: two ratios round to the same percent")
        check_number("search.epochs", self.search.epochs, 1, integer=True)
        check_number("finetune.epochs", self.finetune.epochs, 1, integer=True)


# Swin's data recipe (the "settings of the Swin paper" section 4 follows): RandAugment
# rand-m9-mstd0.5-inc1 and random erasing 0.25 (timm), no repeated augmentation.
_SWIN_AUG = dict(randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.25)


def _both(*, recipes=("search", "finetune"), **values) -> dict:
    """The same recipe values for search and fine-tune (section 4: "the same settings")."""
    return {f"{r}.{k}": v for r in recipes for k, v in values.items()}


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
        # Swin-T's layout at 32 px on 5,085 real CIFAR-10 images, ~23 min on 2 CPU cores
        "cpu": {"dataset": "cifar10_subset", "model": "swin_cifar",
                "search.epochs": 6, "finetune.epochs": 2, **_both(warmup_epochs=1.0)},
        # the claims test: 5 seeds; per seed a dense baseline trained to a plateau (40 cosine
        # epochs; with 15 the plateau rule held in 1 seed of 5), a search from it, then
        # learned / uniform / random pruning at equal parameters and Torch-Pruning's
        # uniform / global pruning at equal FLOPs, each fine-tuned alike (3 epochs).
        # Swin-T's layout at patch 4 with 2 blocks in stage 3 (an 8x8 token grid:
        # ~1/6 of swin_cifar's cost), batch 128; ~7 s per epoch on one CPU thread.  Measured:
        # 2,762 s for all 5 seeds as one 1-thread process sharing 2 cores with two other runs
        "evidence": {"dataset": "cifar10_subset", "model": "swin_cifar",
                     "model_kwargs": {"patch_size": 4, "depths": (2, 2, 2, 2)},
                     "seeds": (0, 1, 2, 3, 4), "controls": CONTROLS,
                     "baseline.epochs": 40, "search.epochs": 3,
                     "finetune.epochs": 3, "baseline.warmup_epochs": 1.0,
                     **_both(recipes=("baseline", "search", "finetune"), batch_size=128)},
        # Swin-T at 224 px on CIFAR-100, short: 30 + 30 epochs on one GPU
        "gpu": {"dataset": "cifar100", "model": "swin_t", "image_size": 224,
                "baseline.epochs": 30, "search.epochs": 30, "finetune.epochs": 30,
                "latency_repeats": 50,
                **_both(recipes=("baseline", "search", "finetune"), batch_size=128, lr=2.5e-4,
                        warmup_epochs=2.0, mixup=0.8, cutmix=1.0,
                        **_SWIN_AUG)},
        # section 4: batch 256, lr 2.5e-4, momentum 0.9, wd 0.05, 160 + 160 epochs, gamma 1e-4
        # the search starts from the trained dense baseline (section 4: "similar to those
        # for training the unpruned baseline"), which is Table I's 0 % row
        "paper": {"dataset": "cifar100", "model": "swin_t", "image_size": 224,
                  "baseline.epochs": 160, "search.epochs": 160, "finetune.epochs": 160,
                  "latency_repeats": 50,
                  **_both(recipes=("baseline", "search", "finetune"), batch_size=256,
                          global_batch=256, lr=2.5e-4, warmup_epochs=20.0,
                          mixup=0.8, cutmix=1.0, **_SWIN_AUG)},
    },
    order=10,
)
