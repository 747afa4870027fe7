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

import ast
import dataclasses
import functools
import importlib
import inspect
import io as _io
import math
import pkgutil
import re
import tokenize
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from reprolib.errors import ReprolibError, choose

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "multistep", "constant")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


# --------------------------------------------------------------------------- value checks
# Each raises ReprolibError with a message that starts with the key: "lr=inf must be ...".


def check_number(key: str, value, lo=None, hi=None, *, lo_open=False, hi_open=False,
                 integer=False):
    """``value`` must be a finite number (an int when ``integer``; never a bool) within the
    bounds given (closed unless ``lo_open`` / ``hi_open``).  Returns it."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ReprolibError(f"{key}={value!r} must be {kind}")
    if not math.isfinite(value):
        raise ReprolibError(f"{key}={value!r} must be a finite number")
    bad = ((lo is not None and (value <= lo if lo_open else value < lo))
           or (hi is not None and (value >= hi if hi_open else value > hi)))
    if bad:
        if hi is None:
            need = f"{'>' if lo_open else '>='} {lo}"
        elif lo is None:
            need = f"{'<' if hi_open else '<='} {hi}"
        else:
            need = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ReprolibError(f"{key}={value!r} must be {need}")
    return value


def check_choice(key: str, value, valid) -> None:
    """``value`` must be one of ``valid``."""
    valid = list(valid)
    if value not in valid:
        raise ReprolibError(f"{key}={value!r} is not one of: {', '.join(map(str, valid))}")


def check_each(key: str, values, check, *, allow_empty: bool = False) -> None:
    """Run ``check(item_key, item)`` on every element of the tuple ``values`` (a whole grid is
    validated before its first run); ``item_key`` is ``key[i]``."""
    if not isinstance(values, (tuple, list)):
        raise ReprolibError(f"{key}={values!r} must be a tuple")
    if not values and not allow_empty:
        raise ReprolibError(f"{key}=() is empty; give at least one value")
    for i, v in enumerate(values):
        try:
            check(f"{key}[{i}]", v)
        except ReprolibError as e:
            raise ReprolibError(f"{key}={tuple(values)!r}: {e}") from None
    if len(set(map(repr, values))) != len(values):
        raise ReprolibError(f"{key}={tuple(values)!r} repeats a value")


def check_dataset_name(key: str, name) -> None:
    """``name`` must name a data set: a non-empty string, ``npz:`` followed by a path where it
    is a file.  Whether the name is known and the data there is checked with the stages that
    read it (``reprolib.data.check_dataset`` / ``prepare_data``): this package knows no data."""
    if not isinstance(name, str) or not name.strip():
        raise ReprolibError(f"{key}={name!r} must name a data set (reprolib list shows them)")
    if name.startswith("npz:") and not name[4:].strip():
        raise ReprolibError(f"{key}={name!r}: give the file after npz:, e.g. npz:data/x.npz")


def check_model(key: str, name) -> None:
    """``name`` must be a registered model (reprolib.list_models(); imports no torch)."""
    from reprolib.core.registry import check_model as _check

    _check(name, key)


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
        _typecheck(self)
        n = check_number
        n("epochs", self.epochs, 0, integer=True)
        n("batch_size", self.batch_size, 1, integer=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        n("lr", self.lr, 0)
        n("lr_ref_batch", self.lr_ref_batch, 0, integer=True)
        n("momentum", self.momentum, 0, 1)
        n("weight_decay", self.weight_decay, 0)
        check_choice("schedule", self.schedule, SCHEDULES)
        n("warmup_epochs", self.warmup_epochs, 0)
        n("warmup_start", self.warmup_start, 0, 1)
        n("min_lr", self.min_lr, 0)
        check_each("milestones", self.milestones,
                   lambda k, v: check_number(k, v, 1, integer=True), allow_empty=True)
        if list(self.milestones) != sorted(self.milestones):
            raise ReprolibError(f"milestones={self.milestones!r} must be in increasing order")
        n("step_size", self.step_size, 1, integer=True)
        n("lr_decay", self.lr_decay, 0, 1, lo_open=True)
        n("label_smoothing", self.label_smoothing, 0, 1, hi_open=True)
        n("mixup", self.mixup, 0)
        n("cutmix", self.cutmix, 0)
        if self.clip_grad is not None:
            n("clip_grad", self.clip_grad, 0, lo_open=True)
        n("seed", self.seed, 0, 2**63 - 1, integer=True)
        n("eval_every", self.eval_every, 1, integer=True)
        n("global_batch", self.global_batch, 0, integer=True)
        n("repeated_aug", self.repeated_aug, 0, integer=True)
        n("select_every", self.select_every, 0, integer=True)
        n("random_erasing", self.random_erasing, 0, 1)
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
    device: str = "auto"             # "auto" (cuda if available), "cpu", "cuda", "cuda:N" or "mps"

    def __post_init__(self):
        _typecheck(self)
        self.check()

    def check(self) -> None:
        """Range checks of the common fields; a paper config extends it (``super().check()``
        first) with its own values and grids.  Runs on construction and in ``get_config``."""
        check_dataset_name("dataset", self.dataset)
        if self.data_root is not None and not self.data_root.strip():
            raise ReprolibError("data_root='' is empty; leave it unset for data/")
        check_number("image_size", self.image_size, 1, integer=True)
        check_number("seed", self.seed, 0, 2**63 - 1, integer=True)
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps")
                or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ReprolibError(f"device={dev!r} is not one of: {', '.join(DEVICES)}")
        check_kwargs_keys(self)


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
        sub = {**groups.get(r, {})}
        if "seed" in _hints(nested[r]) and hasattr(cfg, "seed"):
            sub["seed"] = cfg.seed
        try:
            setattr(cfg, r, dataclasses.replace(getattr(cfg, r), **sub))
        except ReprolibError as e:       # name the key as typed: "finetune.epochs=-1 ..."
            raise ReprolibError(f"{r}.{e}") from None
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg


def with_overrides(cfg, overrides: dict, what: str = "override"):
    """A copy of the config ``cfg`` with ``overrides`` (field names or dotted recipe keys, as
    in presets) applied, types converted and every value checked; errors name ``what``."""
    cls = type(cfg)
    over = _normalise(cls, overrides, what)
    hints = _hints(cls)
    nested = _nested(cls)
    try:
        top = {k: _coerce(k, v, hints[k]) for k, v in over.items() if "." not in k}
        new = dataclasses.replace(cfg, **top)
        for k, v in over.items():
            if "." in k:
                r, sub = k.split(".", 1)
                v = _coerce(k, v, _hints(nested[r])[sub])
                try:
                    rec = dataclasses.replace(getattr(new, r), **{sub: v})
                except ReprolibError as e:
                    raise ReprolibError(f"{r}.{e}") from None
                new = dataclasses.replace(new, **{r: rec})
    except ReprolibError as e:
        raise ReprolibError(f"{what}: {e}") from None
    return new


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typecheck(obj) -> None:
    """Check (and normalise: int -> float, one value -> 1-tuple) the type of every field of
    the dataclass ``obj`` against its annotation; strings are not parsed here."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints[f.name]
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(hint):
            if not isinstance(v, hint):
                raise ReprolibError(f"{f.name} must be a {hint.__name__}, got {v!r}")
            continue
        setattr(obj, f.name, _coerce(f.name, v, hint, parse=False))


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


