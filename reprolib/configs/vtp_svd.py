"""Config and profiles of the VTP + matrix decomposition notebook (notebooks/vtp_svd.ipynb).

Paper: Tianyi Sun, "Vision Transformer Pruning Via Matrix Decomposition"
(``../shared/papers/vtp_svd.md``); section 3.2 gives the recipe: batch 64, AdamW, cosine
decay; baseline fine-tune 30 epochs at lr 6.25e-7; sparsity training 100 epochs at lr
6.25e-6 with the L1 weight 1e-4; fine-tune with the same settings without L1.

Phases of one run per patch size (``reprolib.experiments.vtp_svd``), one training recipe
each: ``pretrain`` (no L1; the paper starts from the code book's released model instead) ->
``baseline`` fine-tune (no L1) -> ``sparsity`` training (L1 of weight ``l1_strength`` on the
scores) -> prune at ``prune_rate`` -> ``finetune`` -> decompose every pruned linear layer
(each of ``methods``) at ``rank_ratio`` -> ``decompose_finetune``.  The rank sweep
(``sweep_methods`` x ``sweep_ratios`` at patch ``sweep_patch``) fine-tunes each point with
``sweep_finetune``.  Every recipe is the code book's optimiser: AdamW, weight decay 5e-4,
cosine schedule, batch 64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reprolib.configs import (BaseConfig, TrainConfig, check_each, check_number, ranged, recipe,
                              register_paper, with_overrides)
from reprolib.errors import ReprolibError

# The paper's printed Table 2 (accuracy, %), as printed.  Row "CIFAR-10" is the paper's
# fourth row; its VTP entry (93%) and the VTP column (80 / 80 / 30) are the numbers of the
# code book's README table (unpruned ViT patch 2 / 4 / 8 and ResNet-18), not pruned models.
# "VTP+QR" is the paper's VTPQRD column (it does not say which QR variant).
PAPER_TABLE2 = {
    2: {"VTP": 80.0, "VTP+SVD": 85.0, "VTP+QR": 71.1, "VTP+LU": 63.7},
    4: {"VTP": 80.0, "VTP+SVD": 62.8, "VTP+QR": 68.3, "VTP+LU": 57.1},
    8: {"VTP": 30.0, "VTP+SVD": 53.2, "VTP+QR": 53.5, "VTP+LU": 52.3},
    "CIFAR-10": {"VTP": 93.0, "VTP+SVD": 53.2, "VTP+QR": 53.5, "VTP+LU": 49.2},
}
# The paper's Table 1 (section 2.3): orderings only, no numbers.
PAPER_TABLE1 = {"accuracy": "normal equations < QR < SVD", "speed": "normal equations > QR > SVD"}
# Table 2 column -> decomposition method of reprolib.methods.decompose
TABLE2_METHODS = {"VTP+SVD": "svd", "VTP+QR": "qr", "VTP+LU": "lu"}
#: reprolib.methods.decompose.METHODS (named here so that a config is checked without torch)
DECOMPOSITIONS = ("svd", "qr", "qr_reduced", "qr_pivoted", "cod", "lu")
#: The equal-FLOP controls of the evidence (``flops_controls``): VTP at a higher prune rate,
#: Torch-Pruning (the bench's peer) uniform / global.
FLOPS_CONTROLS = ("vtp_more", "tp_uniform", "tp_global")
#: Keys a ``patch_overrides`` entry may not change (they are not per-patch settings).
NOT_PER_PATCH = ("profile", "seed", "patch_sizes", "patch_overrides", "sweep_patch")


def _adamw(epochs: int, lr: float):
    """The code book's recipe (AdamW, weight decay 5e-4, cosine, batch 64) at ``epochs``/``lr``."""
    return recipe(epochs=epochs, batch_size=64, optimizer="adamw", lr=lr, weight_decay=5e-4,
                  schedule="cosine")


#: The training recipes of the pipeline, in phase order.
RECIPES = ("pretrain", "baseline", "sparsity", "finetune", "decompose_finetune", "sweep_finetune")


