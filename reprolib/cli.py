"""Command line: ``reprolib list | run PAPER | reproduce`` (also ``python -m reprolib``).

    reprolib list                                   papers, profiles, models, data sets
    reprolib run templates --profile cpu -p epochs=5 [--force]
    reprolib reproduce --profile smoke              every notebook at one profile

``run`` executes ``notebooks/PAPER.ipynb`` with papermill (parameters ``profile``,
``overrides``, ``force``) into ``runs/PAPER-PROFILE.ipynb``; the notebook writes its results
records, tables and figures.  Bad input (unknown paper, profile or override key, a value of
the wrong type) is one line on stderr and exit code 2, checked before anything is written.
A notebook that fails leaves no output notebook behind (exit code 1).
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

from reprolib import paths
from reprolib.errors import ReprolibError


def _parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ReprolibError(f"-p expects KEY=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k.strip()] = v
    return out


def notebook_path(paper: str) -> Path:
    return paths.ROOT / "notebooks" / f"{paper}.ipynb"


def check_run(paper: str, profile: str, overrides: dict):
    """Validate a run request without side effects; returns the resolved config."""
    from reprolib.configs import get_config

    from reprolib.data import check_dataset

    cfg = get_config(paper, profile, **overrides)
    check_dataset(cfg.dataset)
    if not notebook_path(paper).exists():
        raise ReprolibError(f"notebook notebooks/{paper}.ipynb is missing")
    return cfg


def run_notebook(paper: str, profile: str = "smoke", overrides: dict | None = None,
                 force: bool = False, output: str | None = None) -> Path:
    """Execute ``notebooks/PAPER.ipynb`` at ``profile``; returns the executed notebook's path."""
    import papermill as pm

    from reprolib.train import show_progress

    overrides = overrides or {}
    check_run(paper, profile, overrides)
    out = Path(output) if output else paths.runs_root() / f"{paper}-{profile}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.partial.ipynb")
    t0 = time.perf_counter()
    # The kernel inherits this: fit's per-epoch bars stay out of the executed notebook, while
    # papermill's own bar shows progress over the cells here.
    os.environ.setdefault("REPROLIB_NO_PROGRESS", "1")
    try:
        pm.execute_notebook(str(notebook_path(paper)), str(tmp),
                            parameters={"profile": profile, "overrides": overrides, "force": force},
                            cwd=str(paths.ROOT / "notebooks"), kernel_name="python3",
                            progress_bar=show_progress(), log_output=False)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(f"{paper} [{profile}] done in {time.perf_counter() - t0:.0f} s -> {paths.rel(out)}")
    return out


def cmd_list(_args) -> int:
    import reprolib
    from reprolib.configs import papers
    from reprolib.data import DATASETS

    print("papers (notebooks) and their profiles:")
    for name, p in papers().items():
        print(f"  {name:16s} {', '.join(p.presets):28s} {p.title}")
    print("models:")
    print("  " + ", ".join(reprolib.list_models()))
    print("data sets:")
    print("  " + ", ".join(DATASETS))
    return 0


def cmd_run(args) -> int:
    run_notebook(args.paper, args.profile, _parse_overrides(args.param), args.force, args.output)
    return 0


def cmd_reproduce(args) -> int:
    from reprolib.configs import papers

    todo = [n for n, p in papers().items() if args.profile in p.presets]
    if not todo:
        raise ReprolibError(f"no notebook has a profile {args.profile!r}")
    for n in todo:  # validate everything before running anything
        check_run(n, args.profile, {})
    skipped = sorted(set(papers()) - set(todo))
    if skipped:
        print(f"(no {args.profile!r} profile, skipped: {', '.join(skipped)})")
    t0 = time.perf_counter()
    for n in todo:
        run_notebook(n, args.profile, {}, args.force)
    print(f"reproduced {len(todo)} notebooks at profile {args.profile!r} in "
          f"{time.perf_counter() - t0:.0f} s; figures in {paths.rel(paths.figures_root())}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reprolib", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="papers, profiles, models and data sets").set_defaults(fn=cmd_list)
    r = sub.add_parser("run", help="execute one paper's notebook with papermill")
    r.add_argument("paper")
    r.add_argument("--profile", default="smoke")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value (repeatable)")
    r.add_argument("--force", action="store_true", help="recompute runs that have records")
    r.add_argument("--output", help="executed notebook path (default runs/PAPER-PROFILE.ipynb)")
    r.set_defaults(fn=cmd_run)
    a = sub.add_parser("reproduce", help="execute every notebook at one profile")
    a.add_argument("--profile", default="smoke")
    a.add_argument("--force", action="store_true")
    a.set_defaults(fn=cmd_reproduce)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ReprolibError as e:
        print(f"reprolib: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reprolib: interrupted; finished runs are kept and resume", file=sys.stderr)
        return 130
    except Exception as e:  # papermill's PapermillExecutionError and friends
        if type(e).__name__ == "PapermillExecutionError":
            if e.ename == "ReprolibError":
                print(f"reprolib: error: {e.evalue}", file=sys.stderr)
                return 2
            print(f"reprolib: the notebook failed in cell {e.exec_count}: {e.ename}: {e.evalue}",
                  file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
