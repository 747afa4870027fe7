"""Make a notebook ready to commit: ``python -m reprolib.tools.nbclean [--execute] NB.ipynb [...]``.

The committed notebooks carry the outputs of one in-order run at their defaults (the
``smoke`` profile).  ``--execute`` runs each notebook top to bottom with papermill (no
parameters injected, records and figures in a temporary folder, so the tracked tree is not
touched) and puts the executed copy in its place; then every notebook is cleaned: the
outputs of that one run are kept, what changes between runs or machines is dropped
(execution timings, papermill bookkeeping, widget state, kernel/Python versions), cell ids
are made stable.  Exit 1 when execution counts are out of order or an output holds an
absolute path (the notebook is still written, for inspection).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from reprolib.core import io

_KEEP_CELL_META = ("tags",)
_ABS = re.compile(r"(?<![\w.])/(work|tmp|root|home|Users)/")


def clean(path: str | Path) -> list[str]:
    """Clean ``path`` in place; returns a list of problems (empty when it is fine)."""
    path = Path(path)
    nb = json.loads(path.read_text())
    nb["metadata"] = {"kernelspec": {"display_name": "Python 3", "language": "python",
                                     "name": "python3"},
                      "language_info": {"name": "python"}}
    counts = []
    for cell in nb["cells"]:
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items()
                            if k in _KEEP_CELL_META}
        if cell["cell_type"] == "code":
            counts.append(cell.get("execution_count"))
            for out in cell.get("outputs", []):
                out.pop("transient", None)
                if "metadata" in out:
                    out["metadata"] = {}
    problems = []
    seen = [c for c in counts if c is not None]
    if seen != sorted(seen):
        problems.append(f"{path.name}: execution counts out of order {seen}")
    text = json.dumps(nb)
    if _ABS.search(text):
        problems.append(f"{path.name}: an output holds an absolute path: "
                        f"{_ABS.search(text).group(0)}...")
    nb["nbformat"], nb["nbformat_minor"] = 4, 5
    for i, cell in enumerate(nb["cells"]):  # nbformat 4.5 wants ids; make them stable
        cell["id"] = f"cell-{i:02d}"
    io.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", path)
    return problems


def execute(path: str | Path) -> Path:
    """Run ``path`` top to bottom at its defaults with papermill, in place."""
    import os
    import tempfile

    import papermill as pm

    from reprolib.tools.runner import _ipc_kernel_manager

    path = Path(path).resolve()
    names = ("REPROLIB_RESULTS", "REPROLIB_FIGURES", "REPROLIB_RUNS", "REPROLIB_NO_PROGRESS")
    saved = {v: os.environ.get(v) for v in names}
    try:
        with tempfile.TemporaryDirectory(prefix="reprolib-nbclean-") as tmp:
            for var in names[:3]:
                os.environ[var] = str(Path(tmp) / var.split("_")[1].lower())
            os.environ["REPROLIB_NO_PROGRESS"] = "1"   # the kernel inherits these
            out = Path(tmp) / path.name
            pm.execute_notebook(str(path), str(out), cwd=str(path.parent),
                                kernel_name="python3", progress_bar=False,
                                kernel_manager_class=_ipc_kernel_manager())
            io.write_text(out.read_text(), path)
    finally:
        for var, val in saved.items():
            os.environ.pop(var, None) if val is None else os.environ.__setitem__(var, val)
    return path


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    if "--execute" in args:
        args.remove("--execute")
        for f in args:
            execute(f)
    problems = [p for f in args for p in clean(f)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
