"""RandAugment, random erasing and repeated augmentation are built as a recipe configures them
(issue 16); the checkpoint best on validation is the one reported (select_every); the VTP text's
12 / 768 / 10-head geometry builds."""

import dataclasses

import numpy as np
import pytest
import torch

import reprolib
from reprolib import data
from reprolib.data import augment
from reprolib.configs import TrainConfig, get_config
from reprolib.errors import ReprolibError
from reprolib.core.pipeline import load_data


def test_recipes_of_the_paper_profiles_carry_the_augmentations():
    for prof in ("gpu", "paper"):
        pe = get_config("pe", prof).vit_train
        assert (pe.randaugment, pe.random_erasing, pe.repeated_aug) == \
            ("rand-m9-mstd0.5-inc1", 0.25, 3)
        for r in ("search", "finetune"):
            s = getattr(get_config("sidt", prof), r)
            assert (s.randaugment, s.random_erasing, s.repeated_aug) == \
                ("rand-m9-mstd0.5-inc1", 0.25, 0)
    assert augment.recipe_aug(get_config("pe", "smoke").vit_train) == {}
    assert augment.parse_randaugment("rand-m9-mstd0.5-inc1") == {"m": 9.0, "n": 2, "mstd": 0.5,
                                                                 "inc": 1}
    with pytest.raises(ReprolibError, match="unknown part"):
        augment.parse_randaugment("rand-m9-zz3")
    with pytest.raises(ReprolibError, match="RandAugment"):
        TrainConfig(randaugment="autoaug")
    with pytest.raises(ReprolibError):
        TrainConfig(random_erasing=1.5)


def test_folder_transform_is_timms_with_the_recipes_values():
    from timm.data.auto_augment import RandAugment
    from timm.data.random_erasing import RandomErasing

    tf = augment.folder_train_transform(224, {"randaugment": "rand-m9-mstd0.5-inc1",
                                              "random_erasing": 0.25})
    ops = tf.transforms
    ra = [t for t in ops if isinstance(t, RandAugment)]
    re = [t for t in ops if isinstance(t, RandomErasing)]
    assert len(ra) == 1 and ra[0].num_layers == 2
    assert all(o.magnitude == 9 and o.magnitude_std == 0.5 for o in ra[0].ops)
    assert len(re) == 1 and re[0].probability == 0.25 and re[0].mode == "pixel"
    assert type(ops[0]).__name__ == "RandomResizedCropAndInterpolation" and ops[0].size == (224, 224)
    plain = augment.folder_train_transform(224, {})
    assert not [t for t in plain.transforms if isinstance(t, (RandAugment, RandomErasing))]


def test_repeat_sampler_is_timms():
    from timm.data.distributed_sampler import RepeatAugSampler

    s = augment.repeat_sampler(list(range(512)), 2, 0, True, 3)
    assert isinstance(s, RepeatAugSampler) and s.num_repeats == 3
    idx = list(s)
    assert len(idx) == 256 and len(set(idx)) < len(idx)        # images repeat within an epoch


def test_in_memory_loader_applies_them_on_the_device():
    tc = TrainConfig(batch_size=32, randaugment="rand-m9-mstd0.5-inc1", random_erasing=1.0)
    cfg = get_config("quickstart", "smoke")
    d = load_data(cfg, tc)
    assert repr(d.train.extra) == "BatchAugment(randaugment='rand-m9-mstd0.5-inc1', " \
                                  "random_erasing=1.0)"
    assert d.train.extra.randaugment.num_ops == 2 and d.train.extra.randaugment.magnitude == 9
    plain = data.get_data("digits", cfg.image_size, 32, seed=cfg.seed)
    x_aug, _ = next(iter(d.train))
    x_plain, _ = next(iter(plain.train))
    assert x_aug.shape == x_plain.shape and not torch.allclose(x_aug, x_plain)
    # erasing with p=1 replaces a box of every image by N(0, 1) noise, seeded per epoch
    e = augment.BatchAugment("", 1.0)
    x = torch.zeros(4, 3, 32, 32)
    out = e.after_norm(x, torch.Generator().manual_seed(0))
    frac = (out != 0).float().mean((1, 2, 3))
    assert ((frac > 0.015) & (frac < 0.34)).all()
    again = e.after_norm(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert d.test.extra is None                                   # evaluation never augments


def test_global_batch_sets_the_per_process_batch():
    tc = TrainConfig(batch_size=7, global_batch=64)
    d = load_data(get_config("quickstart", "smoke"), tc)
    assert d.train.batch_size == 64                                # one process
    assert (tc.process_batch(4), tc.total_batch(4), tc.process_batch(1)) == (16, 64, 64)
    assert TrainConfig(lr=5e-4, lr_ref_batch=512, global_batch=1024).peak_lr(8) == \
        pytest.approx(1e-3)


def test_select_every_reports_the_checkpoint_best_on_validation(tmp_path):
    from reprolib.core.train import fit

    d = data.get_data("digits", 8, 64, val_fraction=0.2, seed=0)
    torch.manual_seed(0)
    model = reprolib.create_model("test_small_cnn", num_classes=10)
    tc = TrainConfig(epochs=4, batch_size=64, lr=0.5, schedule="constant", select_every=2,
                     progress=False)
    res = fit(model, d, tc, ckpt_dir=tmp_path)
    last = res.history[-1]
    vals = {h["epoch"]: h["val_acc"] for h in res.history if "val_acc" in h}
    assert sorted(vals) == [2, 4]
    assert last["selected_epoch"] == max(vals, key=vals.get)
    assert last["selected_val_acc"] == max(vals.values())
    # the test accuracy reported is the selected weights' own
    from reprolib.core.train import evaluate
    assert evaluate(model, d.test)["acc"] == pytest.approx(last["test_acc"])
    with pytest.raises(ReprolibError, match="validation split"):
        fit(model, data.get_data("digits", 8, 64), dataclasses.replace(tc, epochs=1))


def test_vtp_text_geometry_variant():
    from reprolib.core.measure import count_params
    from reprolib.methods import vtp
    from reprolib.core.registry import create_model

    with torch.device("meta"):
        m = create_model("vit_cifar_text")
    assert (len(m.blocks), m.arch["dim"], m.arch["heads"], m.arch["head_dim"]) == (12, 768, 10, 64)
    assert m.blocks[0].attn.heads * m.blocks[0].attn.head_dim == 640
    assert 82e6 < count_params(m) < 84e6
    with pytest.raises(ReprolibError, match="not divisible"):
        create_model("vit_cifar", dim=768, heads=10)
    small = vtp.attach_scores(create_model("vit_cifar_text", depth=1, dim=96, mlp_dim=64))
    pruned = vtp.prune(small, 0.3)
    x = torch.randn(2, 3, 32, 32)
    assert pruned(x).shape == (2, 10)
    assert np.isclose(pruned.architecture()["head_dim"], 64)
