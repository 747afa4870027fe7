"""Hyperparameters: one typed config dataclass per paper with named presets, and the typed
training recipe (:class:`TrainConfig`) every paper nests.

Each module in this package describes one notebook ("paper"): its config dataclass (a
comment per field) and its presets, at least ``smoke`` (CPU minutes on embedded data), a
short single-GPU profile and, for the five papers, ``paper`` (the paper's own settings).
A paper config nests its training recipes as :class:`TrainConfig` fields (``search``,
``finetune``, ``retrain`` ...); presets and overrides address them with dotted keys:

    cfg = get_config("sidt", "smoke", **{"finetune.epochs": 3})
    cfg = get_config("sidt", "smoke", finetune={"epochs": 3})        # the same
    reprolib run sidt -p finetune.epochs=3                           # the same, from a shell

An unknown paper, profile or key (``finetune.epoch``) raises ``ReprolibError`` naming the
valid ones, and so does a value of the wrong type or out of its range: every field is
type-checked (a bool only where a bool is meant, finite numbers), every recipe range-checked
(:class:`TrainConfig`), and each paper config checks its own values and whole grids (every
width, ratio, model of a tuple) in its ``check()`` before anything runs.  The message names
the key as the user typed it (``finetune.epochs=-1 ...``).  :func:`describe` lists every key
of a paper with its type, its value in each profile and its meaning (the field's comment).
This package imports no torch: the command line validates before any work.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Any

from reprolib.errors import (ReprolibError, check_choice, check_each,  # noqa: F401
                             check_number, choose)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "multistep", "constant")


# The validators are reprolib.errors' (one family for configs, methods and models); the field
# rules, type conversion and key listing are configs.fields'; the key documentation
# configs.docs'.
from reprolib.configs.fields import (DEVICES, Rule, _coerce, _hints, _nested,  # noqa: F401,E402
                                     _normalise, _typecheck, canonical, check_builders,
                                     check_dataset_name, check_device, check_fields,
                                     check_kwargs_keys, check_model, config_dict, field_names,
                                     json_safe, kwargs_field, kwargs_fields, parse_overrides,
                                     parse_value, ranged)
from reprolib.configs.docs import describe, field_docs  # noqa: F401,E402



# --------------------------------------------------------------------------- the recipe


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (``reprolib.train.fit``); the papers' recipes are
    presets of these, nested in each paper's config."""

    epochs: int = ranged(10, ge=0)          # passes over the training set
    batch_size: int = ranged(128, ge=1)     # per process (global batch = this x world size)
    optimizer: str = ranged("sgd", choices=OPTIMIZERS)  # "sgd" (momentum), "adam" or "adamw"
    lr: float = ranged(0.1, ge=0)           # peak learning rate (after warmup)
    lr_ref_batch: int = ranged(0, ge=0)     # >0: lr is stated for this global batch and scaled
    #                                         linearly to batch_size x processes (Goyal et al.;
    #                                         DeiT: 512)
    momentum: float = ranged(0.9, ge=0, le=1)  # SGD momentum
    nesterov: bool = False                  # SGD Nesterov momentum
    weight_decay: float = ranged(5e-4, ge=0)  # L2 (SGD/Adam) or decoupled (AdamW) weight decay
    no_decay_norm_bias: bool = False        # exempt 1-d params (norms, biases, scores) from decay
    schedule: str = ranged("cosine", choices=SCHEDULES)  # "cosine", "step", "multistep" or
    #                                         "constant"
    warmup_epochs: float = ranged(0.0, ge=0)  # linear warmup from warmup_start * lr, in epochs
    warmup_start: float = ranged(0.01, ge=0, le=1)  # warmup starts at this fraction of lr
    min_lr: float = ranged(0.0, ge=0)       # cosine floor
    milestones: tuple = ranged((), ge=1, integer=True, each=True, empty=True)  # multistep:
    #                                         epochs at which lr is multiplied by lr_decay
    step_size: int = ranged(30, ge=1)       # step: every step_size epochs lr is multiplied by
    #                                         lr_decay
    lr_decay: float = ranged(0.1, gt=0, le=1)  # step / multistep: the factor applied to lr
    label_smoothing: float = ranged(0.0, ge=0, lt=1)  # cross-entropy label smoothing
    mixup: float = ranged(0.0, ge=0)        # mixup alpha (timm Mixup); 0 = off
    cutmix: float = ranged(0.0, ge=0)       # cutmix alpha (timm Mixup); 0 = off
    clip_grad: float | None = ranged(None, gt=0, optional=True)  # max global grad norm; None =
    #                                         no clipping
    amp: bool = True                        # bf16 autocast (CUDA only; ignored on CPU)
    channels_last: bool = True              # channels_last memory format (CUDA only)
    compile: bool = False                   # torch.compile the model
    seed: int = ranged(0, ge=0, le=2**63 - 1)  # dropout, mixup, data order (a paper config sets
    #                                         it from its seed)
    eval_every: int = ranged(1, ge=1)       # evaluate every k epochs (and always after the last)
    progress: bool = True                   # tqdm bars (always off under CI / nbval)
    global_batch: int = ranged(0, ge=0)     # >0: the recipe states the GLOBAL batch; the
    #                                         per-process batch is global_batch / processes
    #                                         (batch_size unused)
    randaugment: str = ""                   # timm RandAugment spec, e.g. "rand-m9-mstd0.5-inc1"
    #                                         (DeiT, Swin); "" = off
    random_erasing: float = ranged(0.0, ge=0, le=1)  # timm RandomErasing probability (DeiT,
    #                                         Swin: 0.25); 0 = off
    repeated_aug: int = ranged(0, ge=0)     # >1: timm RepeatAugSampler, each image this many
    #                                         times per epoch across processes (DeiT: 3); folder
    #                                         data sets only
    select_every: int = ranged(0, ge=0)     # >0: evaluate on the validation split every k epochs
    #                                         and end with the weights best there
    #                                         (MetaFormer-NAS: 10)

    def __post_init__(self):
        _typecheck(self)
        check_fields(self)
        if list(self.milestones) != sorted(self.milestones):
            raise ReprolibError(f"milestones={self.milestones!r} must be in increasing order")
        if self.randaugment and not RANDAUGMENT_SPEC.fullmatch(self.randaugment):
            raise ReprolibError(f"randaugment={self.randaugment!r} is not a timm RandAugment "
                                "spec: 'rand', then '-'-separated parts m<int magnitude>, "
                                "n<int ops>, mstd<std>, inc<0|1>, p<prob> (e.g. "
                                "'rand-m9-mstd0.5-inc1'), or '' = off")

    def process_batch(self, processes: int = 1) -> int:
        """The batch one process loads: ``global_batch / processes`` when the recipe states
        the global batch (a ReprolibError when it does not divide), else ``batch_size``."""
        if not self.global_batch:
            return self.batch_size
        if processes < 1 or self.global_batch % processes:
            raise ReprolibError(f"global_batch={self.global_batch} does not split over "
                                f"{processes} processes; choose a multiple of {processes}")
        return self.global_batch // processes

    def total_batch(self, processes: int = 1) -> int:
        """The global batch: ``global_batch``, else ``batch_size x processes``."""
        return self.global_batch or self.batch_size * processes

    def peak_lr(self, processes: int = 1) -> float:
        """The lr ``fit`` uses: scaled linearly to the global batch when ``lr_ref_batch`` is
        set (``lr x global batch / lr_ref_batch``), else ``lr``."""
        return (self.lr * self.total_batch(processes) / self.lr_ref_batch if self.lr_ref_batch
                else self.lr)


