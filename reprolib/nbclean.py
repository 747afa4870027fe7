"""Clean an executed notebook for committing: ``python -m reprolib.nbclean NB.ipynb [...]``.

Keeps the outputs of the one in-order run, drops what changes between runs or machines:
execution timings, papermill bookkeeping, widget state, kernel/Python versions.  Refuses
(exit 1) when execution counts are out of order or an output holds an absolute path.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

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
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return problems


def main(argv: list[str] | None = None) -> int:
    problems = [p for f in (argv if argv is not None else sys.argv[1:]) for p in clean(f)]
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