@dataclass
class VtpSvdConfig(BaseConfig):
    model: str = ranged("test_vit_cifar", model=True)  # registered ViT: test_vit_cifar,
    #                                      vit_cifar_small(_d2), vit_cifar
    patch_sizes: tuple = ranged((4, 8), ge=1, integer=True, each=True)  # Table 2 rows: ViT
    #                                      patch sizes (paper: 2, 4, 8); each divides image_size
    attn_scale: str = ranged("dim", choices=("dim", "head"))  # "dim": code book's dim**-0.5;
    #                                      "head": head_dim**-0.5
    dropout: float = ranged(0.1, ge=0, lt=1)  # dropout in blocks and head (code book 0.1; emb
    #                                      too)
    pretrain: TrainConfig = _adamw(0, 1e-3)      # from scratch, no L1 (paper: released model)
    baseline: TrainConfig = _adamw(0, 6.25e-7)   # baseline fine-tune, no L1 (paper: 30 ep)
    sparsity: TrainConfig = _adamw(2, 1e-3)      # training with L1 on the scores (paper: 100
    #                                              ep at 6.25e-6)
    l1_strength: float = ranged(1e-4, ge=0)  # L1 weight lambda on the importance scores (paper:
    #                                      1e-4)
    l1_mode: str = ranged("grad", choices=("grad", "loss"))  # "grad": add lambda*sign(a) to
    #                                      grads (code book); "loss"
    prune_rate: float = ranged(0.3, ge=0, lt=1)  # fraction of all scores removed (code book's
    #                                      percent 0.3)
    finetune: TrainConfig = _adamw(1, 5e-4)      # after pruning, no L1 (paper: as sparsity)
    methods: tuple = ranged(("svd", "qr", "lu"), choices=DECOMPOSITIONS, each=True)  # Table 2
    #                                      decompositions (VTP+SVD / +QR / +LU)
    rank_ratio: float = ranged(0.25, gt=0, le=1)  # kept rank / min(out, in) of every pruned
    #                                      linear layer
    decompose_finetune: TrainConfig = _adamw(1, 5e-4)  # after decomposition (Table 2)
    sweep_patch: int = ranged(4, ge=1)   # patch size of the rank sweep / merits / error curves
    #                                      (divides image_size)
    sweep_methods: tuple = ranged(("svd", "qr", "qr_reduced", "qr_pivoted", "cod", "lu"),
                                  choices=DECOMPOSITIONS, each=True, empty=True)  # swept methods
    sweep_ratios: tuple = ranged((0.125, 0.25, 0.5), gt=0, le=1, each=True, empty=True)  # swept
    #                                      rank ratios (fraction of min(out, in))
    sweep_finetune: TrainConfig = _adamw(0, 5e-4)  # per sweep point (0 ep = accuracy right after)
    merits_repeats: int = ranged(5, ge=1)  # timed repeats per least-squares solve (median kept)
    patch_overrides: dict = field(default_factory=dict)  # {patch: {key: value}}: per-patch
    #                                      model / epochs, dotted keys ({2: {"pretrain.epochs": 6}})
    flops_controls: tuple = ranged((), choices=FLOPS_CONTROLS, each=True,
                                   empty=True)  # evidence: the ViT pruned further to each
    #                                      decomposed model's FLOPs (per sweep ratio): "vtp_more"
    #                                      (the L1 model at a higher prune rate, fine-tuned
    #                                      finetune + sweep_finetune), "tp_uniform" /
    #                                      "tp_global" (Torch-Pruning on the VTP model,
    #                                      fine-tuned sweep_finetune); () = none (the
    #                                      evidence profile runs "vtp_more" and "tp_global")
    seeds: tuple = ()                    # evidence: replicate seeds of the rank sweep at
    #                                      sweep_patch (each its own dense -> L1 -> VTP); () = none

    def check(self) -> None:
        """The field rules (``super().check()``), then what relates several fields: every
        patch size divides ``image_size``; each ``patch_overrides`` entry holds per-patch
        keys only and gives a valid config."""
        super().check()

        def divides(k, p):
            if self.image_size % p:
                raise ReprolibError(f"{k}={p} does not divide image_size={self.image_size}")

        check_each("patch_sizes", self.patch_sizes, divides)
        divides("sweep_patch", self.sweep_patch)
        for p, over in self.patch_overrides.items():
            what = f"patch_overrides[{p!r}]"
            # an entry for a size outside patch_sizes is unused, not wrong: a profile's
            # entries must survive `-p patch_sizes=(4,)`
            check_number(f"{what} key", p, 1, integer=True)
            if not isinstance(over, dict):
                raise ReprolibError(f"{what}={over!r} must be a dict of per-patch settings")
            fixed = [k for k in over if str(k).split(".")[0] in NOT_PER_PATCH
                     or str(k).endswith(".seed")]
            if fixed:
                raise ReprolibError(f"{what} key {fixed[0]!r} is not a per-patch setting")
            # the patch's own config, checked like any other (its overrides applied once)
            with_overrides(self.__class__(**{**vars(self), "patch_overrides": {}}), over, what)


def _all(key: str, value) -> dict:
    """``{"<recipe>.<key>": value}`` for every recipe (one batch size for all phases)."""
    return {f"{r}.{key}": value for r in RECIPES}


# smoke: the tiny ViT on the digits at 16 px (their own 8 px upsampled twice; 32 px costs 4x
# the tokens at patch 4 and teaches these 8x8 images nothing more), two patch sizes, every stage
SMOKE = {"dataset": "digits", "model": "test_vit_cifar", "image_size": 16, "patch_sizes": (4, 8),
         "pretrain.epochs": 2, "sparsity.epochs": 2, "finetune.epochs": 1,
         "decompose_finetune.epochs": 1, "sweep_ratios": (0.25, 0.5), "merits_repeats": 3,
         **_all("batch_size", 32)}
