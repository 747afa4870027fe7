"""Model registry: every model in reprolib is registered by name and built by one factory.

Paper modules decorate their builder functions with ``@register_model``; users call
``reprolib.create_model(name, **kwargs)`` and ``reprolib.list_models()``.  Tiny variants
(``test_*`` or ``*_tiny``) are registered next to the full-size ones for tests and the
``smoke`` profile.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

import torch.nn as nn

from reprolib.errors import ReprolibError

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_PAPER_OF: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None,
                   paper: str = ""):
    """Register ``fn`` (a function returning an ``nn.Module``) under ``name`` (default: its name).

    ``paper`` names the paper whose notebook uses the model ("" for general models).
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _MODELS and _MODELS[key] is not f:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = f
        _PAPER_OF[key] = paper
        return f

    return deco(fn) if fn is not None else deco


def list_models(pattern: str = "*", paper: str | None = None) -> list[str]:
    """Sorted names of the registered models matching a glob ``pattern`` (and ``paper``)."""
    _ensure_loaded()
    return sorted(k for k in _MODELS
                  if fnmatch.fnmatch(k, pattern) and (paper is None or _PAPER_OF[k] == paper))


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name``; keyword arguments go to its builder.

    The model remembers how it was built (``model.reprolib_spec``: builder name and keyword
    arguments as JSON data), which is what ``reprolib.save_compressed`` writes.
    """
    _ensure_loaded()
    if name not in _MODELS:
        raise ReprolibError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    model = _MODELS[name](**kwargs)
    if getattr(model, "reprolib_spec", None) is None:
        set_spec(model, name, kwargs)
    return model


def set_spec(model: nn.Module, builder: str, kwargs: dict, arch: list | None = None) -> nn.Module:
    """Record on ``model`` that ``create_model(builder, **kwargs)`` (then the ``arch`` steps
    of ``reprolib.compressed``) rebuilds its architecture."""
    from reprolib.io import to_strict_json

    model.reprolib_spec = {"builder": builder, "kwargs": to_strict_json(dict(kwargs)),
                           "arch": list(arch or [])}
    return model


def _ensure_loaded() -> None:
    # Importing reprolib.models imports every model module, which registers its models; a
    # method that produces architectures (the templates' width rules) registers its builders
    # from its own module, so every method module is imported too.
    import importlib
    import pkgutil

    import reprolib.methods
    import reprolib.models  # noqa: F401

    for m in pkgutil.iter_modules(reprolib.methods.__path__):
        importlib.import_module(f"reprolib.methods.{m.name}")
