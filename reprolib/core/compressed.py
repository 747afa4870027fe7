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
import re
from pathlib import Path
from typing import Callable

import torch.nn as nn

from reprolib import paths
from reprolib.core import io
from reprolib.core.device import on_meta
from reprolib.core.plugins import declared
from reprolib.errors import ReprolibError

FORMAT = "reprolib-compressed/1"
_MISMATCH = (r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[(.*?)\]\) "
             r"from checkpoint, the shape in current model is torch\.Size\(\[(.*?)\]\)")
_APPLIERS: dict[str, Callable[[nn.Module, dict], nn.Module]] = {}
#: The most parameters a compressed-model file may build: its skeleton is counted on the meta
#: device first (nothing allocated), and one above this, or above the memory available, is
#: refused before it is built.
MAX_PARAMS = 2_000_000_000
#: safetensors' dtype names of the torch dtypes a state dict holds.
_ST_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
              "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
              "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
              "complex64": "C64", "uint16": "U16", "uint32": "U32", "uint64": "U64"}


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

    if "ranks" not in step:
        raise ReprolibError('the "lowrank" step has no "ranks" ({layer name: rank})')
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


def _kinds() -> list[str]:
    """Every architecture-step kind the package declares (``@register_arch``, read from the
    source: :func:`reprolib.core.plugins.declared`) or registered at run time."""
    return sorted({*_APPLIERS, *declared("register_arch")})


def _applier(kind) -> Callable[[nn.Module, dict], nn.Module]:
    """The function that redoes step ``kind``: its module imported on first use (only the
    package's own modules, from the source index; never a name read from the file)."""
    where = declared("register_arch").get(kind) if isinstance(kind, str) else None
    if kind not in _APPLIERS and where is not None:
        importlib.import_module(where.module)
    if kind not in _APPLIERS:
        raise ReprolibError(f"unknown architecture step {kind!r}; valid: {', '.join(_kinds())}")
    return _APPLIERS[kind]


def _check_spec(spec: dict) -> None:
    """The spec's fields have the types the format gives them (a ReprolibError naming the
    field otherwise): ``builder`` a name, ``kwargs`` an object, ``arch`` a list of objects
    each with a ``kind``."""
    if not isinstance(spec.get("builder"), str):
        raise ReprolibError(f'its "builder" must be a registered model name, got '
                            f'{spec.get("builder")!r}')
    if not isinstance(spec.get("kwargs", {}), dict):
        kw = spec["kwargs"]
        raise ReprolibError(f'its "kwargs" must be an object of the builder\'s keyword '
                            f"arguments, got {type(kw).__name__} {kw!r:.60}")
    arch = spec.get("arch", [])
    if not isinstance(arch, list):
        raise ReprolibError(f'its "arch" must be a list of steps [{{"kind": ...}}, ...], got '
                            f'{type(arch).__name__} {arch!r:.60}')
    for i, step in enumerate(arch):
        if not isinstance(step, dict):
            raise ReprolibError(f'its arch[{i}] must be an object {{"kind": ..., <data>}}, got '
                                f'{type(step).__name__} {step!r:.60}')
        if "kind" not in step:
            raise ReprolibError(f'its arch[{i}] has no "kind"; valid kinds: '
                                f'{", ".join(_kinds())}')


#: The value types of builder arguments checked from their annotation or default, and how
#: a wrong one is named.
_ARG_TYPES = {"int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
              "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                        "a number"),
              "bool": (lambda v: isinstance(v, bool), "true or false"),
              "str": (lambda v: isinstance(v, str), "a string")}


def _check_kwargs(builder: str, kwargs: dict) -> None:
    """A keyword argument the builder declares as int / float / bool / str (annotation or
    default) holds a value of that type: ``num_classes=1e9`` (a float) is refused."""
    import inspect

    from reprolib.core.registry import _MODELS

    params = inspect.signature(_MODELS[builder]).parameters
    for name, value in kwargs.items():
        p = params.get(name)
        if value is None or p is None or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation,
                                                                          "__name__", "")
        want = ann      # declared types only: an unannotated "pooling" may also take a dict
        if want in _ARG_TYPES and not _ARG_TYPES[want][0](value):
            raise ReprolibError(f"kwargs {name}={value!r} must be {_ARG_TYPES[want][1]} "
                                f"({builder}'s argument {name}: {want})")


