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
valid ones.  This package imports no torch: the command line validates before any work.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import math
import pkgutil
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from reprolib.errors import ReprolibError, choose

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "multistep", "constant")


# --------------------------------------------------------------------------- the recipe


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (``reprolib.train.fit``); the papers' recipes are
    presets of these, nested in each paper's config."""

    epochs: int = 10                 # passes over the training set
    batch_size: int = 128            # per process (global batch = this x world size)
    optimizer: str = "sgd"           # "sgd" (momentum), "adam" or "adamw"
    lr: float = 0.1                  # peak learning rate (after warmup)
    lr_ref_batch: int = 0            # >0: lr is stated for this global batch and scaled linearly
    #                                  to batch_size x processes (Goyal et al.; DeiT: 512)
    momentum: float = 0.9            # SGD momentum
    nesterov: bool = False           # SGD Nesterov momentum
    weight_decay: float = 5e-4       # L2 (SGD/Adam) or decoupled (AdamW) weight decay
    no_decay_norm_bias: bool = False  # exempt 1-d params (norms, biases, scores) from decay
    schedule: str = "cosine"         # "cosine", "step", "multistep" or "constant"
    warmup_epochs: float = 0.0       # linear warmup from warmup_start * lr, in epochs
    warmup_start: float = 0.01       # warmup starts at this fraction of lr
    min_lr: float = 0.0              # cosine floor
    milestones: tuple = ()           # multistep: epochs at which lr is multiplied by lr_decay
    step_size: int = 30              # step: every step_size epochs lr is multiplied by lr_decay
    lr_decay: float = 0.1            # step / multistep: the factor applied to lr
    label_smoothing: float = 0.0     # cross-entropy label smoothing
    mixup: float = 0.0               # mixup alpha (timm Mixup); 0 = off
    cutmix: float = 0.0              # cutmix alpha (timm Mixup); 0 = off
    clip_grad: float | None = None   # max global grad norm; None = no clipping
    amp: bool = True                 # bf16 autocast (CUDA only; ignored on CPU)
    channels_last: bool = True       # channels_last memory format (CUDA only)
    compile: bool = False            # torch.compile the model
    seed: int = 0                    # dropout, mixup, data order (a paper config sets it from its seed)
    eval_every: int = 1              # evaluate every k epochs (and always after the last)
    progress: bool = True            # tqdm bars (always off under CI / nbval)
    # ---- added by issue 16 (left out of record keys while at their defaults, see RECIPE_ADDED)
    global_batch: int = 0            # >0: the recipe states the GLOBAL batch; the per-process
    #                                  batch is global_batch / processes (batch_size unused)
    randaugment: str = ""            # timm RandAugment spec, e.g. "rand-m9-mstd0.5-inc1" (DeiT,
    #                                  Swin); "" = off
    random_erasing: float = 0.0      # timm RandomErasing probability (DeiT, Swin: 0.25); 0 = off
    repeated_aug: int = 0            # >1: timm RepeatAugSampler, each image this many times per
    #                                  epoch across processes (DeiT: 3); folder data sets only
    select_every: int = 0            # >0: evaluate on the validation split every k epochs and
    #                                  end with the weights best there (MetaFormer-NAS: 10)

    def __post_init__(self):
        choose("optimizer", self.optimizer, OPTIMIZERS)
        choose("schedule", self.schedule, SCHEDULES)
        if self.epochs < 0 or self.batch_size < 1 or self.lr < 0 or self.lr_ref_batch < 0:
            raise ReprolibError(f"epochs={self.epochs}, batch_size={self.batch_size}, "
                                f"lr={self.lr}: need epochs >= 0, batch_size >= 1, lr >= 0")
        self.milestones = tuple(self.milestones)
        if self.global_batch < 0 or self.repeated_aug < 0 or self.select_every < 0 \
                or not 0 <= self.random_erasing <= 1:
            raise ReprolibError(f"global_batch={self.global_batch}, repeated_aug="
                                f"{self.repeated_aug}, select_every={self.select_every}, "
                                f"random_erasing={self.random_erasing}: need the first three "
                                ">= 0 and 0 <= random_erasing <= 1")
        if self.randaugment and not self.randaugment.startswith("rand"):
            raise ReprolibError(f"randaugment={self.randaugment!r}: a timm RandAugment spec "
                                "starts with 'rand' (e.g. 'rand-m9-mstd0.5-inc1'), or '' = off")

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


#: Recipe fields that do not change a run's result (left out of record keys).
NOT_HASHED = ("progress",)
#: Recipe fields added after records were committed: left out of a record key while at their
#: default, so the records made before them keep their keys (a set value enters the key).
RECIPE_ADDED = ("global_batch", "randaugment", "random_erasing", "repeated_aug", "select_every")


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


_PAPERS: dict[str, Paper] = {}


@dataclass
class BaseConfig:
    """Fields every notebook config has; paper configs subclass it and add their own."""

    profile: str = "smoke"           # the preset these values came from (set by get_config)
    dataset: str = "digits"          # data set: a name in reprolib.data.DATASETS or "npz:PATH"
    data_root: str | None = None     # torchvision data sets live / download here (default data/)
    image_size: int = 32             # input resolution fed to the model (pixels)
    seed: int = 0                    # seeds weights, data order and augmentation of every stage
    device: str = "auto"             # "auto" (cuda if available), "cpu" or "cuda"