# cpu: the paper's order on the CIFAR-10 subset with a real dense baseline per patch size
# (the architecture depends on the patch size, so nothing is shared): 12 epochs from
# scratch at lr 1e-3 -> 3 epochs with L1 at 5e-4 -> prune 0.3 -> 1 fine-tune epoch at 2.5e-4
# -> decompose (rank 0.25) -> 1 fine-tune epoch at 2.5e-4.  Patch 2 (256 tokens, ~4x the
# cost of patch 4 per epoch) uses a half-depth model (vit_cifar_small_d2: dim 96, depth 2)
# and 6 + 2 epochs instead of 12 + 3, to keep all three patch sizes within ~30 min on CPU.
CPU = {"dataset": "cifar10_subset", "model": "vit_cifar_small",
       "patch_sizes": (2, 4, 8), "pretrain.epochs": 12, "pretrain.lr": 1e-3,
       "sparsity.epochs": 3, "sparsity.lr": 5e-4, "finetune.epochs": 1, "finetune.lr": 2.5e-4,
       "decompose_finetune.epochs": 1, "decompose_finetune.lr": 2.5e-4,
       "sweep_finetune.lr": 2.5e-4, "sweep_ratios": (0.125, 0.25, 0.5),
       "patch_overrides": {2: {"model": "vit_cifar_small_d2", "pretrain.epochs": 6,
                               "sparsity.epochs": 2}}}
# evidence: the claims test at patch 8 (the cheapest Table 2 row; on the subset it trains
# better than patch 4 in the cpu run), 21 seeds (the 3 first run had rows that the power
# computation of the claims table resolves at <= 11 per arm; at 11, SVD vs VTP pruned further
# at rank 1/8 asked for 21; ~2.5 CPU-min each alone), each its own dense baseline (20 epochs,
# to a plateau) -> 3 L1 epochs -> prune 0.3 -> 1 fine-tune epoch, then SVD / QR / LU at rank 1/8,
# 1/4, 1/2 of every pruned layer, each fine-tuned 2 epochs, and the VTP model fine-tuned the
# same 2 epochs without decomposition (control); the equal-FLOP controls of the
# decomposition claim (the VTP model pruned further to each decomposed model's FLOPs: VTP at
# a higher prune rate and Torch-Pruning global, fine-tuned alike; 6 stages per seed, 3-11 s
# each); 81 min of recorded stage time on 2 CPU cores for the 21 seeds
EVIDENCE = {"dataset": "cifar10_subset", "model": "vit_cifar_small", "patch_sizes": (8,),
            "sweep_patch": 8, "seeds": tuple(range(21)), "pretrain.epochs": 20, "pretrain.lr": 1e-3,
            "sparsity.epochs": 3, "sparsity.lr": 5e-4, "finetune.epochs": 1,
            "finetune.lr": 2.5e-4, "methods": ("svd", "qr", "lu"),
            "sweep_methods": ("svd", "qr", "lu"), "sweep_ratios": (0.125, 0.25, 0.5),
            "rank_ratio": 0.25, "decompose_finetune.epochs": 2, "decompose_finetune.lr": 2.5e-4,
            "sweep_finetune.epochs": 2, "sweep_finetune.lr": 2.5e-4,
            "flops_controls": ("vtp_more", "tp_global")}
GPU = {"dataset": "cifar10", "model": "vit_cifar", "patch_sizes": (2, 4, 8),
       "pretrain.epochs": 30, "pretrain.lr": 1e-3, "sparsity.epochs": 10, "sparsity.lr": 1e-4,
       "finetune.epochs": 5, "finetune.lr": 1e-4, "decompose_finetune.epochs": 5,
       "decompose_finetune.lr": 1e-4, "sweep_finetune.epochs": 1, "sweep_finetune.lr": 1e-4,
       "device": "cuda"}
# The paper's settings (section 3.2).  pretrain replaces the code book's released model
# (its train_cifar10.py defaults: 100 epochs, lr 1e-4, batch 64).  Fine-tuning after pruning
# and after decomposition use "the same optimization setting as in training" (100 epochs,
# lr 6.25e-6).  The paper does not state the pruning rate or the ranks.
PAPER_PRESET = {"dataset": "cifar10", "model": "vit_cifar", "patch_sizes": (2, 4, 8),
                "pretrain.epochs": 100, "pretrain.lr": 1e-4, "baseline.epochs": 30,
                "baseline.lr": 6.25e-7, "sparsity.epochs": 100, "sparsity.lr": 6.25e-6,
                "l1_strength": 1e-4, "finetune.epochs": 100, "finetune.lr": 6.25e-6,
                "decompose_finetune.epochs": 100, "decompose_finetune.lr": 6.25e-6,
                "sweep_finetune.epochs": 10, "sweep_finetune.lr": 6.25e-6, "device": "cuda"}

register_paper("vtp_svd", "VTP pruning of a CIFAR ViT + SVD / QR / LU decomposition (Table 2)",
               VtpSvdConfig, presets={"smoke": SMOKE, "cpu": CPU, "evidence": EVIDENCE,
                                      "gpu": GPU, "paper": PAPER_PRESET},
               order=30)
