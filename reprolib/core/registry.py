"""Model registry: every model in reprolib is registered by name and built by one factory.

Model modules decorate their builder functions with ``@register_model``; users call
``reprolib.create_model(name, **kwargs)`` and ``reprolib.list_models()``.  Tiny variants
(``*_tiny``) and test models (a name with a ``test`` part: ``test_*``, ``*_test``,
``*_test_*``; :func:`is_test_model`) are registered next to the full-size ones for tests and
the ``smoke`` profile; where choices are offered (``reprolib list``, the error naming the
valid models) the test models are left out unless asked for (``reprolib list --all``,
``list_models(include_test=True)``), while every name stays valid.

Nothing is listed by hand: :func:`reprolib.core.plugins.declared` reads the decorators from
the package's source, so listing and validating model names imports nothing (no torch), and
:func:`create_model` imports only the module that defines the model asked for.  A model
registered at run time (``register_model(fn)`` in a notebook or a test) joins them.
"""

from __future__ import annotations

import fnmatch
import importlib
from typing import TYPE_CHECKING, Callable

from reprolib.core.plugins import declared
from reprolib.errors import ReprolibError

if TYPE_CHECKING:
    import torch.nn as nn

_MODELS: dict[str, Callable[..., "nn.Module"]] = {}
_PAPER_OF: dict[str, str] = {}
_KWARGS_TO: dict[str, Callable] = {}


def _declared() -> dict[str, str]:
    """name -> paper of every model the package's modules declare."""
    return {k: d.paper for k, d in declared("register_model").items()}


def register_model(fn: Callable[..., "nn.Module"] | None = None, *, name: str | None = None,
                   paper: str = "", kwargs_to: Callable | None = None):
    """Register ``fn`` (a function returning an ``nn.Module``) under ``name`` (default: its name).

    ``paper`` names the paper whose notebook uses the model ("" for general models).
    ``kwargs_to``: the function a builder's ``**kw`` are passed on to, when that is another
    builder rather than the class of the model it returns (:func:`builder_arguments`).
    """

    def deco(f: Callable[..., "nn.Module"]) -> Callable[..., "nn.Module"]:
        key = name or f.__name__
        if key in _MODELS and _MODELS[key] is not f:
            raise ValueError(f"model {key!r} is registered twice")
        _MODELS[key] = f
        _PAPER_OF[key] = paper
        if kwargs_to is not None:
            _KWARGS_TO[key] = kwargs_to
        return f

    return deco(fn) if fn is not None else deco


def is_test_model(name: str) -> bool:
    """Whether ``name`` is a test model: one of its ``_``-separated parts is ``test``
    (``test_metaformer``, ``swin_tiny_test``, ``vit_test_unshared``)."""
    return "test" in name.split("_")


def list_models(pattern: str = "*", paper: str | None = None,
                include_test: bool = True) -> list[str]:
    """Sorted names of the registered models matching a glob ``pattern`` (and ``paper``);
    ``include_test=False`` leaves out the test models (:func:`is_test_model`), as the
    choices offered to a user do.

    Reads the declarations in the source and what has been registered so far: imports
    nothing."""
    known = {**_declared(), **_PAPER_OF}
    return sorted(k for k, p in known.items()
                  if fnmatch.fnmatch(k, pattern) and (paper is None or p == paper)
                  and (include_test or not is_test_model(k)))


def valid_models_text() -> str:
    """The model choices an error offers: every model but the test ones, and how many of
    those there are besides."""
    shown = list_models(include_test=False)
    hidden = len(list_models()) - len(shown)
    return ", ".join(shown) + (f" (and {hidden} test models: reprolib list --all)"
                               if hidden else "")


def check_model(name, key: str = "model") -> str:
    """Raise ``ReprolibError`` (naming ``key`` and the valid models, test models left out)
    unless ``name`` is a registered model (test models included); imports nothing."""
    if not isinstance(name, str) or name not in list_models():
        raise ReprolibError(f"{key}={name!r} is not a registered model; valid models: "
                            f"{valid_models_text()}")
    return name


def create_model(name: str, **kwargs) -> "nn.Module":
    """Build the registered model ``name``; keyword arguments go to its builder.

    The model remembers how it was built (``model.reprolib_spec``: builder name and keyword
    arguments as JSON data), which is what ``reprolib.save_compressed`` writes.
    """
    _load(name)
    if name not in _MODELS:
        raise ReprolibError(f"unknown model {name!r}; valid models: {valid_models_text()}")
    model = _MODELS[name](**kwargs)
    if getattr(model, "reprolib_spec", None) is None:
        set_spec(model, name, kwargs)
    return model