#: A timm RandAugment spec both readers accept (timm's ``rand_augment_transform`` for folder
#: sets, ``reprolib.augment.parse_randaugment`` for in-memory ones): ``rand`` then parts.
RANDAUGMENT_SPEC = re.compile(r"rand(?:-(?:m\d+|n\d+|inc[01]|mstd\d+(?:\.\d+)?|mmax\d+"
                              r"|p(?:\d+(?:\.\d*)?|\.\d+)))*")

#: Recipe fields that do not change a run's result (left out of record keys).
NOT_HASHED = ("progress",)


def recipe(**values) -> Any:
    """A ``dataclasses.field`` whose default is ``TrainConfig(**values)`` (for paper configs)."""
    return field(default_factory=lambda: TrainConfig(**values))


# --------------------------------------------------------------------------- papers


@dataclass
class Paper:
    name: str              # notebook stem: notebooks/<name>.ipynb
    title: str             # one line shown by ``reprolib list``
    config_cls: type       # the config dataclass
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # profile -> overrides
    order: int = 100       # position among the notebooks (reprolib reproduce, the README)
    notebook: bool = True  # False: a tool's config (reprolib bench), not a notebook's
    pipeline: str = ""     # the module of its Pipeline ("" = reprolib.experiments.<name>)


_PAPERS: dict[str, Paper] = {}