def _coerce(name: str, value, hint, parse: bool = True):
    """Convert ``value`` (a command-line string when ``parse``) to the field type ``hint``."""
    if parse and isinstance(value, str) and hint is not str:
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
                return _coerce(name, value, a, parse)
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
            return canonical(name, value)
        return (canonical(name, value),)    # one value for a tuple option: a 1-tuple
    if hint is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise bad
        return canonical(name, value)
    return value


def canonical(name: str, value):
    """The one form of a value inside a dict-typed field, whichever way it arrived: tuples for
    lists and tuples (JSON has no tuples), ``int`` keys for whole-number string keys (JSON has
    no int keys), and nothing but literals -- str, int, finite float, bool, None, tuples and
    dicts of them.  So ``-p 'model_kwargs={"depths": (1, 1, 1, 1)}'`` and the JSON the notebook
    receives give the same config."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and re.fullmatch(r"-?[0-9]+", k.strip()):
                k = int(k)
            elif isinstance(k, bool) or not isinstance(k, (str, int)):
                raise ReprolibError(f"{name}: key {k!r} must be a string or a whole number")
            out[k] = canonical(f"{name}[{k!r}]", v)
        return out
    if isinstance(value, (list, tuple)):
        return tuple(canonical(f"{name}[{i}]", v) for i, v in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise ReprolibError(f"{name}={value!r} must be a finite number")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ReprolibError(f"{name}={value!r} is not a literal (a string, number, bool, None, "
                        "tuple or dict of them)")


def json_safe(value, name: str = "value"):
    """``value`` as JSON data (tuples as lists; only str / int / finite float / bool / None /
    lists / dicts with string keys): the only form in which parameters reach a notebook.
    ``canonical`` (through :func:`get_config`) turns it back into the typed config."""
    if isinstance(value, dict):
        return {str(k): json_safe(v, f"{name}[{k!r}]") for k, v in value.items()
                if _json_key(k, name)}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ReprolibError(f"{name}={value!r} must be a finite number")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ReprolibError(f"{name}={value!r} is not a literal (a string, number, bool, None, "
                        "list or dict of them)")


def _json_key(k, name: str) -> bool:
    if isinstance(k, bool) or not isinstance(k, (str, int)):
        raise ReprolibError(f"{name}: key {k!r} must be a string or a whole number")
    return True


def kwargs_field(*of: str, reserved: tuple = ()) -> Any:
    """A dict field of builder keyword arguments for the models named by the config fields
    ``of`` (e.g. ``model_kwargs = kwargs_field("model", reserved=("num_classes",))``).

    Checked like every other key: its keys must be argument names, none of ``reserved`` (the
    pipeline sets those itself), its values literals (:func:`canonical`); and, before a run,
    every key must be an argument of each builder, of the right type
    (:func:`reprolib.registry.check_kwargs`, on the meta device)."""
    return field(default_factory=dict, metadata={"kwargs_of": tuple(of),
                                                 "reserved": tuple(reserved)})


def kwargs_fields(cls) -> dict[str, dict]:
    """``{field: {"kwargs_of": (...), "reserved": (...)}}`` of the builder-argument fields of
    the config class ``cls`` (:func:`kwargs_field`)."""
    return {f.name: dict(f.metadata) for f in dataclasses.fields(cls)
            if "kwargs_of" in f.metadata}


def check_kwargs_keys(cfg) -> None:
    """The cheap half of a builder-arguments check (no torch): argument names, not reserved."""
    for name, meta in kwargs_fields(type(cfg)).items():
        for k in getattr(cfg, name):
            if not (isinstance(k, str) and k.isidentifier()):
                raise ReprolibError(f"{name}: key {k!r} is not an argument name")
            if k in meta["reserved"]:
                raise ReprolibError(f"{name}: {k!r} is set by the pipeline itself (from the "
                                    f"data set / config); it cannot be given in {name}")


def check_builders(cfg) -> None:
    """Every builder-arguments field of ``cfg`` against the builders it is for: each key an
    argument of the builder, each value of its type, the model buildable (on the meta device;
    imports torch).  What ``reprolib run`` / ``compute`` check before any work."""
    from reprolib.core.registry import check_kwargs

    for name, meta in kwargs_fields(type(cfg)).items():
        kwargs = getattr(cfg, name)
        if not kwargs:
            continue
        for model_key in meta["kwargs_of"]:
            builder = getattr(cfg, model_key)
            if builder:
                check_kwargs(builder, kwargs, name, meta["reserved"])


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


# --------------------------------------------------------------------------- documentation


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The meaning of each field of the config dataclass ``cls`` (and of its bases): the
    comment after the field's definition with its continuation lines (comment lines indented
    past ``#``), or else the comment block just above the field."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        docs.update(_comments(src, {f.name for f in dataclasses.fields(klass)}))
    return docs


def _comments(src: str, names: set[str]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    above: list[str] = []
    current = None        # the field whose trailing comment may continue on the next lines
    depth = 0             # bracket depth: a field's definition may span lines
    line_start = True
    body_indent = None
    for tok in tokenize.generate_tokens(_io.StringIO(src).readline):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        if tok.type == tokenize.COMMENT:
            text = tok.string[1:]
            if line_start:                     # a comment on a line of its own
                if current and text.startswith("  ") and text.strip():
                    out[current].append(text.strip())
                else:
                    current = None
                    if text.strip() and not text.strip().startswith("-"):
                        above.append(text.strip())
            elif current:
                out[current].append(text.strip())
            continue
        if tok.type in (tokenize.NL, tokenize.NEWLINE):
            line_start = depth == 0 or line_start
            if tok.type == tokenize.NL and depth == 0 and tok.line.strip() == "":
                above = []
            continue
        if tok.type in (tokenize.INDENT, tokenize.DEDENT):
            continue
        if line_start and depth == 0 and tok.type == tokenize.NAME:
            if body_indent is None and tok.start[1] > 0:
                body_indent = tok.start[1]
            if tok.start[1] == body_indent and tok.string in names:
                current = tok.string
                out[current] = []
                if above:
                    out[current + "\0above"] = above
            else:
                current = None
            above = []
        line_start = False
    docs = {}
    for k, lines in out.items():
        if k.endswith("\0above"):
            continue
        docs[k] = " ".join(lines) or " ".join(out.get(k + "\0above", []))
    return docs


def _show(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_show(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_show(k)}: {_show(x)}" for k, x in v.items()) + "}"
    return repr(v) if isinstance(v, str) and v == "" else str(v)


def _type_name(hint) -> str:
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint))


def describe(paper: str, width: int = 100) -> str:
    """Every override key of ``paper``: its type, its value in each profile (one value where
    all profiles agree) and its meaning, taken from the config's field comments.  What
    ``reprolib list PAPER`` and ``reprolib run PAPER --help`` print."""
    import textwrap

    p = get_paper(paper)
    cls = p.config_cls
    cfgs = {prof: get_config(paper, prof) for prof in p.presets}
    docs, hints, nested = field_docs(cls), _hints(cls), _nested(cls)
    tdocs = field_docs(TrainConfig)
    rows = []   # (key, type, values, meaning)

    def values(get) -> str:
        vals = {prof: _show(get(c)) for prof, c in cfgs.items()}
        if len(set(vals.values())) == 1:
            return next(iter(vals.values()))
        groups: dict[str, list[str]] = {}
        for prof, v in vals.items():
            groups.setdefault(v, []).append(prof)
        return " · ".join(f"{'/'.join(ps)} {v}" for v, ps in groups.items())

    for f in dataclasses.fields(cls):
        if f.name == "profile":
            continue
        if f.name in nested:
            rows.append((f"{f.name}.*", "recipe", "", docs.get(f.name, "") +
                         " (a training recipe: set its values with the keys below)"))
            for g in dataclasses.fields(nested[f.name]):
                if g.name == "seed":
                    continue
                rows.append((f"{f.name}.{g.name}", _type_name(_hints(nested[f.name])[g.name]),
                             values(lambda c, r=f.name, k=g.name: getattr(getattr(c, r), k)),
                             tdocs.get(g.name, "")))
            continue
        rows.append((f.name, _type_name(hints[f.name]),
                     values(lambda c, k=f.name: getattr(c, k)), docs.get(f.name, "")))
    kw = max(len(r[0]) for r in rows) + 2
    head = [f"{paper}: {p.title}",
            f"profiles: {', '.join(p.presets)} (--profile NAME; default smoke)",
            "override keys (-p KEY=VALUE, repeatable; a tuple key takes one value or a tuple, "
            "e.g. -p \"widths=(0.5, 1.0)\"): type, value per profile (one value where all "
            "agree), meaning.  A recipe's seed follows `seed`.", ""]
    lines = []
    for key, typ, val, doc in rows:
        lines.append(f"  {key:<{kw}}{typ}" + (f"   {val}" if val else ""))
        if doc:
            lines += textwrap.wrap(doc, width, initial_indent=" " * (kw + 4),
                                   subsequent_indent=" " * (kw + 4))
    return "\n".join(head + lines)