def builder_arguments(name: str) -> dict[str, "inspect.Parameter"]:
    """The keyword arguments ``create_model(name, ...)`` accepts: the builder's own and, where
    it passes ``**kw`` on, those of the class it builds (found by building the default model
    on the meta device: nothing is allocated)."""
    import inspect

    import torch

    fn = builder(name)
    params = inspect.signature(fn).parameters
    out = {k: p for k, p in params.items()
           if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        target = _KWARGS_TO.get(name)
        if target is None:
            try:
                from reprolib.core.device import on_meta

                with on_meta():
                    target = type(fn()).__init__
            except Exception:  # noqa: BLE001 - a builder that needs arguments: its own only
                target = None
        if target is not None:
            for k, p in inspect.signature(target).parameters.items():
                if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    out.setdefault(k, p)
    return out


def check_kwargs(name: str, kwargs: dict, key: str = "model_kwargs",
                 reserved: tuple = ()) -> None:
    """``kwargs`` must be keyword arguments of model ``name``'s builder (or of the class it
    passes them on to), each of its default's type, and the model must build with them (on
    the meta device: a wrong combination fails here, before any run).  ``reserved``: arguments
    the caller sets itself (not offered as valid).  Raises ``ReprolibError`` naming ``key``,
    the bad argument and the valid ones."""
    import torch

    known = {k: p for k, p in builder_arguments(name).items() if k not in reserved}
    for k, v in kwargs.items():
        if k not in known:
            raise ReprolibError(f"{key}: {k!r} is not an argument of model {name!r}; valid: "
                                f"{', '.join(sorted(known))}")
        want = _expected_type(known[k])
        if want is not None and not _same_kind(v, want):
            kind = {int: "an integer", float: "a number", bool: "a bool", str: "a string",
                    tuple: "a tuple"}[want]
            default = known[k].default
            said = (f"the default of {name!r} is {default!r}" if default is not known[k].empty
                    else f"{name!r} declares {known[k].annotation}")
            raise ReprolibError(f"{key}: {k}={v!r} must be {kind} ({said})")
    try:
        from reprolib.core.device import on_meta

        with on_meta():
            create_model(name, **kwargs)
    except ReprolibError as e:
        raise ReprolibError(f"{key}={kwargs!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any builder failure is the same bad input
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ReprolibError(f"{key}={kwargs!r}: model {name!r} cannot be built with these "
                            f"arguments ({type(e).__name__}{': ' + msg if msg else ''})") from None


_ANNOTATED = {"int": int, "float": float, "bool": bool, "str": str, "tuple": tuple,
              "list": tuple, "Sequence": tuple, "Tuple": tuple, "List": tuple}


def _expected_type(param) -> type | None:
    """The literal type an argument takes: its default's, else its annotation's (``int``,
    ``float``, ``bool``, ``str``, or a sequence: tuple); None when neither says."""
    default, ann = param.default, param.annotation
    if ann is param.empty:
        if default is param.empty or default is None:
            return None
        kind = tuple if isinstance(default, (tuple, list)) else type(default)
        # an unannotated string default ("pooling") may stand for a name or a spec of any type
        return kind if kind in (int, float, bool, tuple) else None
    text = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    if "|" in text or "Optional" in text or "Union" in text:
        return None
    return _ANNOTATED.get(text.split("[", 1)[0].rsplit(".", 1)[-1])


def _same_kind(value, want: type) -> bool:
    """``value`` fits an argument whose default is of type ``want`` (ints for floats, any
    sequence for a sequence)."""
    if want is bool:
        return isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is tuple:
        return isinstance(value, (tuple, list))
    return isinstance(value, want)


def set_spec(model: "nn.Module", builder: str, kwargs: dict, arch: list | None = None) -> "nn.Module":
    """Record on ``model`` that ``create_model(builder, **kwargs)`` (then the ``arch`` steps
    of ``reprolib.compressed``) rebuilds its architecture."""
    from reprolib.core.io import to_strict_json

    model.reprolib_spec = {"builder": builder, "kwargs": to_strict_json(dict(kwargs)),
                           "arch": list(arch or [])}
    return model


def builder(name: str) -> Callable[..., "nn.Module"]:
    """The builder function of model ``name`` (its module imported); a ReprolibError naming
    the valid models when there is none."""
    _load(name)
    if name not in _MODELS:
        raise ReprolibError(f"unknown model {name!r}; valid models: {valid_models_text()}")
    return _MODELS[name]


def load_all() -> None:
    """Import every module that declares a model (what a full listing of builders needs)."""
    for name in declared("register_model"):
        _load(name)


def _load(name: str) -> None:
    """Import the module that declares model ``name`` (its decorator registers it)."""
    if name not in _MODELS and name in declared("register_model"):
        importlib.import_module(declared("register_model")[name].module)
