"""Model registry and the profile / override mechanism."""

import pytest

import reprolib
from reprolib import configs
from reprolib.errors import ReprolibError
from reprolib.models.small_cnn import small_cnn_params
from reprolib.measure import count_params


def test_registry_lists_and_builds():
    names = reprolib.list_models()
    assert "small_cnn" in names and "test_small_cnn" in names
    assert names == sorted(names)
    m = reprolib.create_model("small_cnn", num_classes=7, width=0.5)
    assert count_params(m) == small_cnn_params(7, 0.5)


def test_unknown_model_names_valid_ones():
    with pytest.raises(ReprolibError, match="unknown model 'nope'.*small_cnn"):
        reprolib.create_model("nope")


def test_every_paper_profile_builds():
    for name, paper in configs.papers().items():
        assert "smoke" in paper.presets
        for prof in paper.presets:
            cfg = configs.get_config(name, prof)
            assert cfg.profile == prof


def test_overrides_are_typed_and_checked():
    cfg = configs.get_config("quickstart", "smoke", **{"train.epochs": "5", "train.lr": 1},
                             widths="(0.5,)")
    assert cfg.train.epochs == 5 and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.widths == (0.5,)
    with pytest.raises(ReprolibError, match="unknown quickstart override key 'epoch'.*valid keys"):
        configs.get_config("quickstart", "smoke", epoch=3)
    with pytest.raises(ReprolibError, match="'train.epoch'; valid keys of train: epochs"):
        configs.get_config("quickstart", "smoke", **{"train.epoch": 3})
    with pytest.raises(ReprolibError, match="unknown profile 'huge' for quickstart; valid profiles: smoke"):
        configs.get_config("quickstart", "huge")
    with pytest.raises(ReprolibError, match="unknown paper 'nope'.*quickstart"):
        configs.get_config("nope")
    with pytest.raises(ReprolibError, match="train.epochs='many' is not a valid int"):
        configs.get_config("quickstart", "smoke", **{"train.epochs": "many"})


def test_nested_recipes_take_dotted_keys_and_dicts():
    a = configs.get_config("quickstart", "smoke", **{"train.epochs": 4, "train.lr": "0.2"})
    b = configs.get_config("quickstart", "smoke", train={"epochs": 4, "lr": 0.2})
    assert a == b and a.train.epochs == 4 and a.train.lr == 0.2
    assert configs.get_config("quickstart", "cpu").train.epochs == 15   # preset, dotted key
    with pytest.raises(ReprolibError, match="'widths.epochs': 'widths' is not a training recipe"):
        configs.get_config("quickstart", "smoke", **{"widths.epochs": 1})
    with pytest.raises(ReprolibError, match="key 'train' is a training recipe"):
        configs.get_config("quickstart", "smoke", train=3)


def test_the_config_seed_reaches_every_recipe():
    cfg = configs.get_config("quickstart", "smoke", seed=7)
    assert cfg.train.seed == 7
    with pytest.raises(ReprolibError, match="train.seed: a recipe's seed follows the config's"):
        configs.get_config("quickstart", "smoke", **{"train.seed": 3})


def test_values_are_typed_strictly():
    cfg = configs.get_config("quickstart", "smoke", widths="0.5")      # one value for a tuple
    assert cfg.widths == (0.5,)
    for key, bad in (("train.epochs", True), ("train.lr", "inf"), ("train.lr", float("nan")),
                     ("train.amp", 1), ("model", 3)):
        with pytest.raises(ReprolibError, match=key.split(".")[-1]):
            configs.get_config("quickstart", "smoke", **{key: bad})
    with pytest.raises(ReprolibError, match="profile is chosen with --profile"):
        configs.get_config("quickstart", "smoke", profile="cpu")
    assert configs.get_config("quickstart", "smoke", profile="smoke").profile == "smoke"


def test_field_names_list_recipe_keys():
    names = configs.field_names(configs.get_paper("quickstart").config_cls)
    assert "train.epochs" in names and "widths" in names and "train" not in names