def _check_params(builder: str, kwargs: dict) -> None:
    """Build the skeleton on the meta device (no memory) and refuse it when its parameters
    exceed ``MAX_PARAMS`` or the memory available.  A builder that cannot run on the meta
    device is left to the real build."""
    import torch

    from reprolib.data import available_memory
    from reprolib.core.registry import create_model

    try:
        with on_meta():
            skeleton = create_model(builder, **kwargs)
    except (ReprolibError, TypeError, ValueError) as e:   # bad arguments: said now
        raise ReprolibError(f"{builder}(**{kwargs}) cannot be built: {e}") from None
    except Exception:  # noqa: BLE001 - e.g. an op without a meta kernel: counted when built
        return
    params = list(skeleton.parameters())
    n = sum(p.numel() for p in params)
    nbytes = sum(p.numel() * p.element_size() for p in params)
    if n > MAX_PARAMS:
        raise ReprolibError(f"{builder} with kwargs {kwargs} has {n:,} parameters, more than "
                            f"the {int(MAX_PARAMS):,} a compressed-model file may build "
                            "(reprolib.compressed.MAX_PARAMS)")
    avail = available_memory()
    if nbytes > avail:
        raise ReprolibError(f"{builder} with kwargs {kwargs} has {n:,} parameters "
                            f"({nbytes / 2**30:.1f} GiB), more than the "
                            f"{avail / 2**30:.1f} GiB of memory available")


def build(spec: dict) -> nn.Module:
    """The (untrained) model a spec describes: the builder's skeleton, then every arch step.

    Checked before anything is allocated: the spec's fields and types, the builder's
    keyword arguments (an int is an int) and the skeleton's size, counted on the meta
    device (at most ``MAX_PARAMS`` parameters, and no more than the memory available)."""
    from reprolib.core.registry import builder as builder_of, create_model

    if not isinstance(spec, dict):
        raise ReprolibError(f"a spec must be an object, got {type(spec).__name__}")
    _check_spec(spec)
    builder, kwargs = spec["builder"], dict(spec.get("kwargs", {}))
    builder_of(builder)                     # unknown: one error naming the valid models
    _check_kwargs(builder, kwargs)
    _check_params(builder, kwargs)
    model = create_model(builder, **kwargs)
    for step in spec.get("arch", []):
        model = _applier(step.get("kind"))(model, step)
    model.reprolib_spec = {"builder": builder, "kwargs": kwargs,
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


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def _header_mismatch(model: nn.Module, st: Path) -> str | None:
    """The first tensor of the safetensors file ``st`` whose dtype or shape differs from
    ``model``'s state dict (read from the file's header, no weight loaded), as a sentence;
    None when all agree or the header cannot be read (``load_model`` then says why).  A
    dtype retyped in the header (F32 -> I32) would otherwise load as garbage weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(st), framework="pt") as f:
            saved = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape()))
                     for k in f.keys()}
    except Exception:  # noqa: BLE001 - corrupt or truncated: reported by load_model
        return None
    bad = []
    for name, t in model.state_dict().items():
        if name not in saved:
            continue
        dtype, shape = saved[name]
        want = _ST_DTYPES.get(str(t.dtype).removeprefix("torch."), str(t.dtype))
        if tuple(t.shape) != shape:
            bad.append(f"layer {name.rsplit('.', 1)[0]} ({name}): the weights hold shape "
                       f"({', '.join(map(str, shape))}), the architecture in the JSON gives "
                       f"({', '.join(map(str, t.shape))})")
        elif dtype != want:
            bad.append(f"tensor {name} is stored as {dtype}, the model's is {want} (a "
                       "retyped header: its bytes would load as garbage weights)")
    if not bad:
        return None
    return bad[0] + (f", and {len(bad) - 1} more" if len(bad) > 1 else "")


def load_compressed(path: str | os.PathLike, map_location: str = "cpu") -> nn.Module:
    """Rebuild a model written by :func:`save_compressed` (any method's compressed model).

    A missing, corrupt, truncated or mismatched file is one ``ReprolibError`` naming the file
    and what is wrong: a malformed spec, bad builder arguments or ranks, a model too large to
    build (:func:`build`), weights whose dtype or shape differ from the model's (read from
    the safetensors header before anything is loaded).
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
    except Exception as e:  # noqa: BLE001 - any builder failure on this file: one message
        raise ReprolibError(f"compressed-model file {paths.rel(js)} does not describe a "
                            f"buildable model: {_first_line(e)}") from None
    bad = _header_mismatch(model, st)
    if bad:
        raise ReprolibError(f"compressed-model weights {paths.rel(st)} do not fit the "
                            f"architecture of {paths.rel(js)}: {bad}")
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
