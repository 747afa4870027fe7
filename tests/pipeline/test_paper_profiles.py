"""Two optimizer steps of every paper's ``paper`` profile on the CPU (issue 16).

The paper profile's recipes run as configured (optimizer, lr scaling from the global batch,
schedule and warmup, mixup / cutmix, label smoothing, RandAugment / random erasing, L1,
best-on-validation selection, the ViT-PE^2 long run, every stage of the pipeline) with three
changes only: the models are shrunk to their test-sized variants, the data set is replaced by
random uint8 images of its class count (CIFAR-100: 100, ImageNet: 1000, Flowers-102: 102;
a validation split where the stage selects on one) at the shrunk model's image size, and each
training set holds exactly two batches, so every training epoch is two steps.  A pipeline
that crashes on its paper profile (a batch on the wrong device, a recipe field the data path
rejects) fails here without a GPU.  Times per paper are printed (-s shows them).
"""

import time

import pytest
import torch

import reprolib  # noqa: F401,I001  (torchvision before timm)
from reprolib import data as D
from reprolib.configs import get_config
from reprolib.tools.plan import DATASET_INFO

# ~2-3 min per paper on 2 shared cores (10 min for the five): behind the slow mark
pytestmark = pytest.mark.slow

BATCH = 4          # per-process (and global) batch of every shrunk recipe: 2 steps = 8 images
TIMES: dict[str, float] = {}


def _random_data(name, image_size=32, batch_size=128, *, root=None, device="cpu", augment=True,
                 seed=0, eval_batch_size=None, val_fraction=0.0, aug=None, **_):
    """Stands in for ``reprolib.data.get_data``: random images with the data set's classes,
    two training batches, the recipe's extra augmentation applied as the real loader does."""
    g = torch.Generator().manual_seed(seed)
    k = DATASET_INFO[name]["classes"]
    size = image_size

    def images(n):
        return (torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                torch.randint(0, k, (n,), generator=g))

    extra = None
    if aug and augment and (aug.get("randaugment") or aug.get("random_erasing")):
        from reprolib.data.augment import BatchAugment
        extra = BatchAugment(aug.get("randaugment", ""), aug.get("random_erasing", 0.0))
    mk = dict(image_size=image_size, mean=(0.5,) * 3, std=(0.25,) * 3, seed=seed)
    xtr, ytr = images(2 * batch_size)
    train = D.TensorLoader(xtr, ytr, batch_size, shuffle=True, augment=augment, drop_last=True,
                           extra=extra, **mk)
    test = D.TensorLoader(*images(batch_size), eval_batch_size or batch_size, shuffle=False,
                          augment=False, **mk)
    val = (D.TensorLoader(*images(batch_size), batch_size, shuffle=False, augment=False, **mk)
           if val_fraction > 0 else None)
    return D.Data(name, train, test, k, [str(i) for i in range(k)], image_size, val)


def _both(recipes, **values):
    return {f"{r}.{k}": v for r in recipes for k, v in values.items()}


# the shrunk models and the two-step sizes; everything else is the paper profile's
SHRINK = {
    "sidt": {"model": "swin_tiny_test", "image_size": 32, "reference_model": "swin_tiny_test",
             "reference_size": 32, "latency_repeats": 1,
             **_both(("baseline", "search", "finetune"), epochs=1, global_batch=BATCH,
                     batch_size=BATCH)},
    "pe": {"vit_model": "vit_pe_test", "vit_twin": "vit_test_unshared", "image_size": 32,
           "resnet_model": "resnet_pe_test", "resnet_twin": "resnet_test_unshared",
           "vit_long_epochs": 2,
           **_both(("vit_train", "resnet_train"), epochs=1, global_batch=BATCH)},
    "vtp_svd": {"model": "test_vit_cifar", "device": "cpu", "merits_repeats": 1,
                "sweep_ratios": (0.5,), "sweep_methods": ("svd", "qr"),
                **_both(("pretrain", "baseline", "sparsity", "finetune", "decompose_finetune",
                         "sweep_finetune"), epochs=1, batch_size=BATCH)},
    "metaformer_nas": {"model": "test_metaformer", "image_size": 16, "device": "cpu",
                       "batch_size": BATCH, "rounds": 1, "max_train_batches": 2,
                       "controller_samples": 2, "derive_samples": 2, "toy_samples": 4,
                       "retrain.epochs": 1, "retrain.batch_size": BATCH},
    "templates": {"models": ("vgg19_cifar_tiny", "mobilenet_cifar_tiny"),
                  "templates": ("base", "uniform"), "widths": (0.25,),
                  "table2_models": ("vgg19_cifar_tiny",), "table2_templates": ("base",),
                  "measure_memory": False, "measure_latency": False, "table1_width": 0.25,
                  "train.epochs": 1, "train.batch_size": BATCH},
}


@pytest.mark.parametrize("paper", sorted(SHRINK))
def test_two_steps_of_the_paper_profile(paper, monkeypatch, capsys):
    from reprolib.experiments import get_experiment
    from reprolib.experiments import common

    monkeypatch.setattr(D, "get_data", _random_data)
    common._DATA.clear()
    paper_cfg = get_config(paper, "paper")
    cfg = get_config(paper, "paper", **SHRINK[paper])
    # only the shrinking differs from the paper profile: the recipes' own values stay
    for r in ("baseline", "search", "vit_train", "sparsity", "retrain", "train"):
        if hasattr(cfg, r):
            a, b = getattr(paper_cfg, r), getattr(cfg, r)
            for f in ("optimizer", "lr", "schedule", "mixup", "cutmix", "label_smoothing",
                      "randaugment", "random_erasing", "select_every", "warmup_epochs"):
                assert getattr(a, f) == getattr(b, f), (paper, r, f)
    exp = get_experiment(paper)
    t0 = time.perf_counter()
    recs = exp.run(cfg)
    TIMES[paper] = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\n[paper profile, 2 steps per epoch, CPU] {paper}: {len(recs)} stages in "
              f"{TIMES[paper]:.1f} s")
    trained = [r for r in recs.values() if "history" in r["metrics"]]
    assert recs and all(r["profile"] == "paper" for r in recs.values())
    assert trained, paper
    for r in trained:
        assert r["metrics"].get("train_device", r["metrics"].get("device", "cpu")) == "cpu"
    if paper == "pe":
        assert "vit_pe_test-2ep" in recs and recs["vit_pe_test-2ep"]["metrics"]["epochs"] == 2
        assert recs["vit_pe_test"]["metrics"]["lr"] == pytest.approx(5e-4 * BATCH / 512)
    if paper == "metaformer_nas":
        ret = [r for n, r in recs.items() if n.startswith("retrain")]
        assert ret and all("selected_epoch" in r["metrics"]["history"][-1] for r in ret)
    common._DATA.clear()
