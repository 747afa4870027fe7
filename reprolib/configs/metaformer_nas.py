"""Config and profiles of the MetaFormer-NAS notebook (notebooks/metaformer_nas.ipynb).

Paper: Zhang & Liu, "基于 MetaFormer 的高效神经架构搜索" (``../shared/papers/metaformer_nas.md``).
§4.1: 100 rounds; each round one epoch of the shared weights (AdamW lr 1e-3, wd 1e-4) and
100 controller samples (Adam lr 3.5e-4); batch 128 for training and rewards.  §4.2: the
searched and the baseline mixers retrained from scratch for 600 epochs on Flowers-102 at
224 px (random crop + flip), AdamW lr 1e-3, wd 1e-4 (the ``retrain`` recipe).  The search
hyperparameters are flat fields, from which
``reprolib.experiments.metaformer_nas.nas_config`` builds the
``reprolib.methods.metaformer_nas.NASConfig`` field by field; the pipeline is
``reprolib.experiments.metaformer_nas``.
"""

from __future__ import annotations

from dataclasses import dataclass

from reprolib.configs import BaseConfig, TrainConfig, ranged, recipe, register_paper
from reprolib.errors import check_number

# The paper's Table 1 (§4.1), as printed: search wall time (hours, Quadro RTX 8000) and the
# number of architectures of the search space, for N = 4 and N = 7 nodes.
PAPER_TABLE1 = {4: {"search_time_h": 2.8, "space_size": 96},
                7: {"search_time_h": 3.1, "space_size": 92_160}}
PAPER_DEVICE = "Quadro RTX 8000 (47.5 GB), Xeon Silver 4210R, CUDA 11.4"
# The paper's Table 2 (§4.2), as printed: Flowers-102 top-1 accuracy (%) of MetaFormer-S12
# (early conv + 16x16 tokens) with each token mixer, 600 epochs; TABLE2_LABELS are the
# paper's row names.  Our rows name the backbone actually trained (cfg.model) and the mixer
# (TABLE2_MIXERS).
PAPER_TABLE2 = {"pooling": 64.9, "mlp": 65.1, "attention": 64.7, "nas4": 64.5, "nas7": 65.9}
TABLE2_LABELS = {"pooling": "MetaFormer-s12 + Pooling", "mlp": "MetaFormer-s12 + SpatialMLP",
                 "attention": "MetaFormer-s12 + MHSA", "nas4": "MetaFormer-s12 + 4 Node NAS",
                 "nas7": "MetaFormer-s12 + 7 Node NAS"}
BASE_MIXERS = ("pooling", "mlp", "attention")   # reprolib.models.metaformer.BASE_MIXERS
TABLE2_MIXERS = {"pooling": "Pooling", "mlp": "SpatialMLP", "attention": "MHSA",
                 "nas4": "4 Node NAS", "nas7": "7 Node NAS"}