@dataclass
class BaseConfig:
    """Fields every notebook config has; paper configs subclass it and add their own."""

    profile: str = "smoke"           # the preset these values came from (set by get_config)
    dataset: str = ranged("digits", dataset=True)  # data set: a name in reprolib.data.DATASETS
    #                                  or "npz:PATH"
    data_root: str | None = None     # torchvision data sets live / download here (default data/)
    image_size: int = ranged(32, ge=1)  # input resolution fed to the model (pixels)
    seed: int = ranged(0, ge=0, le=2**63 - 1)  # seeds weights, data order and augmentation of
    #                                  every stage
    device: str = ranged("auto", device=True)  # "auto" (cuda if available), "cpu", "cuda",
    #                                  "cuda:N" or "mps"

    def __post_init__(self):
        _typecheck(self)
        self.check()

    def check(self) -> None:
        """Every field's declared rule (:func:`reprolib.configs.fields.check_fields`), then
        what relates several fields; a paper config extends it (``super().check()`` first).
        Runs on construction and in ``get_config``."""
        check_fields(self)
        if self.data_root is not None and not self.data_root.strip():
            raise ReprolibError("data_root='' is empty; leave it unset for data/")
        check_kwargs_keys(self)


def register_paper(name: str, title: str, config_cls: type, presets: dict[str, dict],
                   order: int = 100, notebook: bool = True, pipeline: str = "") -> Paper:
    """Register a notebook's config class and its named presets (``smoke`` is required);
    ``order``: its position among the notebooks; ``notebook=False``: the config of a tool
    (``reprolib bench``) that walks a graph of its own but has no notebook; ``pipeline``: the
    module that registers its Pipeline, when it is not ``reprolib.experiments.<name>``.

    Preset values use the same keys as overrides (dotted for nested recipes)."""
    if "smoke" not in presets:
        raise ValueError(f"paper {name!r} needs a 'smoke' preset")
    for prof, values in presets.items():
        _normalise(config_cls, values, f"preset {name}/{prof}")
    _PAPERS[name] = Paper(name, title, config_cls, dict(presets), order, notebook, pipeline)
    return _PAPERS[name]


def _load() -> None:
    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")


def papers() -> dict[str, Paper]:
    """All registered notebooks, by name."""
    _load()
    return dict(sorted(_PAPERS.items()))


def get_paper(name: str) -> Paper:
    all_ = papers()
    choose("paper", name, all_)
    return all_[name]


def profiles(paper: str) -> list[str]:
    """The profile names of ``paper``."""
    return list(get_paper(paper).presets)


