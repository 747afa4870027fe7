"""Model registry: every model in reprolib is registered by name and built by one factory.

Paper modules decorate their builder functions with ``@register_model``; users call
``reprolib.create_model(name, **kwargs)`` and ``reprolib.list_models()``.  Tiny variants
(``test_*`` or ``*_tiny``) are registered next to the full-size ones for tests and the
``smoke`` profile.

:data:`BUILTIN_MODELS` names every model reprolib itself registers (and the paper that uses
it), so that listing and validating model names needs no torch; a unit test checks it against
what the modules register.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Callable

from reprolib.errors import ReprolibError

if TYPE_CHECKING:
    import torch.nn as nn

_MODELS: dict[str, Callable[..., "nn.Module"]] = {}
_PAPER_OF: dict[str, str] = {}

#: name -> paper ("" = general) of every model registered by reprolib's own modules.
BUILTIN_MODELS: dict[str, str] = {
    "small_cnn": "", "test_small_cnn": "",
    **dict.fromkeys(("swin_t", "swin_cifar", "swin_tiny_test", "swin_transformer",
                     "cascade_mask_rcnn_swin", "cascade_mask_rcnn_swin_t",
                     "cascade_mask_rcnn_swin_tiny"), "sidt"),
    **dict.fromkeys(("vit_pe_small", "vit_small", "vit_pe_cifar", "vit_cifar_unshared",
                     "vit_pe_test", "vit_test_unshared", "resnet50_pe", "resnet50",
                     "resnet50_pe_cifar", "resnet50_cifar_unshared", "resnet_pe_test",
                     "resnet_test_unshared"), "pe"),
    **dict.fromkeys(("vit_cifar", "vit_cifar_small", "vit_cifar_small_d2", "vit_cifar_text",
                     "test_vit_cifar"),
                    "vtp_svd"),
    **dict.fromkeys(("metaformer_s12", "metaformer_tiny", "test_metaformer"), "metaformer_nas"),
    **dict.fromkeys(("vgg19_cifar", "resnet50_cifar", "googlenet_cifar", "mobilenet_cifar",
                     "vgg19_cifar_tiny", "resnet50_cifar_tiny", "googlenet_cifar_tiny",
                     "mobilenet_cifar_tiny"), "templates"),
}


def register_model(fn: Callable[..., "nn.Module"] | None = None, *, name: str | None = None,
                   paper: str = ""):
    """Register ``fn`` (a function returning an ``nn.Module``) under ``name`` (default: its name).

    ``paper`` names the paper whose notebook uses the model ("" for general models).
    """

    def deco(f: Callable[..., "nn.Module"]) -> Callable[..., "nn.Module"]:
        key = name or f.__name__
        if key in _MODELS and _MODELS[key] is not f:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = f
        _PAPER_OF[key] = paper
        return f

    return deco(fn) if fn is not None else deco


def list_models(pattern: str = "*", paper: str | None = None) -> list[str]:
    """Sorted names of the registered models matching a glob ``pattern`` (and ``paper``).

    Reads :data:`BUILTIN_MODELS` and what has been registered so far: imports nothing."""
    known = {**BUILTIN_MODELS, **_PAPER_OF}
    return sorted(k for k, p in known.items()
                  if fnmatch.fnmatch(k, pattern) and (paper is None or p == paper))


def check_model(name, key: str = "model") -> str:
    """Raise ``ReprolibError`` (naming ``key`` and the valid models) unless ``name`` is a
    registered model; imports nothing."""
    valid = list_models()
    if not isinstance(name, str) or name not in valid:
        raise ReprolibError(f"{key}={name!r} is not a registered model; valid models: "
                            f"{', '.join(valid)}")
    return name


def create_model(name: str, **kwargs) -> "nn.Module":
    """Build the registered model ``name``; keyword arguments go to its builder.

    The model remembers how it was built (``model.reprolib_spec``: builder name and keyword
    arguments as JSON data), which is what ``reprolib.save_compressed`` writes.
    """
    if name not in _MODELS:
        _ensure_loaded()
    if name not in _MODELS:
        raise ReprolibError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    model = _MODELS[name](**kwargs)
    if getattr(model, "reprolib_spec", None) is None:
        set_spec(model, name, kwargs)
    return model


def set_spec(model: "nn.Module", builder: str, kwargs: dict, arch: list | None = None) -> "nn.Module":
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
