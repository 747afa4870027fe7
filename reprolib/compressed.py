"""One on-disk format for every compressed model: ``<stem>.json`` + ``<stem>.safetensors``.

The JSON holds the architecture as data: the registered builder and its keyword arguments
(``reprolib.create_model(builder, **kwargs)`` builds the unmodified skeleton), then the
``arch`` steps that turn the skeleton into the compressed model, in order, each
``{"kind": ..., <data>}``: per-layer widths and kept indices of a pruned model, the ranks of a
decomposed one, ...  The safetensors file holds the weights (tied weights stored once and
re-tied on load).  Loading never unpickles anything.

    small = sidt.prune(model, 0.4)
    reprolib.save_compressed(small, "runs/swin_p40")      # swin_p40.json + swin_p40.safetensors
    small = reprolib.load_compressed("runs/swin_p40")

A method that changes an architecture registers how to redo its step on a fresh skeleton
(:func:`register_arch`) and records the step on the model it returns (:func:`add_arch`).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from pathlib import Path
from typing import Callable

import torch.nn as nn

from reprolib import io, paths
from reprolib.errors import ReprolibError

FORMAT = "reprolib-compressed/1"
_MISMATCH = (r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[(.*?)\]\) "
             r"from checkpoint, the shape in current model is torch\.Size\(\[(.*?)\]\)")
_APPLIERS: dict[str, Callable[[nn.Module, dict], nn.Module]] = {}


def register_arch(kind: str):
    """Register ``fn(model, step) -> model`` that redoes an ``arch`` step of ``kind`` on a
    model (shapes only: the weights are loaded afterwards)."""

    def deco(fn):
        _APPLIERS[kind] = fn
        return fn

    return deco


@register_arch("lowrank")
def _lowrank(model: nn.Module, step: dict) -> nn.Module:
    """Decomposed layers (``reprolib.methods.decompose``): ``{"ranks": {layer: rank}}``."""
    from reprolib.models.layers.lowrank import apply_ranks

    return apply_ranks(model, step["ranks"])


def spec_of(model: nn.Module) -> dict:
    """How ``model`` is rebuilt: ``{"builder", "kwargs", "arch"}`` (a copy)."""
    spec = getattr(model, "reprolib_spec", None)
    if spec is None:
        raise ReprolibError(f"this {type(model).__name__} was not built by reprolib.create_model, "
                            "so its architecture cannot be saved as data; build it with "
                            "create_model(name, ...)")
    return {"builder": spec["builder"], "kwargs": dict(spec["kwargs"]),
            "arch": [dict(s) for s in spec.get("arch", [])]}


def add_arch(model: nn.Module, kind: str, replace: bool = False, **data) -> nn.Module:
    """Append the step ``{"kind": kind, **data}`` to ``model``'s spec (``replace``: drop
    earlier steps of the same kind first).  Returns ``model``."""
    spec = spec_of(model)
    steps = [s for s in spec["arch"] if not (replace and s["kind"] == kind)]
    steps.append(io.to_strict_json({"kind": kind, **data}))
    model.reprolib_spec = {**spec, "arch": steps}
    return model


def _stems(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".safetensors")


def _ensure_methods() -> None:
    import reprolib.methods as m

    for mod in pkgutil.iter_modules(m.__path__):
        importlib.import_module(f"reprolib.methods.{mod.name}")


def build(spec: dict) -> nn.Module:
    """The (untrained) model a spec describes: the builder's skeleton, then every arch step."""
    from reprolib.registry import create_model

    _ensure_methods()
    model = create_model(spec["builder"], **spec.get("kwargs", {}))
    for step in spec.get("arch", []):
        kind = step.get("kind")
        if kind not in _APPLIERS:
            raise ReprolibError(f"unknown architecture step {kind!r}; valid: "
                                f"{', '.join(sorted(_APPLIERS))}")
        model = _APPLIERS[kind](model, step)
    model.reprolib_spec = {"builder": spec["builder"], "kwargs": dict(spec.get("kwargs", {})),
                           "arch": [dict(s) for s in spec.get("arch", [])]}
    return model


def save_compressed(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as ``<path>.json`` (architecture) + ``<path>.safetensors`` (weights).

    ``path`` is the file stem (a ``.json`` / ``.safetensors`` suffix is dropped); parent
    folders are created; both files are written atomically, the JSON last.  Returns the JSON
    path.
    """
    from safetensors.torch import save_model

    js, st = _stems(path)
    spec = spec_of(model)
    n = sum(p.numel() for p in model.parameters())
    io.atomic_write(st, lambda tmp: save_model(model, str(tmp), metadata={"format": FORMAT}))
    io.write_json({"format": FORMAT, **spec, "params": n, "weights": st.name}, js)
    return js


def load_compressed(path: str | os.PathLike, map_location: str = "cpu") -> nn.Module:
    """Rebuild a model written by :func:`save_compressed` (any method's compressed model).

    A missing, corrupt, truncated or mismatched file is one ``ReprolibError`` naming the file
    and what is wrong.
    """
    from safetensors.torch import load_model

    js, st = _stems(path)
    spec = io.load_json(js, "compressed-model file")
    if not isinstance(spec, dict) or spec.get("format") != FORMAT or "builder" not in spec:
        raise ReprolibError(f"compressed-model file {paths.rel(js)} is not a {FORMAT} file")
    if not st.exists():
        raise ReprolibError(f"compressed-model weights {paths.rel(st)} do not exist")
    try:
        model = build(spec)
    except (ReprolibError, KeyError, TypeError, ValueError) as e:
        raise ReprolibError(f"compressed-model file {paths.rel(js)} does not describe a "
                            f"buildable model: {e}") from None
    try:
        missing, unexpected = load_model(model, str(st), strict=False, device=map_location)
    except Exception as e:  # noqa: BLE001 - corrupt file, shape mismatch: one message
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        sized = [re.match(_MISMATCH, ln) for ln in lines]
        sized = [m for m in sized if m]
        if sized:
            name, saved, built = sized[0].groups()
            first = (f"layer {name.rsplit('.', 1)[0]} ({name}): the weights hold shape "
                     f"({saved}), the architecture in the JSON gives ({built})"
                     + (f", and {len(sized) - 1} more" if len(sized) > 1 else ""))
        else:
            first = (lines[0] if lines else type(e).__name__)[:300]
        raise ReprolibError(f"compressed-model weights {paths.rel(st)} do not fit the "
                            f"architecture of {paths.rel(js)}: {first}") from None
    if missing or unexpected:
        raise ReprolibError(f"compressed-model weights {paths.rel(st)} do not fit the "
                            f"architecture of {paths.rel(js)}: missing {sorted(missing)[:5]}, "
                            f"unexpected {sorted(unexpected)[:5]}")
    return model
