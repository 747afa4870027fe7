"""Model registry and the profile / override mechanism."""

import pytest

import reprolib
from reprolib import configs
from reprolib.errors import ReprolibError
from reprolib.models.small_cnn import small_cnn_params
from reprolib.core.measure import count_params


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


def test_the_model_index_matches_what_the_modules_register():
    """reprolib.list_models() reads the decorators from the source (no torch); importing the
    modules registers exactly those names, with the same papers."""
    from reprolib.core import registry

    index = registry._declared()
    assert len(index) >= 30 and index["swin_cifar"] == "sidt" and index["small_cnn"] == ""
    registry.load_all()
    own = {k: p for k, p in registry._PAPER_OF.items() if not k.startswith("user_")}
    assert own == index


@pytest.mark.parametrize("paper, key, bad, message", [
    ("quickstart", "train.lr", float("inf"), "train.lr=inf must be a finite number"),
    ("quickstart", "train.lr", float("nan"), "train.lr=nan must be a finite number"),
    ("quickstart", "train.lr", -0.1, "train.lr=-0.1 must be >= 0"),
    ("quickstart", "train.epochs", 0, "train.epochs=0 must be >= 1"),
    ("quickstart", "train.epochs", True, "train.epochs=True is not a valid int"),
    ("quickstart", "train.batch_size", 0, "train.batch_size=0 must be >= 1"),
    ("quickstart", "train.momentum", 1.5, "train.momentum=1.5 must be in [0, 1]"),
    ("quickstart", "train.label_smoothing", 1.0, "train.label_smoothing=1.0 must be in [0, 1)"),
    ("quickstart", "train.milestones", (5, 2), "train.milestones=(5, 2) must be in increasing"),
    ("quickstart", "train.clip_grad", 0.0, "train.clip_grad=0.0 must be > 0"),
    ("quickstart", "train.optimizer", "lbfgs", "train.optimizer='lbfgs' is not one of: sgd"),
    ("quickstart", "widths", (0.3, -1), "widths=(0.3, -1): widths[1]=-1 must be > 0"),
    ("quickstart", "widths", (), "widths=() is empty"),
    ("quickstart", "model", "nope", "model='nope' is not a registered model; valid models:"),
    ("quickstart", "image_size", 0, "image_size=0 must be >= 1"),
    ("quickstart", "device", "gpu", "device='gpu' is not one of: auto, cpu, cuda"),
    ("quickstart", "dataset", "", "dataset='' must name a data set"),
    ("sidt", "ratios", (0.2, 1.5), "ratios=(0.2, 1.5): ratios[1]=1.5 must be in [0, 1)"),
    ("sidt", "ratios", 0.5, None),                        # one value: a one-element tuple
    ("sidt", "finetune.epochs", -1, "finetune.epochs=-1 must be >= 0"),
    ("sidt", "search.epochs", 0, "search.epochs=0 must be >= 1"),
    ("sidt", "scope", "all", "scope='all' is not one of: global, layer"),
    ("templates", "models", "vgg19_cifar_tiny", None),     # one value: a one-element tuple
    ("templates", "models", ("vgg19_cifar_tiny", "vgg"), "models[1]='vgg' is not a registered"),
    ("templates", "templates", ("base", "cubic"), "templates[1]='cubic' is not one of"),
    ("templates", "widths", (0.25, 9.0), "widths[1]=9.0 must be in (0, 4.0]"),
    ("templates", "table1_width", 0.5, "table1_width=0.5 is not a trained width"),
    ("vtp_svd", "patch_sizes", (4, 5), "patch_sizes[1]=5 does not divide image_size=16"),
    ("vtp_svd", "methods", ("svd", "eig"), "methods[1]='eig' is not one of"),
    ("vtp_svd", "patch_overrides", {4: {"pretrain.epochs": -2}},
     "patch_overrides[4]: pretrain.epochs=-2 must be >= 0"),
    ("vtp_svd", "patch_overrides", {0: {"model": "vit_cifar"}}, "patch_overrides[0] key=0 must be >= 1"),
    ("metaformer_nas", "rounds", 0, "rounds=0 must be >= 1"),
    ("metaformer_nas", "val_fraction", 1.0, "val_fraction=1.0 must be in (0, 1)"),
    ("metaformer_nas", "baselines", ("pooling", "conv"), "baselines[1]='conv' is not one of"),
    ("pe", "resnet_variants", ("1234", "15"), "resnet_variants[1]='15' must name distinct"),
])
def test_values_are_range_checked_and_errors_name_the_key(paper, key, bad, message):
    """Every value is checked before anything runs (whole grids included), and the message
    starts with the key as the user typed it."""
    if message is None:
        cfg = configs.get_config(paper, "smoke", **{key: bad})
        assert getattr(cfg, key) == (bad,)
        return
    with pytest.raises(ReprolibError) as e:
        configs.get_config(paper, "smoke", **{key: bad})
    assert message in str(e.value)


def test_configs_built_directly_are_checked_too():
    from reprolib.configs.quickstart import QuickstartConfig

    with pytest.raises(ReprolibError, match="epochs=True is not a valid int"):
        configs.TrainConfig(epochs=True)
    with pytest.raises(ReprolibError, match="lr=inf must be a finite number"):
        configs.TrainConfig(lr=float("inf"))
    with pytest.raises(ReprolibError, match="widths"):
        QuickstartConfig(widths=(0.5, 0))
    assert configs.TrainConfig(lr=1).lr == 1.0 and isinstance(configs.TrainConfig(lr=1).lr, float)
    assert QuickstartConfig(widths=0.5).widths == (0.5,)


def test_every_key_is_documented_for_every_paper():
    """`reprolib list PAPER` shows each key's meaning, taken from the field comments: every
    field of every config (and of TrainConfig) has one."""
    for name, paper in configs.papers().items():
        docs = configs.field_docs(paper.config_cls)
        for f in configs.field_names(paper.config_cls):
            head, _, sub = f.partition(".")
            doc = configs.field_docs(configs.TrainConfig).get(sub) if sub else docs.get(head)
            assert doc, f"{name}: field {f} has no comment"
        text = configs.describe(name)
        for f in configs.field_names(paper.config_cls):
            if not f.endswith(".seed") and f != "profile":
                assert f"  {f} " in text, (name, f)
        for prof in paper.presets:
            assert prof in text


def test_describe_shows_values_per_profile_and_meaning():
    text = configs.describe("quickstart")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("train.epochs "))
    assert "int" in line and "smoke 3" in line and "cpu 15" in line and "gpu 30" in line
    assert "passes over the training set" in text
    assert "width multipliers to train" in text