@dataclass
class MetaFormerNASConfig(BaseConfig):
    model: str = ranged("test_metaformer", model=True)  # registered backbone: test_metaformer, metaformer_tiny, metaformer_s12
    node_counts: tuple = ranged((4, 7), ge=2, integer=True, each=True)  # DAG sizes N searched (paper Table 1: 4 and 7)
    baselines: tuple = ranged(("pooling", "mlp", "attention"), choices=BASE_MIXERS, each=True,
                              empty=True)  # hand-designed mixers of Table 2
    layer_scale_init: float = ranged(1e-5, gt=0)  # initial layer scale of both residual branches (PoolFormer/paper 1e-5; cpu/smoke larger, see CPU)
    # ---- the search (experiments.metaformer_nas.nas_config: the NASConfig, field by field)
    batch_size: int = ranged(128, ge=1)  # shared-training and reward batch of the search (paper 128)
    val_fraction: float = ranged(0.1, gt=0, lt=1)  # fraction of the training set held out for rewards
    rounds: int = ranged(2, ge=1)        # search rounds (paper 100)
    shared_epochs: int = ranged(1, ge=1)  # shared-weight epochs per round (paper 1)
    arch_per: str = ranged("step", choices=("step", "epoch"))  # a new sampled architecture every "step" (paper) or "epoch"
    shared_lr: float = ranged(1e-3, gt=0)  # AdamW lr of the shared weights (paper 1e-3)
    shared_wd: float = ranged(1e-4, ge=0)  # AdamW weight decay of the shared weights (paper 1e-4)
    max_train_batches: int | None = ranged(None, ge=1, integer=True, optional=True)  # cap on shared-training batches per round (None: all)
    controller_samples: int = ranged(100, ge=1)  # controller samples / updates per round (paper 100)
    controller_lr: float = ranged(3.5e-4, gt=0)  # Adam lr of the controller (paper 3.5e-4; cpu 1.5e-3, see CPU)
    controller_hidden: int = ranged(64, ge=1)  # LSTM units (paper 64)
    controller_clip: float = ranged(5.0, gt=0)  # max grad norm of the controller
    temperature: float | None = ranged(None, gt=0, optional=True)  # controller softmax temperature (None: 1)
    tanh_c: float | None = ranged(None, gt=0, optional=True)  # controller tanh constant (None: off)
    entropy_weight: float = ranged(1e-2, ge=0)  # bonus beta on the summed entropy (ENAS 1e-4..1e-2; 1e-4 let the toy collapse)
    baseline_decay: float = ranged(0.95, ge=0, lt=1)  # EMA decay of the REINFORCE baseline (ENAS 0.95..0.99)
    derive_samples: int = ranged(100, ge=1)  # K architectures sampled to pick the final one
    derive_batches: int = ranged(1, ge=1)  # validation batches scoring each derived candidate
    reward_batches: int = ranged(1, ge=1, le=10_000)  # validation batches averaged into one controller reward (paper 1)
    uniform_samples: int = ranged(0, ge=0, le=1_000_000)  # per round, uniformly drawn cells scored alike: the uniform policy's reward (0 = none)
    # ---- evidence: seeds, the random-search control and the claims' margin
    seeds: tuple = ranged((), ge=0, integer=True, each=True, empty=True)  # every condition searched / trained once per seed, one stage each (() = `seed` only)
    random_samples: int = ranged(0, ge=0, le=10_000)  # K of the random-search control: K cells drawn uniformly, each trained with `proxy`, best on validation kept (0 = none)
    proxy: TrainConfig = recipe(epochs=1, batch_size=128, optimizer="adamw", lr=1e-3,
                                weight_decay=1e-4, schedule="cosine")  # each random-search candidate, on the search's train/val split
    margin: float = ranged(1.0, ge=0.0, le=100.0)  # non-inferiority margin (accuracy points) of the ">=" claims
    # ---- retraining from scratch (Table 2): AdamW lr 1e-3, wd 1e-4 (paper; 600 epochs)
    retrain: TrainConfig = recipe(epochs=1, batch_size=128, optimizer="adamw", lr=1e-3,
                                  weight_decay=1e-4, schedule="cosine")  # the paper names no schedule
    # ---- the toy-reward REINFORCE check
    toy_samples: int = ranged(800, ge=1)  # controller updates of the toy-reward REINFORCE check
    toy_lr: float = ranged(1.5e-3, gt=0)  # Adam lr of the toy-reward check (its own; 3e-3 left 1 of 3 N = 7 seeds stuck)

    def check(self) -> None:
        """The field rules (``super().check()``), then what the recipe's own rule allows but
        this paper does not: a retraining of at least one epoch."""
        super().check()
        check_number("retrain.epochs", self.retrain.epochs, 1, integer=True)


SMOKE = {"dataset": "digits", "model": "test_metaformer", "image_size": 16, "batch_size": 64,
         "rounds": 2, "max_train_batches": 4, "controller_samples": 10, "derive_samples": 10,
         "retrain.epochs": 1, "retrain.batch_size": 64, "toy_samples": 400,
         "layer_scale_init": 1.0}