def register_paper(name: str, title: str, config_cls: type, presets: dict[str, dict]) -> Paper:
    """Register a notebook's config class and its named presets (``smoke`` is required).

    Preset values use the same keys as overrides (dotted for nested recipes)."""
    if "smoke" not in presets:
        raise ValueError(f"paper {name!r} needs a 'smoke' preset")
    for prof, values in presets.items():
        _normalise(config_cls, values, f"preset {name}/{prof}")
    _PAPERS[name] = Paper(name, title, config_cls, dict(presets))
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
    """An instance of ``cls`` from normalised (dotted) ``values``, types converted."""
    hints = typing.get_type_hints(cls)
    nested = _nested(cls)
    top = {k: _coerce(k, v, hints[k]) for k, v in values.items() if "." not in k}
    cfg = cls(**top, profile=profile) if "profile" in hints else cls(**top)
    groups: dict[str, dict] = {}
    for k, v in values.items():
        if "." in k:
            r, sub = k.split(".", 1)
            groups.setdefault(r, {})[sub] = _coerce(k, v, typing.get_type_hints(nested[r])[sub])
    for r in nested:
        sub = {**groups.get(r, {})}
        if "seed" in typing.get_type_hints(nested[r]) and hasattr(cfg, "seed"):
            sub["seed"] = cfg.seed
        setattr(cfg, r, dataclasses.replace(getattr(cfg, r), **sub))
    return cfg


def _nested(cls) -> dict[str, type]:
    """The fields of ``cls`` that are themselves dataclasses (the nested recipes)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if dataclasses.is_dataclass(hints[f.name])}


def field_names(cls) -> list[str]:
    """Every key a config of ``cls`` accepts: its fields and ``recipe.field`` for each nested
    recipe."""
    out = []
    nested = _nested(cls)
    for f in dataclasses.fields(cls):
        if f.name in nested:
            out += [f"{f.name}.{g.name}" for g in dataclasses.fields(nested[f.name])]
        else:
            out.append(f.name)
    return out


def _normalise(cls, values: dict, what: str) -> dict[str, Any]:
    """Flatten nested-recipe dicts to dotted keys and check every key exists."""
    names = [f.name for f in dataclasses.fields(cls)]
    nested = _nested(cls)
    out: dict[str, Any] = {}
    for k, v in values.items():
        k = str(k).strip()
        if k in nested and (isinstance(v, dict) or dataclasses.is_dataclass(v)):
            items = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
            for sk, sv in items.items():
                out.update(_normalise(cls, {f"{k}.{sk}": sv}, what))
            continue
        if "." in k:
            r, sub = k.split(".", 1)
            if r not in nested:
                raise ReprolibError(f"unknown {what} key {k!r}: {r!r} is not a training recipe; "
                                    f"recipes: {', '.join(nested) or 'none'}")
            subs = [f.name for f in dataclasses.fields(nested[r])]
            if sub not in subs:
                raise ReprolibError(f"unknown {what} key {k!r}; valid keys of {r}: "
                                    f"{', '.join(subs)}")
        elif k in nested:
            raise ReprolibError(f"{what} key {k!r} is a training recipe: set one of its values "
                                f"({k}.epochs=..., {k}.lr=...)")
        elif k not in names:
            shown = [f"{n}.<key>" if n in nested else n for n in names]
            raise ReprolibError(f"unknown {what} key {k!r}; valid keys: {', '.join(shown)}")
        out[k] = v
    return out


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal when it is one (``3``, ``1e-3``, ``(0.2, 0.4)``,
    ``None``, ``True``), else the string itself.  Nothing is evaluated beyond literals."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "finetune.epochs=3"]`` -> ``{"a": 1, "finetune.epochs": 3}`` (``-p`` flags)."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ReprolibError(f"-p expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = parse_value(v.strip())
    return out


def _coerce(name: str, value, hint):
    """Convert ``value`` (possibly a command-line string) to the field type ``hint``."""
    if isinstance(value, str) and hint is not str:
        value = parse_value(value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a)
            except ReprolibError as e:
                errors.append(str(e))
        raise ReprolibError(errors[0] if errors else f"{name}={value!r} is not valid")
    tname = getattr(hint, "__name__", str(hint))
    bad = ReprolibError(f"{name}={value!r} is not a valid {tname}")
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise ReprolibError(f"{name}={value!r} must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    if hint is tuple or origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(value)
        return (value,)          # one value given for a tuple option: a one-element tuple
    if hint is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise bad
        return value
    return value


def config_dict(cfg) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (nested recipes as dicts, tuples as lists)."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def recipe_dict(tc: TrainConfig) -> dict[str, Any]:
    """A recipe as it enters a record key: every field that can change the result."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in config_dict(tc).items() if k not in NOT_HASHED
            and not (k in RECIPE_ADDED and v == defaults[k])}
