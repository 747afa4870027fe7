"""The import direction of the package, by folder (what each role may not import):

    errors, paths  <-  configs  <-  core  <-  data, models  <-  methods  <-  experiments
                                                                     <-  tools  <-  cli

Read from the source (every import statement, also inside functions), so a lazy import that
breaks the layering fails here as well.  Old flat paths (``reprolib.measure``) are aliases of
the new ones (``reprolib.core.measure``) and count as the new ones."""

import ast
from pathlib import Path

import pytest

import reprolib

PKG = Path(__file__).resolve().parents[2] / "reprolib"

_UP = ("reprolib.experiments", "reprolib.tools", "reprolib.cli")
# What each layer must not import.
FORBIDDEN = {
    "configs": ("reprolib.core", "reprolib.data", "reprolib.methods", *_UP, "torch", "numpy",
                "pandas", "matplotlib"),
    "core": ("reprolib.methods", *_UP),
    "data": ("reprolib.methods", "reprolib.models", *_UP, "matplotlib"),
    "methods": ("reprolib.data", "reprolib.core.results", "reprolib.core.report",
                "reprolib.core.pipeline", "reprolib.configs", *_UP, "matplotlib", "seaborn",
                "pandas"),
    "models": ("reprolib.methods", "reprolib.data", "reprolib.core.results",
               "reprolib.core.report", "reprolib.core.pipeline", "reprolib.configs", *_UP,
               "matplotlib"),
    "experiments": ("reprolib.tools", "reprolib.cli"),
    "tools": ("reprolib.cli",),
}


# Exceptions to the rules above: the model registry is read by configs (model names, builder
# arguments: no torch at import).
ALLOWED = {"configs": ("reprolib.core.registry", "reprolib.core.plugins")}


def _canonical(mod: str) -> str:
    for old, new in reprolib.ALIASES.items():
        if mod == old or mod.startswith(old + "."):
            return new + mod[len(old):]
    return mod


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            if node.module == "reprolib":       # from reprolib import data, report, ...
                out.update(f"reprolib.{a.name}" for a in node.names)
    return out


def _files(layer: str) -> list[Path]:
    return sorted((PKG / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer):
    bad = []
    for f in _files(layer):
        for mod in map(_canonical, imports(f)):
            if any(mod == b or mod.startswith(b + ".") for b in FORBIDDEN[layer]) \
                    and mod not in ALLOWED.get(layer, ()):
                bad.append(f"{f.relative_to(PKG.parent)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_every_layer_has_modules():
    # the check above would pass vacuously on an empty folder
    for layer in FORBIDDEN:
        assert len(_files(layer)) >= 3, layer


def test_old_paths_are_the_new_modules():
    import importlib

    for old, new in reprolib.ALIASES.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
        assert importlib.import_module(old).__spec__.name == new


def test_the_checker_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from reprolib import report\n    import matplotlib.pyplot\n")
    assert {"reprolib.report", "matplotlib.pyplot"} <= imports(f)


def test_nothing_unpickles_what_it_reads():
    hits = [f"{f.relative_to(PKG.parent)}" for f in PKG.rglob("*.py")
            if "weights_only=False" in f.read_text()]
    assert not hits, hits