# CPU: 24 rounds of (half an epoch = 18 batches of shared training, 100 controller updates):
# 432 shared steps (~12 epochs of the 4,577-image split) and 2,400 controller updates in all,
# so the controller lr is 1.5e-3 (the paper's 3.5e-4 is for 100 rounds x 100 = 10,000
# updates); 50 derive samples.  Deviation for short runs: layer scale 1.0 instead of
# PoolFormer's 1e-5.  With 1e-5 the token-mixer branch was still scaled by ~0.01 after 5
# epochs, so every cell computed nearly the same function (policy ~uniform, all mixers
# 36.7-37.9 %).  Measured on metaformer_tiny/pooling after 30 AdamW steps on the subset:
# |mixer branch| / |block input| = 0.004-0.014 (1e-5), 0.06-0.19 (1e-1), 0.7-2.1 (1.0).
CPU = {"dataset": "cifar10_subset", "model": "metaformer_tiny",
       "image_size": 32, "rounds": 24, "max_train_batches": 18, "controller_samples": 100,
       "controller_lr": 1.5e-3, "derive_samples": 50, "retrain.epochs": 5,
       "layer_scale_init": 1.0}
# EVIDENCE (issue 13): does the controller learn at CPU scale, and is the searched cell at
# least as good as the hand-designed mixers and as random search with the same budget?  N = 4
# only (96 cells), three seeds.  The levers the cpu run left (its policy ended within 0.6 % of
# uniform): each reward averages `reward_batches` validation batches (256 images) instead of
# one, so it ranks cells rather than batches; entropy weight 1e-4 instead of 1e-2 (with rewards
# that differ by a few points the 1e-2 bonus outweighs the policy gradient); a controller lr
# for the 600 updates it gets (30 rounds x 20).  `uniform_samples` cells drawn uniformly per
# round give the uniform policy's reward on the same shared weights.  Random search: 8 cells x
# 3 proxy epochs, about the search's wall time.  Retraining: 15 epochs of AdamW 2e-3, cosine
# (a 20-epoch pilot of pooling levelled off from epoch 14; the plateau rule says whether each
# run did).  Budget, timed on this machine (a shrunk run of this profile, one thread, at 48 %
# of a core under the shared load): a search round 13 s, a proxy / retraining epoch 7-16 s per
# mixer, ~1,650 s per seed at that load, ~800 s on an idle core; three seeds in three
# processes (`-p "seeds=(s,)"`, OMP_NUM_THREADS=1: each seed's stages are their own records,
# so the runs fill one evidence profile) ~20 min on 2 idle cores.
EVIDENCE = {"dataset": "cifar10_subset", "model": "metaformer_tiny", "image_size": 32,
            "node_counts": (4,), "seeds": (0, 1, 2), "layer_scale_init": 1.0, "rounds": 30,
            "max_train_batches": 12, "controller_samples": 20, "reward_batches": 2,
            "uniform_samples": 6, "controller_lr": 5e-3, "entropy_weight": 1e-4,
            "derive_samples": 30, "derive_batches": 2, "random_samples": 8,
            "proxy.epochs": 3, "proxy.lr": 2e-3, "retrain.epochs": 15, "retrain.lr": 2e-3,
            "margin": 1.0}
# GPU: the paper's model and data, shortened: Flowers-102 at 224 px, 20 search rounds (not 100)
# and 60 retraining epochs (not 600), the checkpoint best on the official val split reported.
GPU = {"dataset": "flowers102", "model": "metaformer_s12", "image_size": 224, "rounds": 20,
       "retrain.epochs": 60, "retrain.schedule": "constant", "retrain.select_every": 10,
       "device": "cuda"}
# §4.2: weights saved every 10 epochs, the one best on validation tested (select_every 10:
# trained on the train split, Flowers-102's official val split selects).
PAPER_PRESET = {"dataset": "flowers102", "model": "metaformer_s12", "image_size": 224,
                "rounds": 100, "retrain.epochs": 600, "retrain.schedule": "constant",
                "retrain.select_every": 10, "device": "cuda"}

register_paper(
    "metaformer_nas",
    "MetaFormer-NAS: token-mixer search with a shared-weight DAG, LSTM controller, REINFORCE",
    MetaFormerNASConfig,
    presets={"smoke": SMOKE, "cpu": CPU, "evidence": EVIDENCE, "gpu": GPU,
             "paper": PAPER_PRESET},
    order=40,
)
