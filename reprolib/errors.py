"""The one exception type for bad user input (unknown names, values out of range, missing
data), and the one family of validators every layer uses (configs, methods, models, tools):
:func:`check_number`, :func:`check_choice` / :func:`choose`, :func:`check_each`.

The CLI turns a ReprolibError into a single-line message and exit code 2; library callers
can catch it as a ``ValueError``.  Each message starts with the key as the user typed it
(``lr=inf must be a finite number``) or names the kind of thing (``unknown paper 'x';
valid papers: ...``).
"""

import math


class ReprolibError(ValueError):
    """Bad input: the message names the problem and the valid choices."""


def choose(kind: str, value, valid) -> None:
    """Raise ``ReprolibError`` unless ``value`` is one of ``valid``: "unknown KIND 'x'; valid
    KINDs: ..." (:func:`check_choice` names a key instead)."""
    valid = list(valid)
    if value not in valid:
        raise ReprolibError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(map(str, valid))}")


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
