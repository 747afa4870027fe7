"""The one exception type for bad user input (unknown names, values out of range, missing data).

The CLI turns it into a single-line message and exit code 2; library callers can catch it
as a ``ValueError``.
"""


class ReprolibError(ValueError):
    """Bad input: the message names the problem and the valid choices."""


def choose(kind: str, value, valid) -> None:
    """Raise ``ReprolibError`` unless ``value`` is one of ``valid``."""
    valid = list(valid)
    if value not in valid:
        raise ReprolibError(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(map(str, valid))}")


def check_range(name: str, value: float, lo: float, hi: float, *, lo_open=False, hi_open=False):
    """Raise ``ReprolibError`` unless ``lo <= value <= hi`` (with open ends where asked)."""
    ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ReprolibError(f"{name}={value!r} is outside its range {lb}{lo}, {hi}{rb}")
