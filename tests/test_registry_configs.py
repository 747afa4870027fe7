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
    cfg = configs.get_config("quickstart", "smoke", epochs="5", lr=1, widths="(0.5,)")
    assert cfg.epochs == 5 and cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.widths == (0.5,)
    with pytest.raises(ReprolibError, match="unknown override.*'epoch'.*valid keys.*epochs"):
        configs.get_config("quickstart", "smoke", epoch=3)
    with pytest.raises(ReprolibError, match="unknown profile 'huge' for quickstart; valid profiles: smoke"):
        configs.get_config("quickstart", "huge")
    with pytest.raises(ReprolibError, match="unknown paper 'nope'.*quickstart"):
        configs.get_config("nope")
    with pytest.raises(ReprolibError, match="epochs='many' is not a valid int"):
        configs.get_config("quickstart", "smoke", epochs="many")