def get_config(paper: str, profile: str = "smoke", /, **overrides):
    """The config of ``paper`` at ``profile`` with single values overridden.

    Keys are field names, or ``recipe.field`` for a nested :class:`TrainConfig`; a nested
    recipe may also be given as a dict.  Values may be strings (from the command line): they
    are converted to the field's type.  ``None`` values are ignored (a notebook parameter left
    unset).  The config's ``seed`` is copied into every nested recipe.
    """
    p = get_paper(paper)
    if profile not in p.presets:
        raise ReprolibError(f"unknown profile {profile!r} for {paper}; valid profiles: "
                            f"{', '.join(p.presets)}")
    over = _normalise(p.config_cls, {k: v for k, v in overrides.items() if v is not None},
                      f"{paper} override")
    if "profile" in over and over.pop("profile") != profile:
        raise ReprolibError("the profile is chosen with --profile (or the notebook's `profile` "
                            "parameter), not as an override")
    seeds = [k for k in over if k.endswith(".seed")]
    if seeds:
        raise ReprolibError(f"{seeds[0]}: a recipe's seed follows the config's; set seed=N")
    values = {**_normalise(p.config_cls, p.presets[profile], f"preset {paper}/{profile}"), **over}
    return build_config(p.config_cls, values, profile=profile)


def build_config(cls, values: dict[str, Any], profile: str = "smoke"):
    """An instance of ``cls`` from normalised (dotted) ``values``, types converted, every
    value checked (the recipes', then the config's ``check()``)."""
    hints = _hints(cls)
    nested = _nested(cls)
    top = {k: _coerce(k, v, hints[k]) for k, v in values.items() if "." not in k}
    cfg = cls(**top, profile=profile) if "profile" in hints else cls(**top)
    groups: dict[str, dict] = {}
    for k, v in values.items():
        if "." in k:
            r, sub = k.split(".", 1)
            groups.setdefault(r, {})[sub] = _coerce(k, v, _hints(nested[r])[sub])
    for r in nested:
        try:
            setattr(cfg, r, dataclasses.replace(getattr(cfg, r), **groups.get(r, {})))
        except ReprolibError as e:       # name the key as typed: "finetune.epochs=-1 ..."
            raise ReprolibError(f"{r}.{e}") from None
    if hasattr(cfg, "seed"):
        cfg = seeded(cfg, cfg.seed)
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg


def seeded(cfg, seed: int):
    """A copy of the config ``cfg`` whose ``seed`` and every nested recipe's seed is ``seed``:
    the one place a config's seed reaches its recipes (``get_config``, an evidence run's
    replicate seeds)."""
    new = dataclasses.replace(cfg, seed=int(seed))
    for f in dataclasses.fields(new):
        v = getattr(new, f.name)
        if dataclasses.is_dataclass(v) and any(g.name == "seed" for g in dataclasses.fields(v)):
            setattr(new, f.name, dataclasses.replace(v, seed=int(seed)))
    return new


def with_overrides(cfg, overrides: dict, what: str = "override"):
    """A copy of the config ``cfg`` with ``overrides`` (field names or dotted recipe keys, as
    in presets) applied: the same path as :func:`get_config` (:func:`build_config` from the
    config's own values and the overrides), errors prefixed with ``what``."""
    cls = type(cfg)
    try:
        over = _normalise(cls, overrides, what)
        values = {**flat_values(cfg), **over}
        return build_config(cls, values, profile=getattr(cfg, "profile", "smoke"))
    except ReprolibError as e:
        raise ReprolibError(f"{what}: {e}") from None


def flat_values(cfg) -> dict[str, Any]:
    """``cfg`` as the dotted values a preset gives (recipes' fields as ``recipe.field``; the
    profile and the recipes' seeds, which follow ``seed``, left out)."""
    nested = _nested(type(cfg))
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.name == "profile":
            continue
        if f.name in nested:
            out.update({f"{f.name}.{g.name}": getattr(v, g.name)
                        for g in dataclasses.fields(v) if g.name != "seed"})
        else:
            out[f.name] = v
    return out



def recipe_dict(tc: TrainConfig) -> dict[str, Any]:
    """A recipe as it enters a record key: every field that can change the result (a field
    added later enters every key: ``tools/rekey_records.py`` moves the committed records to
    their new keys once, keeping their metrics)."""
    return {k: v for k, v in config_dict(tc).items() if k not in NOT_HASHED}


