"""Config and profiles of the VTP + matrix decomposition notebook (notebooks/vtp_svd.ipynb).

Paper: Tianyi Sun, "Vision Transformer Pruning Via Matrix Decomposition"
(``../shared/papers/vtp_svd.md``); section 3.2 gives the recipe: batch 64, AdamW, cosine
decay; baseline fine-tune 30 epochs at lr 6.25e-7; sparsity training 100 epochs at lr
6.25e-6 with sparsity 1e-4; fine-tune with the same settings without L1.

Stages of one run per patch size (``reprolib.methods.vtp.run_vtp`` and friends):
pretrain (no L1; the paper starts from the code book's released model instead) ->
baseline fine-tune (no L1) -> sparsity training (L1 on the scores) -> prune at
``prune_rate`` -> fine-tune -> decompose every pruned linear layer (each of ``methods``) at
``rank_ratio`` -> fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reprolib.configs import BaseConfig, register_paper
from reprolib.data import CIFAR10_SUBSET

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


@dataclass
class VtpSvdConfig(BaseConfig):
    model: str = "test_vit_cifar"        # registered ViT: test_vit_cifar, vit_cifar_small, vit_cifar
    patch_sizes: tuple = (4, 8)          # Table 2 rows: ViT patch sizes (paper: 2, 4, 8)
    attn_scale: str = "dim"              # "dim": code book's dim**-0.5; "head": head_dim**-0.5
    dropout: float = 0.1                 # dropout in blocks and head (code book 0.1; emb too)
    batch_size: int = 64                 # training batch (paper: 64)
    optimizer: str = "adamw"             # paper: AdamW
    weight_decay: float = 5e-4           # AdamW decoupled decay (code book's adamw setting)
    pretrain_epochs: int = 0             # train from scratch without L1 (paper: released model)
    pretrain_lr: float = 1e-3            # its peak lr (cosine)
    baseline_epochs: int = 0             # baseline fine-tune without L1 (paper: 30)
    baseline_lr: float = 6.25e-7         # paper's own odd value, kept in the paper profile
    sparsity_epochs: int = 2             # training with L1 on the scores (paper: 100)
    sparsity_lr: float = 1e-3            # its peak lr (paper: 6.25e-6)
    sparsity: float = 1e-4               # L1 weight lambda on the importance scores (paper: 1e-4)
    l1_mode: str = "grad"                # "grad": add lambda*sign(a) to grads (code book); "loss"
    prune_rate: float = 0.3              # fraction of all scores removed (code book's percent 0.3)
    finetune_epochs: int = 1             # fine-tune after pruning, no L1 (paper: as sparsity, 100)
    finetune_lr: float = 5e-4            # its peak lr (paper: 6.25e-6)
    methods: tuple = ("svd", "qr", "lu")  # Table 2 decompositions (VTP+SVD / +QR / +LU)
    rank_ratio: float = 0.25             # kept rank / min(out, in) of every pruned linear layer
    decompose_finetune_epochs: int = 1   # fine-tune after decomposition
    decompose_lr: float = 5e-4           # its peak lr
    sweep_patch: int = 4                 # patch size of the rank sweep / merits / error curves
    sweep_methods: tuple = ("svd", "qr", "qr_reduced", "qr_pivoted", "cod", "lu")  # swept methods
    sweep_ratios: tuple = (0.125, 0.25, 0.5)  # swept rank ratios (fraction of min(out, in))
    sweep_finetune_epochs: int = 0       # fine-tune epochs per sweep point (0 = accuracy right after)
    merits_repeats: int = 5              # timed repeats per least-squares solve (median kept)
    patch_overrides: dict = field(default_factory=dict)  # {patch: {field: value}} per-patch model / epochs


SMOKE = dict(dataset="digits", model="test_vit_cifar", patch_sizes=(4, 8), pretrain_epochs=2, sparsity_epochs=2,
             batch_size=32,
             finetune_epochs=1, decompose_finetune_epochs=1, sweep_ratios=(0.25, 0.5),
             merits_repeats=3)
# cpu: the paper's order on the CIFAR-10 subset with a real dense baseline per patch size
# (the architecture depends on the patch size, so nothing is shared): 12 epochs from
# scratch at lr 1e-3 -> 3 epochs with L1 at 5e-4 -> prune 0.3 -> 1 fine-tune epoch at 2.5e-4
# -> decompose (rank 0.25) -> 1 fine-tune epoch at 2.5e-4.  Patch 2 (256 tokens, ~4x the
# cost of patch 4 per epoch) uses a half-depth model (vit_cifar_small_d2: dim 96, depth 2)
# and 6 + 2 epochs instead of 12 + 3, to keep all three patch sizes within ~30 min on CPU.
CPU = dict(dataset=CIFAR10_SUBSET, model="vit_cifar_small", patch_sizes=(2, 4, 8),
           pretrain_epochs=12, pretrain_lr=1e-3, sparsity_epochs=3, sparsity_lr=5e-4,
           finetune_epochs=1, finetune_lr=2.5e-4, decompose_finetune_epochs=1,
           decompose_lr=2.5e-4, sweep_ratios=(0.125, 0.25, 0.5),
           patch_overrides={2: {"model": "vit_cifar_small_d2", "pretrain_epochs": 6,
                                "sparsity_epochs": 2}})
GPU = dict(dataset="cifar10", model="vit_cifar", patch_sizes=(2, 4, 8), pretrain_epochs=30,
           pretrain_lr=1e-3, sparsity_epochs=10, sparsity_lr=1e-4, finetune_epochs=5,
           finetune_lr=1e-4, decompose_finetune_epochs=5, decompose_lr=1e-4,
           sweep_finetune_epochs=1, device="cuda")
# The paper's settings (section 3.2).  pretrain replaces the code book's released model
# (its train_cifar10.py defaults: 100 epochs, lr 1e-4, batch 64).  Fine-tuning after pruning
# and after decomposition use "the same optimization setting as in training" (100 epochs,
# lr 6.25e-6).  The paper does not state the pruning rate or the ranks.
PAPER = dict(dataset="cifar10", model="vit_cifar", patch_sizes=(2, 4, 8), pretrain_epochs=100,
             pretrain_lr=1e-4, baseline_epochs=30, baseline_lr=6.25e-7, sparsity_epochs=100,
             sparsity_lr=6.25e-6, sparsity=1e-4, finetune_epochs=100, finetune_lr=6.25e-6,
             decompose_finetune_epochs=100, decompose_lr=6.25e-6, sweep_finetune_epochs=10,
             device="cuda")

register_paper("vtp_svd", "VTP pruning of a CIFAR ViT + SVD / QR / LU decomposition (Table 2)",
               VtpSvdConfig, presets={"smoke": SMOKE, "cpu": CPU, "gpu": GPU, "paper": PAPER})
