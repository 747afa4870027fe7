"""Hyperparameter profiles: one typed config dataclass per paper with named presets.

Each module in this package describes one notebook ("paper"): its config dataclass (a
comment per field) and its presets, at least ``smoke`` (CPU minutes on embedded data), a
short single-GPU profile and, for the five papers, ``paper`` (the paper's own settings).

    cfg = reprolib.configs.get_config("templates", "smoke", epochs=3)

An unknown paper, profile or override key raises ``ReprolibError`` naming the valid ones.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
import typing
from dataclasses import dataclass, field
from typing import Any

from reprolib.errors import ReprolibError, choose


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
    seed: int = 0                    # seeds weights, data order and augmentation
    device: str = "auto"             # "auto" (cuda if available), "cpu" or "cuda"


def register_paper(name: str, title: str, config_cls: type, presets: dict[str, dict]) -> Paper:
    """Register a notebook's config class and its named presets (``smoke`` is required)."""
    if "smoke" not in presets:
        raise ValueError(f"paper {name!r} needs a 'smoke' preset")
    for prof, values in presets.items():
        _check_keys(config_cls, values, f"preset {name}/{prof}")
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


def get_config(paper: str, profile: str = "smoke", **overrides):
    """The config of ``paper`` at ``profile`` with single values overridden.

    Override values may be strings (from the command line); they are converted to the
    field's type.  ``None`` values are ignored (a notebook parameter left unset).
    """
    p = get_paper(paper)
    if profile not in p.presets:
        raise ReprolibError(f"unknown profile {profile!r} for {paper}; valid profiles: "
                            f"{', '.join(p.presets)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    _check_keys(p.config_cls, overrides, f"override for {paper}")
    overrides.pop("profile", None)
    values = {**p.presets[profile], **overrides}
    hints = typing.get_type_hints(p.config_cls)
    values = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
    return p.config_cls(**values, profile=profile)


def _check_keys(cls, values: dict, what: str) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    for k in values:
        if k not in names:
            raise ReprolibError(f"unknown {what}: {k!r}; valid keys: {', '.join(names)}")


def _coerce(name: str, value, hint):
    """Convert ``value`` (possibly a command-line string) to the field type ``hint``."""
    if isinstance(value, str) and hint is not str:
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # keep the string: e.g. a dataset name for a ``str | None`` field
    origin = typing.get_origin(hint)
    try:
        if hint is bool and not isinstance(value, bool):
            raise TypeError
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if origin is tuple and isinstance(value, (list, tuple)):
            return tuple(value)
        if origin is list and isinstance(value, (list, tuple)):
            return list(value)
        if hint in (int, float, str) and not isinstance(value, hint):
            raise TypeError
    except TypeError:
        raise ReprolibError(f"{name}={value!r} is not a valid {getattr(hint, '__name__', hint)}")
    return value


def config_dict(cfg) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
