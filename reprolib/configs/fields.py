"""The machinery of the typed configs: one rule per field, declared beside it and checked by
one function; converting values as they arrive (command-line strings, JSON from a notebook,
Python literals) to the field's type; the builder-argument fields; listing keys.

    lr: float = ranged(0.1, ge=0)                       # peak learning rate
    optimizer: str = ranged("sgd", choices=OPTIMIZERS)  # "sgd", "adam" or "adamw"
    ratios: tuple = ranged((0.2, 0.4), ge=0, lt=1, each=True)

:func:`check_fields` applies every field's rule (a config's ``check()`` adds only what
relates several fields).  Imports no torch and nothing of the engine.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import re
import types
import typing
from dataclasses import field
from typing import Any

from reprolib.errors import ReprolibError, check_choice, check_each, check_number

#: The device names a config (and ``reprolib.core.device.resolve_device``) accepts.
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def check_device(key: str, dev) -> None:
    """``dev`` must be one of :data:`DEVICES` (``cuda:N`` with a whole number N)."""
    if not isinstance(dev, str) or not (
            dev in DEVICES[:3] + DEVICES[4:] or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ReprolibError(f"{key}={dev!r} is not one of: {', '.join(DEVICES)}")


# --------------------------------------------------------------------------- field rules


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a field's value must be: within ``ge`` / ``gt`` / ``le`` / ``lt`` (an integer when
    ``integer`` or the field is annotated ``int``), one of ``choices``, a registered model
    (``model``), a data set name (``dataset``), a device name (``device``); ``each``: the rule
    holds for every element of a tuple (``empty`` allows none; repeats are refused)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    integer: bool | None = None
    choices: tuple | None = None
    model: bool = False
    dataset: bool = False
    device: bool = False
    each: bool = False
    empty: bool = False
    optional: bool = False      # None is allowed

    def check(self, key: str, value, integer: bool = False) -> None:
        if self.each:
            check_each(key, value, lambda k, v: self._one(k, v, integer), allow_empty=self.empty)
        else:
            self._one(key, value, integer)

    def _one(self, key: str, value, integer: bool) -> None:
        if value is None and self.optional:
            return
        if self.choices is not None:
            check_choice(key, value, self.choices)
        if self.model:
            check_model(key, value)
        if self.dataset:
            check_dataset_name(key, value)
        if self.device:
            check_device(key, value)
        bounds = (self.ge, self.gt, self.le, self.lt)
        if any(b is not None for b in bounds) or self.integer:
            lo = self.gt if self.gt is not None else self.ge
            hi = self.lt if self.lt is not None else self.le
            check_number(key, value, lo, hi, lo_open=self.gt is not None,
                         hi_open=self.lt is not None,
                         integer=self.integer if self.integer is not None else integer)


def ranged(default, **rule) -> Any:
    """A dataclass field with ``default`` (a copy per instance for dicts and lists) and the
    :class:`Rule` ``rule`` (``ge=0``, ``choices=(...)``, ``each=True`` ...) in its metadata."""
    meta = {"rule": Rule(**rule)}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def rule_of(f: dataclasses.Field) -> Rule | None:
    return f.metadata.get("rule")


def check_fields(obj) -> None:
    """Check every field of the dataclass ``obj`` that declares a :class:`Rule`."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        r = rule_of(f)
        if r is not None:
            hint = hints[f.name]
            r.check(f.name, getattr(obj, f.name), integer=hint is int)


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


# --------------------------------------------------------------------------- types and keys


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
