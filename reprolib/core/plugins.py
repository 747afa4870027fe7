"""Where the package's plug-ins are declared, read from the source without importing it.

Models (``@register_model``) and architecture steps of compressed models
(``@register_arch("kind")``) are registered by the module that defines them, when it is
imported.  So that listing them, checking a name and loading one model need neither torch nor
every module, :func:`declared` reads each module of the package with ``ast`` and returns,
for one decorator, ``{name: Declaration(module, paper)}``: the engine then imports the one
module that defines what is asked for.  Nothing is hand-kept: a new model file is found by
being there.

    declared("register_model")["swin_cifar"]  ->  Declaration("reprolib.models.swin", "sidt")
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import NamedTuple

PKG = Path(__file__).resolve().parents[1]


class Declaration(NamedTuple):
    module: str        # the module that registers it, e.g. "reprolib.models.swin"
    paper: str         # ``paper=`` of the decorator ("" when not given)
    line: int          # where, for messages


def _modules() -> list[tuple[str, Path]]:
    out = []
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if "__pycache__" not in parts:
            out.append((".".join(parts), f))
    return out


def _const(node, default=""):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else default


@functools.cache
def declared(decorator: str) -> dict[str, Declaration]:
    """Every name the package registers with ``decorator``: from ``@decorator`` /
    ``@decorator(name=..., paper=...)`` on a function (the function's name unless ``name=``)
    and ``@decorator("kind")`` (the first argument).  Read once per process."""
    out: dict[str, Declaration] = {}
    for module, path in _modules():
        try:
            tree = ast.parse(path.read_text(), str(path))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for dec in node.decorator_list:
                call = dec if isinstance(dec, ast.Call) else None
                target = call.func if call else dec
                if not (isinstance(target, ast.Name) and target.id == decorator):
                    continue
                kw = {k.arg: k.value for k in (call.keywords if call else [])}
                name = (_const(call.args[0]) if call and call.args else "") \
                    or _const(kw.get("name")) or node.name
                out[name] = Declaration(module, _const(kw.get("paper")), node.lineno)
    return out
