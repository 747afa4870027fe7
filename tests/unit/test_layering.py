"""The import direction of the package: models <- methods <- experiments <- notebooks / cli.

Read from the source (every import statement, also inside functions), so a lazy import that
breaks the layering fails here as well."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "reprolib"

# What each layer must not import.
FORBIDDEN = {
    "methods": ("reprolib.data", "reprolib.results", "reprolib.report", "reprolib.configs",
                "reprolib.experiments", "reprolib.cli", "matplotlib", "seaborn", "pandas"),
    "models": ("reprolib.methods", "reprolib.experiments", "reprolib.data", "reprolib.results",
               "reprolib.report", "reprolib.configs", "reprolib.cli", "matplotlib"),
    "experiments": ("reprolib.cli",),
}


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
        for mod in imports(f):
            if any(mod == b or mod.startswith(b + ".") for b in FORBIDDEN[layer]):
                bad.append(f"{f.relative_to(PKG.parent)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_every_layer_has_modules():
    # the check above would pass vacuously on an empty folder
    for layer in FORBIDDEN:
        assert len(_files(layer)) >= 3, layer


def test_the_checker_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from reprolib import report\n    import matplotlib.pyplot\n")
    assert {"reprolib.report", "matplotlib.pyplot"} <= imports(f)


def test_nothing_unpickles_what_it_reads():
    hits = [f"{f.relative_to(PKG.parent)}" for f in PKG.rglob("*.py")
            if "weights_only=False" in f.read_text()]
    assert not hits, hits
